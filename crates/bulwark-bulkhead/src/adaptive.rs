//! Adaptive limits: the concurrency limit moves between a minimum and a
//! maximum from the latency and failures the bulkhead observes.
//!
//! Every call that ends under an adaptive bulkhead may give a [`Sample`]:
//! its latency, how many calls were in flight when it started, and its
//! [`SampleKind`]. The bulkhead's classifier
//! ([`BulkheadBuilder::classifier`](crate::BulkheadBuilder::classifier), the
//! same [`Classify`](bulwark_core::Classify) the breaker and retry use)
//! decides which:
//!
//! | outcome of the call                         | sample                     |
//! |---------------------------------------------|----------------------------|
//! | [`Success`](bulwark_core::Outcome::Success) | [`SampleKind::Success`]: a latency sample |
//! | [`Failure`](bulwark_core::Outcome::Failure) | [`SampleKind::Dropped`]: a *drop*, the congestion signal |
//! | `Throttled`, `Ignored`, `Rejected`          | none: not congestion, and their latency says nothing about the upstream's queue |
//! | the response future dropped before it ended | [`SampleKind::Abandoned`]: neutral (see below) |
//!
//! An abandoned call (a timeout further out, a caller that gave up) is *not*
//! a drop: its latency is only a lower bound, and counting every timeout of
//! a 2% slow tail as congestion is what made the old Vegas lose 3% of a
//! latency spike's traffic. [`Vegas`] and [`Gradient2`] ignore it; [`Aimd`]
//! counts it as slow only when it already ran past its latency threshold.
//!
//! A [`LimitAlgorithm`] turns the samples into a new limit. Three are
//! provided, after Netflix's `concurrency-limits`:
//!
//! - [`Gradient2`] (the recommended adaptive one; see
//!   [below](#when-not-to-use-an-adaptive-limit) for when not to use one): compares a short-term latency (the
//!   average of the last window of samples) with a long-term, exponentially
//!   smoothed one. While the short term stays within a tolerance (1.25×) of
//!   the long term the limit grows by a small allowance for queueing; past
//!   it, the limit shrinks in proportion (at most by half per window, and
//!   smoothed). It never compares a call with the fastest call ever seen, so
//!   latency noise and a slow tail do not fool it. Bulwark adds a TCP-like
//!   slow start so that a low initial limit reaches the upstream's capacity
//!   in a few round trips.
//! - [`Vegas`]: latency-based, after TCP Vegas. It estimates the no-load
//!   latency as the lowest *average* over recent stretches of windows and
//!   the upstream's queue as `queue = limit × (1 − noload / rtt)`, `rtt`
//!   being the last window's average. With `log = max(1, log10(limit))`: a
//!   queue of at most `log` raises the limit by `6·log`; below `3·log` by
//!   `log`; above `6·log` it lowers it by `log`. It keeps latency closer to
//!   the no-load latency than Gradient2 does, at the price of a baseline that
//!   must be re-learnt when the upstream's base latency changes.
//! - [`Aimd`]: additive increase, multiplicative decrease, per call. Each
//!   successful, fast call with the bulkhead at least half used raises the
//!   limit by one; each drop, and each call slower than a latency threshold,
//!   multiplies it by a backoff ratio (0.9). Simple; needs a threshold.
//!
//! # Windows
//!
//! Vegas and Gradient2 decide once per *window* of samples, never on one
//! call: a window holds at least [`window_samples`](Gradient2::window_samples)
//! samples (20 by default) and at least `limit` of them, which is about one
//! round trip of a busy bulkhead. The latency of a window is the average of
//! its successful calls, each counted at most 3× the reference latency (the
//! long-term average or the no-load estimate), so that one very slow call
//! cannot move a window alone. Drops count only when they are a meaningful
//! share of a window ([`drop_threshold`](Gradient2::drop_threshold), 20% by
//! default): one failure in a window is noise, a fifth of them is a signal.
//!
//! All three ignore successes while the bulkhead is less than half used (an
//! app-limited caller says nothing about the upstream's capacity), and all
//! keep the limit within `[min, max]`. The maximum is the bulkhead's
//! [`max_concurrent`](crate::BulkheadBuilder::max_concurrent) unless the
//! algorithm's own [`max_limit`](Gradient2::max_limit) is set. None of them
//! draws random numbers: the same samples give the same limits.
//!
//! # Why Gradient2 is the recommended one
//!
//! Measured in a processor-sharing model of an upstream serving 60 calls at
//! once at a median 20 ms (`tests/convergence.rs`), offered 2.3× what it can
//! serve for 10 s, then 10 s more with 2% of the calls 300 ms slower: Vegas
//! settles at 76 (1.3× the capacity), Gradient2 at 100 (1.7×), and neither
//! collapses under the slow tail (84 and 117). Gradient2 keeps the goodput
//! of a fixed bulkhead of 100 to within 0.5% (its slow start wastes no
//! capacity while the limit is still low); Vegas loses about 2%, mostly
//! while it ramps up and when a noisy window makes it step down. Gradient2
//! is also preferred because its reference is an average, not a minimum:
//! Vegas's no-load estimate must be re-learnt after a lasting change of the
//! upstream's base latency (e.g. a brownout), during which it holds the
//! limit low.
//!
//! # When to use an adaptive limit
//!
//! In `bulwark-sim`'s scenarios (`cargo run --example simulate --
//! --adaptive`; figures in the repository's `BENCHMARKS.md`), goodput during
//! the fault, behind the recommended client stack and behind the server
//! stack:
//!
//! | scenario | client, fixed 100 | client, `Gradient2` | server, fixed 512 | server, `Gradient2` |
//! |---|---:|---:|---:|---:|
//! | `overload` (2×) | 49.6%, p99 311 ms | 49.5%, p99 225 ms | 50.0%, p99 1.5 s | 49.4%, p99 187 ms |
//! | `brownout` | 85.0% | 80.8% | 70.2% | 68.7% |
//! | `slow-recovery` | 54.5% | 54.4% | 54.6% | 51.0% |
//!
//! An adaptive limit keeps the queue short under overload for a few points
//! elsewhere; a fixed one that fits the upstream does as well at no cost,
//! so Bulwark's recommended stacks keep a fixed limit and adaptive limits
//! are opt-in. Choose one when you cannot know the upstream's capacity, or
//! it changes. Before [`Gradient2`] learnt to tell an upstream's own
//! slowness and failures from the queue it lets in (see its docs), it held
//! 14.2% (client) and 12.9% (server) of the brownout's traffic. [`Vegas`]
//! has no such test and still collapses there (3.1% behind the client
//! stack in `examples/tune_stack.rs`).
//!
//! ```
//! use bulwark::bulkhead::adaptive::{Aimd, Gradient2, LimitAlgorithm, Sample, SampleKind};
//! use bulwark::bulkhead::BulkheadLayer;
//! use std::time::Duration;
//!
//! let mut aimd = Aimd::new(10).min_limit(2).max_limit(50);
//! let slow = Sample::new(Duration::from_secs(5), 10, SampleKind::Success);
//! assert_eq!(aimd.update(&slow), 9); // slower than the 1 s threshold: × 0.9
//! let fast = Sample::new(Duration::from_millis(5), 9, SampleKind::Success);
//! assert_eq!(aimd.update(&fast), 10); // fast and busy: + 1
//!
//! // The recommended setup: Gradient2, bounded by the bulkhead's
//! // `max_concurrent`.
//! let layer = BulkheadLayer::builder()
//!     .max_concurrent(200)
//!     .adaptive(Gradient2::default())
//!     .build();
//! # let _ = layer;
//! ```

use std::time::Duration;

/// How a call that gave a [`Sample`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SampleKind {
    /// The classifier called it a success: its latency is a measurement.
    Success,
    /// The classifier called it a failure
    /// ([`Outcome::Failure`](bulwark_core::Outcome::Failure)): a *drop*, the
    /// signal of congestion.
    Dropped,
    /// Its response future was dropped before it ended (a timeout further
    /// out, a caller that gave up). Neither a success nor a drop: the latency
    /// is only a lower bound of what the call would have taken.
    Abandoned,
}

/// What one call told the adaptive limit.
///
/// ```
/// use bulwark::bulkhead::adaptive::{Sample, SampleKind};
/// use std::time::Duration;
///
/// let s = Sample::new(Duration::from_millis(20), 8, SampleKind::Dropped);
/// assert_eq!(s.latency(), Duration::from_millis(20));
/// assert_eq!(s.in_flight(), 8);
/// assert!(s.is_drop());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    latency: Duration,
    in_flight: usize,
    kind: SampleKind,
}

impl Sample {
    /// A call that took `latency`, started with `in_flight` calls in flight
    /// (itself included), and ended as `kind` says.
    pub const fn new(latency: Duration, in_flight: usize, kind: SampleKind) -> Self {
        Sample {
            latency,
            in_flight,
            kind,
        }
    }

    /// How long the call took (until it ended or was dropped).
    pub const fn latency(&self) -> Duration {
        self.latency
    }

    /// Calls in flight when this one started, itself included.
    pub const fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How the call ended.
    pub const fn kind(&self) -> SampleKind {
        self.kind
    }

    /// Whether the call was a drop ([`SampleKind::Dropped`]).
    pub const fn is_drop(&self) -> bool {
        matches!(self.kind, SampleKind::Dropped)
    }
}

/// Moves a concurrency limit from [`Sample`]s.
///
/// The bulkhead calls [`update`](LimitAlgorithm::update) once per sample,
/// under a short lock, and publishes the returned limit.
///
/// ```
/// use bulwark::bulkhead::adaptive::{LimitAlgorithm, Sample, SampleKind};
///
/// /// Halves the limit on every drop, never grows it.
/// #[derive(Clone)]
/// struct HalveOnDrop(usize);
///
/// impl LimitAlgorithm for HalveOnDrop {
///     fn initial_limit(&self) -> usize {
///         self.0
///     }
///     fn update(&mut self, sample: &Sample) -> usize {
///         if sample.kind() == SampleKind::Dropped {
///             self.0 = (self.0 / 2).max(1);
///         }
///         self.0
///     }
/// }
///
/// let layer = bulwark::bulkhead::BulkheadLayer::builder().adaptive(HalveOnDrop(32)).build();
/// # let _ = layer;
/// ```
pub trait LimitAlgorithm: Send + 'static {
    /// The limit before any sample.
    fn initial_limit(&self) -> usize;

    /// Takes one sample into account and returns the new limit.
    fn update(&mut self, sample: &Sample) -> usize;

    /// Called once when a bulkhead is built, with its `max_concurrent`: an
    /// algorithm whose own maximum was not set explicitly adopts it. The
    /// default does nothing (the bulkhead still never publishes more than
    /// `max` unless the algorithm says so itself).
    fn inherit_max_limit(&mut self, max: usize) {
        let _ = max;
    }
}

/// The range a limit moves in; `min <= max` always holds.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: usize,
    max: usize,
    max_explicit: bool,
}

impl Bounds {
    const DEFAULT: Bounds = Bounds {
        min: 1,
        max: 1000,
        max_explicit: false,
    };

    /// At least 1; raises the maximum if it was lower.
    fn with_min(self, min: usize) -> Self {
        let min = min.max(1);
        Bounds {
            min,
            max: self.max.max(min),
            max_explicit: self.max_explicit,
        }
    }

    /// Never below the minimum.
    fn with_max(self, max: usize) -> Self {
        Bounds {
            min: self.min,
            max: max.max(self.min),
            max_explicit: true,
        }
    }

    /// The bulkhead's maximum, unless one was set explicitly.
    fn inherit(self, max: usize) -> Self {
        if self.max_explicit {
            return self;
        }
        Bounds {
            min: self.min,
            max: max.max(self.min),
            max_explicit: false,
        }
    }

    fn clamp(self, limit: f64) -> f64 {
        limit.clamp(self.min as f64, self.max as f64)
    }
}

/// A window sample counts at most this many times the reference latency.
const TAIL_CAP: f64 = 3.0;

/// The samples of one window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    successes: usize,
    drops: usize,
    /// Seconds, over successes, each capped.
    latency_sum: f64,
    /// Seconds, over successes, not capped.
    raw_sum: f64,
    max_in_flight: usize,
}

impl Window {
    /// Adds a sample; abandoned calls are not counted. `cap` bounds one
    /// latency (in seconds) when a reference is known.
    fn add(&mut self, s: &Sample, cap: Option<f64>) {
        match s.kind {
            SampleKind::Success => {
                let rtt = s.latency.as_secs_f64();
                self.latency_sum += cap.map_or(rtt, |c| rtt.min(c));
                self.raw_sum += rtt;
                self.successes += 1;
            }
            SampleKind::Dropped => self.drops += 1,
            SampleKind::Abandoned => return,
        }
        self.max_in_flight = self.max_in_flight.max(s.in_flight);
    }

    fn len(&self) -> usize {
        self.successes + self.drops
    }

    /// The average latency of the successes, in seconds (`None` without any).
    fn average(&self) -> Option<f64> {
        (self.successes > 0).then(|| (self.latency_sum / self.successes as f64).max(1e-9))
    }

    /// The average latency of the successes, none capped.
    fn raw_average(&self) -> Option<f64> {
        (self.successes > 0).then(|| (self.raw_sum / self.successes as f64).max(1e-9))
    }

    /// The share of drops among the window's samples.
    fn drop_share(&self) -> f64 {
        self.drops as f64 / self.len().max(1) as f64
    }

    fn congested(&self, drop_threshold: f64) -> bool {
        self.drops > 0 && self.drops as f64 >= drop_threshold * self.len() as f64
    }

    /// Whether the bulkhead was less than half used through the window.
    fn app_limited(&self, limit: f64) -> bool {
        (self.max_in_flight as f64) * 2.0 < limit
    }

    /// Whether the window is complete, and if so takes it, leaving an empty
    /// one.
    fn close(&mut self, min_samples: usize, limit: f64) -> Option<Window> {
        (self.len() >= min_samples.max(limit as usize)).then(|| std::mem::take(self))
    }
}

/// Additive increase, multiplicative decrease (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    bounds: Bounds,
    backoff: f64,
    threshold: Duration,
}

impl Default for Aimd {
    /// `Aimd::new(20)`.
    fn default() -> Self {
        Aimd::new(20)
    }
}

impl Aimd {
    /// Starts at `initial` (at least 1), backs off by × 0.9 on drops and on
    /// calls slower than 1 s.
    pub fn new(initial: usize) -> Self {
        Aimd {
            limit: initial.max(1) as f64,
            bounds: Bounds::DEFAULT,
            backoff: 0.9,
            threshold: Duration::from_secs(1),
        }
    }

    /// The lowest the limit goes (at least 1; the highest is raised to it
    /// if it was lower).
    pub fn min_limit(mut self, min: usize) -> Self {
        self.bounds = self.bounds.with_min(min);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The highest the limit goes. Unset, it is the bulkhead's
    /// [`max_concurrent`](crate::BulkheadBuilder::max_concurrent).
    pub fn max_limit(mut self, max: usize) -> Self {
        self.bounds = self.bounds.with_max(max);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The factor applied on a drop, in `[0.5, 1)`.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff = if ratio.is_nan() {
            0.9
        } else {
            ratio.clamp(0.5, 0.999)
        };
        self
    }

    /// A call slower than this counts as a drop.
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold;
        self
    }
}

impl LimitAlgorithm for Aimd {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, s: &Sample) -> usize {
        let slow = s.latency > self.threshold;
        let back_off = match s.kind {
            SampleKind::Dropped => true,
            SampleKind::Success => slow,
            // It ran at least this long: slow if past the threshold already.
            SampleKind::Abandoned if slow => true,
            SampleKind::Abandoned => return self.limit as usize,
        };
        if back_off {
            self.limit = self.bounds.clamp((self.limit * self.backoff).floor());
        } else if s.in_flight * 2 >= self.limit as usize {
            self.limit = self.bounds.clamp(self.limit + 1.0);
        }
        self.limit as usize
    }

    fn inherit_max_limit(&mut self, max: usize) {
        self.bounds = self.bounds.inherit(max);
        self.limit = self.bounds.clamp(self.limit);
    }
}

/// Buckets of the Vegas baseline's memory.
const BUCKETS: usize = 8;
/// Samples averaged into one measurement of the baseline: enough that the
/// noise of single calls averages out (a minimum over noisy measurements is
/// biased low, and a low baseline reads as a queue that is not there).
const PROBE_SAMPLES: usize = 200;

/// The no-load latency of Vegas: the lowest of the averages of
/// `PROBE_SAMPLES` successful calls seen over the last `BUCKETS` stretches of
/// its memory. Old stretches fall out, so a lasting change of the base
/// latency is learnt within the memory; failures never enter it.
#[derive(Debug, Clone)]
struct Baseline {
    /// The lowest probe of each completed stretch (`INFINITY`: none).
    buckets: [f64; BUCKETS],
    next: usize,
    /// The lowest probe of the stretch being filled, and its samples.
    current: f64,
    current_samples: usize,
    /// The probe being filled.
    sum: f64,
    samples: usize,
    per_bucket: usize,
}

impl Baseline {
    fn new(memory: usize) -> Self {
        Baseline {
            buckets: [f64::INFINITY; BUCKETS],
            next: 0,
            current: f64::INFINITY,
            current_samples: 0,
            sum: 0.0,
            samples: 0,
            per_bucket: (memory / BUCKETS).max(PROBE_SAMPLES),
        }
    }

    /// The no-load estimate (seconds): the lowest probe remembered, or the
    /// average so far before the first probe is complete.
    fn get(&self) -> Option<f64> {
        let lowest = self.buckets.iter().copied().fold(self.current, f64::min);
        if lowest.is_finite() {
            Some(lowest)
        } else {
            (self.samples > 0).then(|| self.sum / self.samples as f64)
        }
    }

    /// Adds a window of `samples` successes averaging `average` seconds.
    fn add(&mut self, average: f64, samples: usize) {
        self.sum += average * samples as f64;
        self.samples += samples;
        if self.samples < PROBE_SAMPLES {
            return;
        }
        self.current = self.current.min(self.sum / self.samples as f64);
        self.current_samples += self.samples;
        self.sum = 0.0;
        self.samples = 0;
        if self.current_samples >= self.per_bucket {
            self.buckets[self.next] = self.current;
            self.next = (self.next + 1) % BUCKETS;
            self.current = f64::INFINITY;
            self.current_samples = 0;
        }
    }
}

/// Latency-based limit after TCP Vegas (see the [module docs](self)).
///
/// ```
/// use bulwark::bulkhead::adaptive::Vegas;
///
/// let vegas = Vegas::new(20).min_limit(4).max_limit(200).baseline_samples(100_000);
/// # let _ = vegas;
/// ```
#[derive(Debug, Clone)]
pub struct Vegas {
    limit: f64,
    bounds: Bounds,
    window: Window,
    min_window: usize,
    baseline: Baseline,
    smoothing: f64,
    drop_threshold: f64,
}

impl Default for Vegas {
    /// `Vegas::new(20)`.
    fn default() -> Self {
        Vegas::new(20)
    }
}

impl Vegas {
    /// Starts at `initial` (at least 1).
    pub fn new(initial: usize) -> Self {
        Vegas {
            limit: initial.max(1) as f64,
            bounds: Bounds::DEFAULT,
            window: Window::default(),
            min_window: 20,
            baseline: Baseline::new(50_000),
            smoothing: 1.0,
            drop_threshold: 0.2,
        }
    }

    /// The lowest the limit goes (at least 1; the highest is raised to it
    /// if it was lower).
    pub fn min_limit(mut self, min: usize) -> Self {
        self.bounds = self.bounds.with_min(min);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The highest the limit goes. Unset, it is the bulkhead's
    /// [`max_concurrent`](crate::BulkheadBuilder::max_concurrent).
    pub fn max_limit(mut self, max: usize) -> Self {
        self.bounds = self.bounds.with_max(max);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The fewest samples in a window (20 by default; a window also holds at
    /// least `limit` samples).
    pub fn window_samples(mut self, n: usize) -> Self {
        self.min_window = n.max(1);
        self
    }

    /// How many successful calls the no-load latency remembers (50,000 by
    /// default, about 20 s of a busy upstream serving 2,500 calls/s): it is
    /// the lowest average of 200 consecutive successes within that memory.
    /// Longer learns a lasting change of the upstream's base latency later
    /// (the limit stays low meanwhile); shorter lets a long overload pass for
    /// the no-load latency sooner (the limit then creeps up, towards the
    /// maximum).
    pub fn baseline_samples(mut self, n: usize) -> Self {
        self.baseline = Baseline::new(n);
        self
    }

    /// How much of each change is applied, in `(0, 1]` (1 by default).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = clamp_or(smoothing, 0.01, 1.0, 1.0);
        self
    }

    /// The share of drops that makes a window congested (0.2 by default, in
    /// `(0, 1]`): a congested window lowers the limit by `log`.
    pub fn drop_threshold(mut self, share: f64) -> Self {
        self.drop_threshold = clamp_or(share, 0.001, 1.0, 0.2);
        self
    }

    fn log(limit: f64) -> f64 {
        limit.log10().max(1.0)
    }

    fn on_window(&mut self, w: Window) {
        let log = Self::log(self.limit);
        let target = if w.congested(self.drop_threshold) {
            // Not fed to the baseline: failing windows say nothing about the
            // no-load latency.
            self.limit - log
        } else {
            let Some(rtt) = w.average() else { return };
            let noload = self.baseline.get();
            self.baseline.add(rtt, w.successes);
            let Some(noload) = noload else { return };
            if w.app_limited(self.limit) {
                return;
            }
            let queue = (self.limit * (1.0 - noload / rtt)).ceil();
            if queue <= log {
                self.limit + 6.0 * log
            } else if queue < 3.0 * log {
                self.limit + log
            } else if queue > 6.0 * log {
                self.limit - log
            } else {
                return;
            }
        };
        let next = (1.0 - self.smoothing) * self.limit + self.smoothing * target;
        self.limit = self.bounds.clamp(next);
    }
}

impl LimitAlgorithm for Vegas {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, s: &Sample) -> usize {
        let cap = self.baseline.get().map(|b| b * TAIL_CAP);
        self.window.add(s, cap);
        if let Some(w) = self.window.close(self.min_window, self.limit) {
            self.on_window(w);
        }
        self.limit as usize
    }

    fn inherit_max_limit(&mut self, max: usize) {
        self.bounds = self.bounds.inherit(max);
        self.limit = self.bounds.clamp(self.limit);
    }
}

/// Windows averaged arithmetically before the long-term average turns
/// exponential.
const WARMUP: usize = 10;

/// Netflix's Gradient2: a short-term latency against a long-term smoothed
/// one (see the [module docs](self)).
///
/// Once per window:
///
/// - `short` is the window's average latency, and `long` moves towards it by
///   `2 / (long_windows + 1)` of the difference (an exponential average over
///   about `long_windows` windows). When `long` is more than twice `short`
///   (latency back to normal after a long overload), `long` is cut by 10% so
///   the limit recovers without waiting for the smoothing.
/// - `gradient = clamp(tolerance × long / short, 0.5, 1)`: 1 while the
///   short term is within the tolerance, down to 0.5 (never more than half
///   per window, so outliers cannot crash the limit).
/// - `new = limit × gradient + queue_size`, applied with `smoothing`:
///   `limit = limit × (1 − smoothing) + new × smoothing`.
///
/// A window whose drops reach [`drop_threshold`](Self::drop_threshold)
/// counts as `gradient = 0.5` and does not move `long`. A window in which
/// the bulkhead stayed less than half used changes nothing but `long`.
///
/// One addition to Netflix's algorithm: a *slow start*, as in TCP. Until
/// the first busy window slower than `tolerance × long` (or the first
/// congested one), each busy window doubles the limit instead of adding
/// `queue_size × smoothing` (0.8) to it, so that a limit starting far below
/// the upstream's capacity reaches it in a few round trips rather than in
/// hundreds of windows. The window that ends it is not learnt by `long`.
///
/// A second addition: *telling the upstream's own trouble from the
/// queueing this limit causes*. A latency-based limit reads every rise in
/// latency as congestion, and a drop-based one every failure; but an
/// upstream that turns ten times slower, or fails 30% of calls, whatever
/// the load (a brownout), is not cured by sending it less, and halving the
/// limit window after window only starves the caller. So whenever the
/// limit has shrunk by 40% (`limit ≤ 0.6 ×` where it began to shrink for
/// that signal) and the signal has not fallen with it (latency, or the
/// share of drops, still at least 80% of what it was then), the signal is
/// taken as the upstream's own: `long` becomes the current latency, or
/// that share of drops is *excused* (only drops above it by 25% and by more
/// than two standard deviations of a window's chance count as congestion;
/// the excused share follows later windows, back to none when the failures
/// end). Queueing passes this test: its latency, and the overflow's drops,
/// fall as the limit falls, so the limit keeps falling. Chosen in
/// `bulwark-sim`: in `brownout`, goodput during the fault behind the
/// recommended client stack went from 14.2% to 78.2% (a fixed bulkhead:
/// 80.5%), and behind the server stack from 12.9% to 68.7%, with `overload`
/// unchanged within 0.2 points (figures in the repository's
/// `BENCHMARKS.md`).
///
/// Under a long overload `long` slowly learns the queueing the limit itself
/// causes, so the limit creeps up (towards the maximum, by default the
/// bulkhead's `max_concurrent`); `long_windows` sets how slowly. The
/// defaults (tolerance 1.25 rather than Netflix's former 1.5, 3000 long
/// windows rather than 600) were chosen in `tests/convergence.rs`: with 1.5
/// and 600 the limit stood at 3.4× the upstream's capacity after 10 s of
/// overload, with 1.25 and 3000 at 1.7×, for the same goodput.
///
/// ```
/// use bulwark::bulkhead::adaptive::Gradient2;
///
/// // The defaults, spelled out.
/// let g = Gradient2::new(20)
///     .min_limit(1)
///     .tolerance(1.25)
///     .queue_size(4)
///     .smoothing(0.2)
///     .long_windows(3000)
///     .window_samples(20)
///     .drop_threshold(0.2);
/// # let _ = g;
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2 {
    limit: f64,
    bounds: Bounds,
    window: Window,
    min_window: usize,
    long: f64,
    long_count: usize,
    long_windows: usize,
    tolerance: f64,
    queue_size: f64,
    smoothing: f64,
    drop_threshold: f64,
    slow_start: bool,
    /// Since the limit began to shrink for latency: the limit and the
    /// short-term latency then.
    shrinking: Option<Episode>,
    /// Since the limit began to shrink for drops: the limit then, and the
    /// drops and samples since.
    dropping: Option<Episode>,
    /// The share of drops taken as the upstream's own (see the docs).
    excused: f64,
}

/// Drops count as congestion again once their share is this many times
/// the share excused as the upstream's own.
const NOT_OURS_MARGIN: f64 = 1.25;
/// How fast the excused share follows the drops of uncongested windows.
const EXCUSED_SMOOTHING: f64 = 0.2;

/// How far the limit must have shrunk for latency, with the latency not
/// falling with it, before [`Gradient2`] takes the latency as the
/// upstream's new normal (see its docs).
const NOT_OURS_SHRINK: f64 = 0.6;
/// The short-term latency must still be at least this share of what it was
/// when the shrinking began.
const NOT_OURS_LATENCY: f64 = 0.8;
/// Congested windows whose share of drops is the reference of an episode.
const EARLY_WINDOWS: u32 = 3;
/// Windows in a row without the signal that end an episode of shrinking.
const CALM_WINDOWS: u32 = 3;

/// A run of windows in which [`Gradient2`]'s limit shrank for one signal
/// (latency or drops).
#[derive(Debug, Clone, Copy)]
struct Episode {
    /// The limit when it began.
    from: f64,
    /// Latency: the first window's average. Drops: the drops of its first
    /// [`EARLY_WINDOWS`] congested windows.
    first: f64,
    /// Drops: the samples of its first windows.
    samples: f64,
    /// Drops: how many of its first windows were counted.
    windows: u32,
    /// Windows in a row without the signal.
    calm: u32,
}

impl Episode {
    fn new(from: f64, first: f64) -> Self {
        Episode {
            from,
            first,
            samples: 0.0,
            windows: 0,
            calm: 0,
        }
    }

    /// Whether the limit has shrunk far enough to judge.
    fn shrunk(&self, limit: f64) -> bool {
        limit <= self.from * NOT_OURS_SHRINK
    }

    /// A window without the signal; whether the episode is over.
    fn calm(&mut self) -> bool {
        self.calm += 1;
        self.calm >= CALM_WINDOWS
    }
}

impl Default for Gradient2 {
    /// `Gradient2::new(20)`: the recommended algorithm with its defaults.
    fn default() -> Self {
        Gradient2::new(20)
    }
}

impl Gradient2 {
    /// Starts at `initial` (at least 1).
    pub fn new(initial: usize) -> Self {
        Gradient2 {
            limit: initial.max(1) as f64,
            bounds: Bounds::DEFAULT,
            window: Window::default(),
            min_window: 20,
            long: 0.0,
            long_count: 0,
            long_windows: 3000,
            tolerance: 1.25,
            queue_size: 4.0,
            smoothing: 0.2,
            drop_threshold: 0.2,
            slow_start: true,
            shrinking: None,
            dropping: None,
            excused: 0.0,
        }
    }

    /// The lowest the limit goes (at least 1; the highest is raised to it
    /// if it was lower).
    pub fn min_limit(mut self, min: usize) -> Self {
        self.bounds = self.bounds.with_min(min);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// The highest the limit goes. Unset, it is the bulkhead's
    /// [`max_concurrent`](crate::BulkheadBuilder::max_concurrent).
    pub fn max_limit(mut self, max: usize) -> Self {
        self.bounds = self.bounds.with_max(max);
        self.limit = self.bounds.clamp(self.limit);
        self
    }

    /// How much slower than the long term the short term may be before the
    /// limit shrinks, in `[1, 10]` (1.25 by default: a 25% rise is
    /// tolerated). It is also about how far above the upstream's capacity
    /// the limit settles under overload.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = clamp_or(tolerance, 1.0, 10.0, 1.25);
        self
    }

    /// How much the limit may grow per window while latency holds (4 by
    /// default): the queueing the algorithm allows itself to probe for more.
    pub fn queue_size(mut self, n: usize) -> Self {
        self.queue_size = n as f64;
        self
    }

    /// How much of each change is applied, in `(0, 1]` (0.2 by default).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = clamp_or(smoothing, 0.01, 1.0, 0.2);
        self
    }

    /// About how many windows the long-term latency averages over (3000 by
    /// default, at least 1).
    pub fn long_windows(mut self, n: usize) -> Self {
        self.long_windows = n.max(1);
        self
    }

    /// The fewest samples in a window (20 by default; a window also holds at
    /// least `limit` samples).
    pub fn window_samples(mut self, n: usize) -> Self {
        self.min_window = n.max(1);
        self
    }

    /// The share of drops that makes a window congested (0.2 by default, in
    /// `(0, 1]`).
    pub fn drop_threshold(mut self, share: f64) -> Self {
        self.drop_threshold = clamp_or(share, 0.001, 1.0, 0.2);
        self
    }

    fn long_rtt(&self) -> Option<f64> {
        (self.long_count > 0).then_some(self.long)
    }

    fn learn_long(&mut self, short: f64) {
        self.long_count += 1;
        if self.long_count <= WARMUP {
            self.long += (short - self.long) / self.long_count as f64;
        } else {
            let factor = 2.0 / (self.long_windows as f64 + 1.0);
            self.long += (short - self.long) * factor;
        }
        if self.long / short > 2.0 {
            self.long *= 0.9;
        }
    }

    fn on_window(&mut self, w: Window) {
        let share = w.drop_share();
        // Drops above the excused share by more than chance explains (two
        // standard deviations of a window of this size) count again.
        let n = w.len().max(1) as f64;
        let noise = 2.0 * (self.excused * (1.0 - self.excused) / n).sqrt();
        let threshold = self
            .drop_threshold
            .max(self.excused * NOT_OURS_MARGIN)
            .max(self.excused + noise);
        let gradient = if w.congested(threshold) {
            self.slow_start = false;
            if self.drops_are_not_ours(w.drops as f64, n) {
                return;
            }
            0.5
        } else {
            if let Some(e) = &mut self.dropping {
                if e.calm() {
                    self.dropping = None;
                }
            }
            if self.excused > 0.0 {
                self.excused += (share - self.excused) * EXCUSED_SMOOTHING;
            }
            let Some(short) = w.average() else { return };
            let busy = !w.app_limited(self.limit);
            if self.slow_start && busy && self.long_count > 0 {
                if short <= self.tolerance * self.long {
                    self.learn_long(short);
                    self.limit = self.bounds.clamp(self.limit * 2.0);
                    return;
                }
                // The window that overshot is not learnt: the long term
                // keeps the latency from before.
                self.slow_start = false;
            } else {
                self.learn_long(short);
            }
            if !busy {
                return;
            }
            let gradient = (self.tolerance * self.long / short).clamp(0.5, 1.0);
            if gradient >= 1.0 {
                if self.shrinking.as_mut().is_some_and(Episode::calm) {
                    self.shrinking = None;
                }
            } else if self.latency_is_not_ours(w.raw_average().unwrap_or(short)) {
                return;
            }
            gradient
        };
        let estimate = self.limit * gradient + self.queue_size;
        let next = self.limit * (1.0 - self.smoothing) + estimate * self.smoothing;
        self.limit = self.bounds.clamp(next);
    }
}

impl Gradient2 {
    /// Whether a latency above the tolerance is the upstream's own rather
    /// than the queueing this limit lets in: the limit has shrunk by
    /// [`NOT_OURS_SHRINK`] since it began to shrink for latency, and the
    /// latency has not fallen with it. Then the long term takes the
    /// latency as it is, and the limit stops shrinking. `short` is the
    /// window's average with no sample capped: capped at a multiple of the
    /// long term, a tenfold latency and a queue that shrinks with the limit
    /// would look the same.
    fn latency_is_not_ours(&mut self, short: f64) -> bool {
        let e = self
            .shrinking
            .get_or_insert_with(|| Episode::new(self.limit, short));
        e.calm = 0;
        if e.shrunk(self.limit) && short >= e.first * NOT_OURS_LATENCY {
            self.long = short;
            self.shrinking = None;
            return true;
        }
        false
    }
}

impl Gradient2 {
    /// Whether drops are the upstream's own failures rather than the
    /// congestion this limit causes: the limit has shrunk by
    /// [`NOT_OURS_SHRINK`] since it began to shrink for drops, and the
    /// share of drops in this window is still [`NOT_OURS_LATENCY`] of what
    /// it was in the episode's first windows. Then
    /// that share is excused: only drops clearly above it (by
    /// [`NOT_OURS_MARGIN`] and by more than a window's chance) count as
    /// congestion, and the excused share follows the drops of later
    /// windows (back to none when the failures end).
    fn drops_are_not_ours(&mut self, drops: f64, samples: f64) -> bool {
        let e = self
            .dropping
            .get_or_insert_with(|| Episode::new(self.limit, 0.0));
        e.calm = 0;
        if e.windows < EARLY_WINDOWS {
            e.windows += 1;
            e.first += drops;
            e.samples += samples;
        }
        let early = e.first / e.samples.max(1.0);
        let now = drops / samples.max(1.0);
        if e.shrunk(self.limit) && now >= early * NOT_OURS_LATENCY {
            self.excused = now.max(early);
            self.dropping = None;
            return true;
        }
        false
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial_limit(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, s: &Sample) -> usize {
        let cap = self.long_rtt().map(|l| l * TAIL_CAP);
        self.window.add(s, cap);
        if let Some(w) = self.window.close(self.min_window, self.limit) {
            self.on_window(w);
        }
        self.limit as usize
    }

    fn inherit_max_limit(&mut self, max: usize) {
        self.bounds = self.bounds.inherit(max);
        self.limit = self.bounds.clamp(self.limit);
    }
}

/// `value` within `[lo, hi]`, or `default` when it is not a number.
fn clamp_or(value: f64, lo: f64, hi: f64, default: f64) -> f64 {
    if value.is_nan() {
        default
    } else {
        value.clamp(lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ok(latency: Duration, in_flight: usize) -> Sample {
        Sample::new(latency, in_flight, SampleKind::Success)
    }

    fn dropped(in_flight: usize) -> Sample {
        Sample::new(MS, in_flight, SampleKind::Dropped)
    }

    #[test]
    fn a_minimum_above_the_maximum_raises_it_instead_of_panicking() {
        let sample = ok(MS, 1);
        let mut a = Aimd::new(10).max_limit(5).min_limit(8);
        assert_eq!(a.update(&sample), 8);
        let mut v = Vegas::new(10).max_limit(5).min_limit(8);
        assert_eq!(v.update(&sample), 8);
        let mut g = Gradient2::new(10).max_limit(5).min_limit(8);
        assert_eq!(g.update(&sample), 8);
    }

    #[test]
    fn the_bulkhead_maximum_applies_unless_set_explicitly() {
        let mut a = Aimd::new(500);
        a.inherit_max_limit(64);
        assert_eq!(a.initial_limit(), 64);
        let mut g = Gradient2::new(20).max_limit(300);
        g.inherit_max_limit(64);
        assert_eq!(g.bounds.max, 300);
        let mut v = Vegas::new(20).min_limit(100);
        v.inherit_max_limit(64);
        assert_eq!((v.bounds.min, v.bounds.max), (100, 100));
    }

    #[test]
    fn aimd_moves_within_bounds() {
        let mut a = Aimd::new(4).min_limit(2).max_limit(6);
        for _ in 0..10 {
            a.update(&ok(MS, 6));
        }
        assert_eq!(a.initial_limit(), 6);
        // App-limited successes change nothing.
        let mut b = Aimd::new(10);
        assert_eq!(b.update(&ok(MS, 4)), 10);
        assert_eq!(b.update(&ok(MS, 5)), 11);
        for _ in 0..100 {
            a.update(&dropped(1));
        }
        assert_eq!(a.update(&dropped(1)), 2);
    }

    #[test]
    fn aimd_counts_an_abandoned_call_only_past_its_threshold() {
        let mut a = Aimd::new(10).latency_threshold(100 * MS);
        let quick = Sample::new(50 * MS, 10, SampleKind::Abandoned);
        assert_eq!(a.update(&quick), 10, "given up early: neutral");
        let slow = Sample::new(200 * MS, 10, SampleKind::Abandoned);
        assert_eq!(a.update(&slow), 9, "already past the threshold: slow");
    }

    /// Feeds `n` windows of `limit` identical samples.
    fn windows<A: LimitAlgorithm>(a: &mut A, n: usize, latency: Duration) -> usize {
        let mut limit = a.initial_limit();
        for _ in 0..n {
            let size = limit.max(20);
            for _ in 0..size {
                limit = a.update(&ok(latency, limit));
            }
        }
        limit
    }

    #[test]
    fn vegas_decides_per_window_and_falls_with_queueing() {
        let mut v = Vegas::new(20).max_limit(100);
        // Nineteen samples: no window yet, no change.
        for _ in 0..19 {
            assert_eq!(v.update(&ok(10 * MS, 20)), 20);
        }
        // The first window only teaches the no-load latency.
        assert_eq!(v.update(&ok(10 * MS, 20)), 20);
        // No queueing: + 6·log per window (log = 1.3 at 20).
        assert_eq!(windows(&mut v, 1, 10 * MS), 27);
        // rtt 4× the no-load: queue = 27 × 0.75 > 6·log: − log per window.
        let before = v.initial_limit();
        let after = windows(&mut v, 3, 40 * MS);
        assert!(after < before, "{after} < {before}");
    }

    #[test]
    fn vegas_ignores_one_slow_call_and_single_failures() {
        let mut v = Vegas::new(40).max_limit(40);
        windows(&mut v, 2, 20 * MS);
        assert_eq!(v.initial_limit(), 40);
        for _ in 0..10 {
            // A window of 40: one call 50× slower, one failure, one
            // abandoned call.
            v.update(&ok(1000 * MS, 40));
            v.update(&dropped(40));
            v.update(&Sample::new(900 * MS, 40, SampleKind::Abandoned));
            for _ in 0..38 {
                v.update(&ok(20 * MS, 40));
            }
        }
        assert_eq!(v.initial_limit(), 40, "no queue, no congestion");
        // A window that is half drops lowers the limit.
        for _ in 0..20 {
            v.update(&dropped(40));
            v.update(&ok(20 * MS, 40));
        }
        assert!(v.initial_limit() < 40);
    }

    #[test]
    fn vegas_fast_failures_do_not_move_the_no_load_latency() {
        let mut v = Vegas::new(20).max_limit(20);
        windows(&mut v, 3, 20 * MS);
        for _ in 0..1_000 {
            v.update(&Sample::new(MS / 10, 20, SampleKind::Dropped));
        }
        let baseline = v.baseline.get().unwrap();
        assert!((baseline - 0.020).abs() < 1e-9, "{baseline}");
    }

    #[test]
    fn gradient2_starts_slow_then_grows_while_latency_holds_and_shrinks_past_the_tolerance() {
        let mut g = Gradient2::new(20).max_limit(1000);
        // The first window learns the long term (+ 0.8), then slow start
        // doubles per window: 20.8, 41.6, 83.2, 166.4.
        assert_eq!(windows(&mut g, 4, 20 * MS), 166);
        // 2× the long term ends slow start: gradient 1.25 / 2, smoothed.
        let after = windows(&mut g, 1, 40 * MS);
        assert_eq!(after, (166.4f64 * (0.8 + 0.2 * 0.625) + 0.8) as usize);
        // Latency back: + queue_size × smoothing = 0.8 per window.
        let grown = windows(&mut g, 10, 20 * MS);
        assert_eq!(grown, after + 8);
        // Within the tolerance (1.2×): still growing.
        assert!(windows(&mut g, 5, 24 * MS) > grown);
        // 3× the long term: gradient 0.5: × 0.9 + 0.8 per window, until the
        // limit is 60% of where it began with the latency still 3×: that
        // latency is the upstream's own, not queueing, so the long term
        // takes it and the limit stops shrinking.
        let before = g.initial_limit() as f64;
        let after = windows(&mut g, 10, 60 * MS);
        assert!(
            (after as f64) <= before * NOT_OURS_SHRINK && (after as f64) > before * 0.5,
            "{after} vs {before}"
        );
        assert!((g.long - 0.060).abs() < 1e-9, "{}", g.long);
        assert!(windows(&mut g, 5, 60 * MS) > after, "grows again");
    }

    #[test]
    fn gradient2_keeps_shrinking_while_the_latency_falls_with_the_limit() {
        // Queueing: an upstream that serves 50 at once at 20 ms, so that
        // each call in flight beyond 50 adds to everyone's latency.
        let latency = |limit: usize| 20 * MS * (limit.max(50) as u32) / 50;
        let mut g = Gradient2::new(50).max_limit(1000);
        windows(&mut g, 20, latency(50));
        // Overload drives it up to 400 in flight (8× the latency) ...
        g.limit = 400.0;
        let mut limit = 400;
        for _ in 0..200 {
            limit = windows(&mut g, 1, latency(limit));
        }
        // ... and, as the latency falls with it, it comes back down near the
        // upstream's capacity instead of taking 8× as the new normal.
        assert!(limit < 100, "{limit}");
    }

    #[test]
    fn gradient2_shrinks_on_congested_windows_even_with_fast_failures() {
        let mut g = Gradient2::new(100).max_limit(100);
        windows(&mut g, 3, 20 * MS);
        let long = g.long;
        for _ in 0..3_000 {
            g.update(&Sample::new(MS / 10, 100, SampleKind::Dropped));
        }
        assert_eq!(g.long, long, "failures do not move the long term");
        // Congested windows shrink it, until it has shrunk by 40% with every
        // call still failing: those failures are not a queue this limit lets
        // in, so they are excused and the limit holds (a breaker is what
        // answers an outage) instead of starving the caller.
        let held = g.initial_limit();
        assert!((50..=60).contains(&held), "{held}");
        for _ in 0..3_000 {
            g.update(&Sample::new(MS / 10, 100, SampleKind::Dropped));
        }
        assert_eq!(g.initial_limit(), held, "fast failures never grow it");
    }

    #[test]
    fn gradient2_keeps_shrinking_while_drops_fall_with_the_limit() {
        // Drops from our own load: a window at limit L drops (L - 30) of
        // every L calls, so only a lower limit ends them.
        let mut g = Gradient2::new(100).max_limit(100);
        windows(&mut g, 3, 20 * MS);
        for _ in 0..100 {
            let limit = g.initial_limit();
            let drops = limit.saturating_sub(30);
            for i in 0..limit.max(20) {
                let kind = if i < drops {
                    SampleKind::Dropped
                } else {
                    SampleKind::Success
                };
                g.update(&Sample::new(20 * MS, limit, kind));
            }
        }
        assert!(g.initial_limit() < 45, "{}", g.initial_limit());
        assert_eq!(g.excused, 0.0, "no drop was excused");
    }

    #[test]
    fn nan_settings_fall_back_to_defaults() {
        let g = Gradient2::new(1)
            .tolerance(f64::NAN)
            .smoothing(f64::NAN)
            .drop_threshold(f64::NAN);
        assert_eq!(
            (g.tolerance, g.smoothing, g.drop_threshold),
            (1.25, 0.2, 0.2)
        );
        let a = Aimd::new(1).backoff_ratio(f64::NAN);
        assert_eq!(a.backoff, 0.9);
    }
}
