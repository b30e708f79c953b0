//! Ready-made client and server stacks, in the order that works.
//!
//! # Client
//!
//! ```text
//!  request ─▶ total timeout ─▶ retry ─▶ breaker (per host) ─▶ attempt timeout ─▶ bulkhead ─▶ transport
//! ```
//!
//! - The **total timeout** is outermost: it bounds what the caller waits,
//!   retries and backoff included, **and the response body**: the deadline
//!   left at the head is carried into the body (see
//!   [What covers the body](#what-covers-the-body)).
//! - **Retry** is inside it, so no retry outlives the caller; it retries
//!   failures and throttled answers (after the server's `Retry-After`), only
//!   for idempotent requests, under a budget shared by every clone so that
//!   retries cannot turn an outage into a storm. It knows the deadline: the
//!   total timeout, or the [`Deadline`](crate::deadline::Deadline) the
//!   request carries if earlier ([`CarriedDeadline`]). A retry that could not
//!   start before it (a `Retry-After: 20` against a 10 s total timeout) is
//!   not waited for: the caller gets the server's answer (the 503, the 429)
//!   at once, not the timeout's error 10 s later.
//! - The **breaker** is inside retry so it sees every attempt (and retry
//!   does not retry its rejections: they are local, `Rejected`). It is keyed
//!   per authority, so one bad host does not cut off the others, and it does
//!   not count throttling: a server that says "slow down" is alive.
//!   With a [`GrpcClassifier`], an answer whose `grpc-status` comes in the
//!   trailers is judged when its stream ends
//!   ([`GrpcHostBreakerLayer`](crate::breaker::GrpcHostBreakerLayer)): a server stream that ends `UNAVAILABLE`
//!   counts as a failure even though its head looked fine.
//! - The **attempt timeout** is inside the breaker, so a hung attempt is a
//!   failure the breaker counts, and retry gets the time to try again. It
//!   bounds the attempt's body too: a body that drips past it is a failure
//!   for the breaker.
//! - The **bulkhead** is innermost: it bounds the connections and work in
//!   flight to the transport; its rejections are local, not counted by the
//!   breaker.
//! - **Deadline propagation**: the call's deadline (the total timeout) is
//!   stamped outside retry, and each attempt of a gRPC call carries the
//!   time then left in `grpc-timeout` (at most the attempt timeout), so the
//!   server can stop work nobody waits for ([`DeadlineLayer`],
//!   [`PropagateDeadlineLayer`]).
//!
//! # What covers the body
//!
//! The caller gets the response head before its body, and waits for both.
//! So the stack bounds and judges the whole response:
//!
//! | case | what the caller sees | breaker (and `metrics::BodyMetricsLayer`) | retry |
//! |---|---|---|---|
//! | head in time, body completes | the body | success (gRPC: the trailers' `grpc-status`) | — |
//! | body still incomplete at the attempt timeout | a body error [`ResponseElapsed`] (`Scope::Attempt`, `Phase::Body`) | failure | not retried |
//! | body still incomplete at the total timeout | a body error [`ResponseElapsed`] (`Scope::Total`, `Phase::Body`) | not counted (it is outside the breaker, as a head that misses the total timeout) | not retried |
//! | no frame for the [idle limit](ClientStack::body_idle_timeout) (off by default) | a body error [`ResponseElapsed`] (`Scope::Attempt`, `Phase::Idle`) | failure (it is enforced with the attempt timeout, inside the breaker) | not retried |
//! | body broken mid-way (reset, FIN before the announced length, bad chunk) | the transport's body error | failure | not retried |
//! | the caller drops the body after starting to read it | — | neither (a half-open probe slot is given back; [`cancelled_as`](ClientStack::cancelled_as)) | — |
//! | the caller drops the body unread (it wanted the status) | — | the head's verdict (a 2xx: success), so that status-only callers do not leave the breaker seeing only failures | — |
//! | no head in time | an error [`ResponseElapsed`] (`Phase::Head`) | failure (attempt timeout) | retried |
//!
//! Every [`ResponseElapsed`] has the timeout crate's `Elapsed` as its
//! source, so [`ErrorMapping`] answers 504 and the `tonic::Status` mapping
//! `DEADLINE_EXCEEDED` for a body that ran out of time as for a head.
//!
//! **What retry can do about a body.** Retry decides when an attempt's
//! response future ends, at the head, and hands that response to the
//! caller, who then reads the body: once the head is handed over, a retry
//! would answer a question the caller is already reading the answer to. So
//! failures **before the head** (transport errors, a failure status, the
//! attempt timeout) are retried as always (for replayable requests, within
//! the budget and the deadline), and failures **in the body** are not: they
//! reach the caller as body errors, and they count for the breaker, which
//! protects the next calls. Buffering small bodies inside retry, so that a
//! body failure becomes an attempt failure, was left out: it would delay
//! every head to the end of its body (a stream would never start) and hold
//! each body in memory; a caller who needs it can read the body inside its
//! own retry loop.
//!
//! [`ResponseElapsed`]: crate::response_timeout::ResponseElapsed
//!
//! # Server
//!
//! ```text
//!  request ─▶ errors → responses ─▶ bulkhead (shed load) ─▶ request timeout ─▶ handler
//! ```
//!
//! - **Errors become responses** outermost, so the server never sees an
//!   error (503 + `Retry-After`, 504, ...; see [`ErrorMapping`]).
//! - The **bulkhead** sheds load before any work is done: a request over the
//!   limit is answered at once with a 503 (or 429), which is cheap, instead of
//!   queueing behind requests that will time out. A shed answer carries
//!   `Retry-After: 1` ([`ServerStack::shed_retry_after`]) and
//!   `bulwark-shed: 1` ([`SHED_HEADER`](crate::SHED_HEADER)), so that a
//!   client tells "full, come back in a moment" from "broken": a
//!   [`ClientStack`] in front judges it throttled, backs off and retries
//!   within its budget, and its breaker stays closed.
//! - The **timeout** is inside the bulkhead so a permit is held for at most
//!   the timeout; it honours the caller's `grpc-timeout` when shorter
//!   ([`ServerDeadline`]).
//!
//! Both build to a `tower::Layer`: use them with `ServiceBuilder::layer`,
//! axum's `Router::layer`, or directly.

use crate::body::ReplayGuardLayer;
use crate::breaker::{BodyBreakerLayer, ServerOpenHint};
use crate::classify::{GrpcClassifier, HttpClassifier};
use crate::deadline::{
    CarriedDeadline, DeadlineLayer, PropagateDeadline, PropagateDeadlineLayer, ServerDeadline,
    SetDeadline,
};
use crate::optional::{Optional, OptionalLayer};
use crate::pushback::ServerPushback;
use crate::replay::HttpReplay;
use crate::response::{ErrorMapping, MapErrors};
use crate::response_timeout::{ResponseTimeout, ResponseTimeoutLayer};
use crate::verdict::{ClassifyBody, ClassifyEnd};
use bulwark_breaker::keyed::KeyedBreakers;
use bulwark_breaker::BreakerBuilder;
use bulwark_bulkhead::{Bulkhead, BulkheadBuilder, BulkheadLayer};
use bulwark_core::backoff::{BackoffPolicy, Jitter};
use bulwark_core::error::ConfigError;
use bulwark_core::{BoxError, Classify, Outcome};
use bulwark_retry::{Retry, RetryBudget, RetryLayer};
use bulwark_timeout::{Timeout, TimeoutLayer};
use http::uri::Authority;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::{Identity, Layer};

/// Builds the client [`Layer`]; see the [module docs](self) for the order.
///
/// | part | default | off |
/// |---|---|---|
/// | total timeout | 10 s, head and body | [`no_total_timeout`](Self::no_total_timeout) |
/// | retry | 3 attempts, exponential from 100 ms (x2, full jitter, at most 2 s), budget 20% + 10/s, `Retry-After` up to 30 s, idempotent requests only; no retry that cannot start before the total timeout (or the request's [`Deadline`](crate::deadline::Deadline)) ends: the last answer at once instead | [`no_retry`](Self::no_retry) |
/// | breaker | per authority (at most 1,024), the verdict taken when the response body ends ([`verdict`](crate::verdict)), with [`Breaker::builder`](bulwark_breaker::Breaker::builder)'s defaults: 50% failures over the last 10 s (at least 20 calls), or 10 in a row; open 200 ms, growing to 500 ms while probes fail; closes on 2 of 3 probes | [`no_breaker`](Self::no_breaker) |
/// | attempt timeout | half the total timeout (5 s; [`bulwark_stack::default_attempt_timeout`]), head and body | [`no_attempt_timeout`](Self::no_attempt_timeout) |
/// | body idle limit | off (see [`body_idle_timeout`](Self::body_idle_timeout)) | |
/// | bulkhead | 100 in flight, fail fast (as the generic stack's) | [`no_bulkhead`](Self::no_bulkhead) |
/// | deadline propagation | each attempt of a gRPC call carries `grpc-timeout`: the time left of the total timeout (or of a [`Deadline`](crate::deadline::Deadline) the request carries), at most the attempt timeout | [`no_deadline_propagation`](Self::no_deadline_propagation); every request: [`propagate_deadline_always`](Self::propagate_deadline_always) |
///
/// [`build`](Self::build) rejects what cannot work: an attempt timeout not
/// shorter than the total timeout (retry could never run), zero attempts,
/// a zero limit, an invalid backoff or breaker.
///
/// ```
/// use bulwark::http::ClientStack;
/// use std::time::Duration;
///
/// let err = ClientStack::new()
///     .total_timeout(Duration::from_secs(1))
///     .attempt_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "attempt_timeout");
///
/// // A gRPC client: classify by grpc-status.
/// let grpc = ClientStack::new().classifier(bulwark::http::GrpcClassifier::new()).build().unwrap();
/// # let _ = grpc;
/// ```
pub struct ClientStack<C = HttpClassifier> {
    /// The settings every client stack shares, their checks and their
    /// registry wiring: `bulwark-stack`'s.
    base: Base<C>,
    max_hosts: usize,
    host_idle: Duration,
    /// `None`: off; `Some(false)`: gRPC calls; `Some(true)`: every request.
    propagate: Option<bool>,
    body_idle: Option<Duration>,
    cancelled: Option<Outcome>,
}

/// The generic stack the HTTP stack is built on: its classifier, the HTTP
/// replay; the pushback and the per-host breakers are the HTTP stack's.
type Base<C> = bulwark_stack::ClientStack<C, (), HttpReplay>;

impl ClientStack {
    /// The defaults listed above.
    pub fn new() -> Self {
        ClientStack {
            base: bulwark_stack::ClientStack::new()
                .retry(|r| {
                    r.backoff(
                        BackoffPolicy::exponential(Duration::from_millis(100), 2.0)
                            .with_jitter(Jitter::Full)
                            .with_max(Duration::from_secs(2)),
                    )
                })
                .breaker(|b| b.name("http"))
                .bulkhead(|b| b.name("http"))
                .classifier(HttpClassifier::new())
                .replay(HttpReplay::new()),
            max_hosts: 1024,
            host_idle: DEFAULT_HOST_IDLE,
            propagate: Some(false),
            body_idle: None,
            cancelled: None,
        }
    }
}

impl Default for ClientStack {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> fmt::Debug for ClientStack<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStack")
            .field("base", &self.base)
            .field("max_hosts", &self.max_hosts)
            .field("host_idle", &self.host_idle)
            .field("propagate", &self.propagate)
            .field("body_idle", &self.body_idle)
            .finish_non_exhaustive()
    }
}

/// # Settings
///
/// The same shape as `bulwark::stack::ClientStack`'s, and the same
/// meaning for every method the two share: a part with one setting (a
/// timeout) takes its value; a part with a builder (retry, breaker,
/// bulkhead) takes a closure that edits this stack's default builder, so
/// what you do not set keeps the stack's default; `no_PART()` turns a part
/// off.
///
/// ```
/// use bulwark::backoff::BackoffPolicy;
/// use bulwark::http::ClientStack;
/// use std::time::Duration;
///
/// let layer = ClientStack::new()
///     .total_timeout(Duration::from_secs(2))
///     .retry(|r| r.max_attempts(2).backoff(BackoffPolicy::constant(Duration::from_millis(50))))
///     // Only the failure rate changes: window, minimum calls, open time
///     // and the name stay the stack's.
///     .breaker(|b| b.failure_rate(0.3))
///     .bulkhead(|b| b.max_concurrent(16))
///     .build()?;
/// assert_eq!(layer.bulkhead().unwrap().limit(), 16);
/// # Ok::<(), bulwark::error::ConfigError>(())
/// ```
impl<C> ClientStack<C> {
    fn base(mut self, edit: impl FnOnce(Base<C>) -> Base<C>) -> Self {
        self.base = edit(self.base);
        self
    }

    /// Bounds each call, retries and the response body included, and is
    /// the deadline retry plans within (default 10 s).
    pub fn total_timeout(self, limit: Duration) -> Self {
        self.base(|b| b.total_timeout(limit))
    }

    /// No total timeout.
    pub fn no_total_timeout(self) -> Self {
        self.base(|b| b.no_total_timeout())
    }

    /// Bounds each attempt, its response body included (default: half the
    /// total timeout).
    pub fn attempt_timeout(self, limit: Duration) -> Self {
        self.base(|b| b.attempt_timeout(limit))
    }

    /// No attempt timeout.
    pub fn no_attempt_timeout(self) -> Self {
        self.base(|b| b.no_attempt_timeout())
    }

    /// Edits the retry settings (attempts, backoff, budget, pushback cap,
    /// listeners), starting from the stack's (see the table above). The
    /// stack gives retry its classifier, the server's pushback
    /// (`Retry-After`, capped by the retry's `max_pushback`), its replay,
    /// seed and deadline. One attempt means no retry:
    /// the same as `no_retry()`, with no retry layer and so no retry or
    /// retry budget in the registry's health and metrics.
    ///
    /// ```
    /// use bulwark::http::ClientStack;
    /// use bulwark::retry::RetryEvent;
    ///
    /// let layer = ClientStack::new()
    ///     .retry(|r| r.max_attempts(2).on_event(|e: &RetryEvent| eprintln!("{e:?}")))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn retry(self, edit: impl FnOnce(RetryLayer) -> RetryLayer) -> Self {
        self.base(|b| b.retry(edit))
    }

    /// No retry layer.
    pub fn no_retry(self) -> Self {
        self.base(|b| b.no_retry())
    }

    /// Edits the template of each host's breaker, starting from the
    /// stack's ([`Breaker::builder`](bulwark_breaker::Breaker::builder)'s defaults, named `http`): what `edit`
    /// does not set keeps the stack's default.
    ///
    /// ```
    /// use bulwark::http::ClientStack;
    ///
    /// let layer = ClientStack::new().breaker(|b| b.consecutive_failures(3)).build()?;
    /// # let _ = layer;
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn breaker(self, edit: impl FnOnce(BreakerBuilder) -> BreakerBuilder) -> Self {
        self.base(|b| b.breaker(edit))
    }

    /// Keeps at most `n` per-host breakers (default 1,024).
    pub fn max_hosts(mut self, n: usize) -> Self {
        self.max_hosts = n;
        self
    }

    /// Drops a host's breaker once unused for `idle` (default 10 minutes).
    ///
    /// ```
    /// use bulwark::http::ClientStack;
    /// use std::time::Duration;
    ///
    /// let layer = ClientStack::new().host_idle_timeout(Duration::from_secs(60)).build().unwrap();
    /// # drop(layer);
    /// ```
    pub fn host_idle_timeout(mut self, idle: Duration) -> Self {
        self.host_idle = idle;
        self
    }

    /// No breaker.
    pub fn no_breaker(self) -> Self {
        self.base(|b| b.no_breaker())
    }

    /// Edits the bulkhead in front of the transport, starting from the
    /// stack's: at most 100 calls in flight, fail fast, named `http`.
    ///
    /// ```
    /// use bulwark::http::ClientStack;
    ///
    /// let layer = ClientStack::new().bulkhead(|b| b.max_concurrent(8)).build()?;
    /// assert_eq!(layer.bulkhead().unwrap().limit(), 8);
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn bulkhead(self, edit: impl FnOnce(BulkheadBuilder) -> BulkheadBuilder) -> Self {
        self.base(|b| b.bulkhead(edit))
    }

    /// No bulkhead.
    pub fn no_bulkhead(self) -> Self {
        self.base(|b| b.no_bulkhead())
    }

    /// Which requests may be retried (default: idempotent ones).
    pub fn replay(self, replay: HttpReplay) -> Self {
        self.base(|b| b.replay(replay))
    }

    /// Writes `grpc-timeout` on every request, not only on gRPC calls
    /// (a [`ServerStack`] honours it on any request).
    pub fn propagate_deadline_always(mut self) -> Self {
        self.propagate = Some(true);
        self
    }

    /// Writes no `grpc-timeout`.
    pub fn no_deadline_propagation(mut self) -> Self {
        self.propagate = None;
        self
    }

    /// Also fails a response body that waits longer than `idle` for its
    /// next frame ([`Phase::Idle`](crate::response_timeout::Phase::Idle)),
    /// for streams that may be long but must not stall. Off by default:
    /// the total timeout (and the attempt timeout) already bound every
    /// body, and no one idle limit suits every stream (a watch or a
    /// long-poll may be quiet for minutes); set it when a stream runs
    /// without a total timeout, or must show progress more often than the
    /// timeout allows.
    pub fn body_idle_timeout(mut self, idle: Duration) -> Self {
        self.body_idle = Some(idle);
        self
    }

    /// What a response body the caller drops mid-way counts as for the
    /// breaker (`None`, the default: nothing, neither a success nor a
    /// failure; see [`verdict`](crate::verdict)).
    pub fn cancelled_as(mut self, outcome: Option<Outcome>) -> Self {
        self.cancelled = outcome;
        self
    }

    /// Seeds every random draw of the stack (retry jitter, the breakers'
    /// open-time jitter), for runs that repeat exactly.
    pub fn seed(self, seed: u64) -> Self {
        self.base(|b| b.seed(seed))
    }

    /// Names the stack (default `http`): its per-host breakers (each
    /// `NAME/host:port`) and bulkhead carry the name in events, errors and
    /// health.
    ///
    /// ```
    /// use bulwark::http::ClientStack;
    ///
    /// let layer = ClientStack::new().name("payments").build().unwrap();
    /// assert_eq!(layer.name(), "payments");
    /// ```
    pub fn name(self, name: impl Into<Arc<str>>) -> Self {
        self.base(|b| b.name(name))
    }

    /// Names the stack `name` and registers every part in `registry`
    /// (feature `observe`), so that health (`/health/resilience`) and
    /// metrics show them:
    ///
    /// | part | registered as | metrics (feature `metrics`) |
    /// |---|---|---|
    /// | per-host breakers | keyed breakers `NAME` (keys by authority) | `bulwark_breaker_transitions_total{name="NAME"}`, `bulwark_breaker_rejected_total{name="NAME"}` (all hosts together: no state gauge per host), `bulwark_keyed_breaker_keys`, `bulwark_keyed_breaker_open_keys` |
    /// | retry | retry `NAME`, its budget the retry budget `NAME` | `bulwark_retries_total`, `bulwark_retry_gave_up_total`, `bulwark_retry_budget_available` |
    /// | total, attempt timeout | timeouts `NAME/total`, `NAME/attempt` | `bulwark_timeouts_total` |
    /// | bulkhead | bulkhead `NAME` | `bulwark_bulkhead_*` |
    ///
    /// It is the generic stack's registration
    /// (`bulwark::stack::ClientStack::registry`), with the breakers keyed
    /// by authority: the registry makes each instance on first use and
    /// hands the same one to every later build of a stack of that name, so
    /// rebuilding a stack (after a configuration reload, say) keeps its
    /// breakers' state. The registry's instance wins over this stack's
    /// settings for a breaker template or bulkhead limit made earlier
    /// (change those live with `Breaker::reconfigure` and
    /// `BulkheadHandle::set_limit`).
    ///
    /// ```
    /// use bulwark::http::ClientStack;
    /// use bulwark::observe::{Kind, Registry};
    ///
    /// let registry = Registry::new();
    /// let layer = ClientStack::new().registry(&registry, "payments").build().unwrap();
    /// assert!(registry.get_keyed_breakers::<http::uri::Authority>("payments").is_some());
    /// assert!(registry.list().contains(&(Kind::Timeout, "payments/attempt".to_owned())));
    /// # drop(layer);
    /// ```
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    pub fn registry(self, registry: &bulwark_observe::Registry, name: &str) -> Self {
        self.base(|b| b.registry(registry, name))
    }

    /// The classifier shared by retry and the breaker (default
    /// [`HttpClassifier`]; use [`GrpcClassifier`] for gRPC: the breaker then
    /// judges a streamed answer by the `grpc-status` in its trailers, when
    /// the stream ends). [`build`](ClientStack::build) takes a
    /// [`ClientClassifier`]: wrap any other classifier in
    /// [`HeadClassifier`].
    pub fn classifier<C2>(self, classifier: C2) -> ClientStack<C2> {
        ClientStack {
            base: self.base.classifier(classifier),
            max_hosts: self.max_hosts,
            host_idle: self.host_idle,
            propagate: self.propagate,
            body_idle: self.body_idle,
            cancelled: self.cancelled,
        }
    }
}

/// A classifier the [`ClientStack`] can use: it also chooses how the
/// stack's per-host breaker hears the verdict. Every one of them goes
/// through a [`BodyBreakerLayer`], which takes the verdict at the end of
/// the response body when the head does not decide it (see
/// [`verdict`](crate::verdict)):
///
/// - [`HttpClassifier`]: a successful head waits for its body: a body that
///   breaks off is a failure.
/// - [`GrpcClassifier`]: at the response head when it carries the
///   `grpc-status` (or is not a 2xx), else when the stream ends, from the
///   trailers ([`GrpcHostBreakerLayer`](crate::breaker::GrpcHostBreakerLayer),
///   whose response body is a
///   [`GrpcBody`](crate::breaker::grpc::GrpcBody)).
/// - any other [`Classify`]: wrap it in [`HeadClassifier`] (judged at the
///   head).
pub trait ClientClassifier: ClassifyEnd {
    /// The per-host breaker layer (a pass-through without breakers).
    type Breaker: Clone;

    /// The breaker layer over `breakers` (`None`: no breaker), honouring
    /// server pushback as `hint` says, counting a body dropped mid-way as
    /// `cancelled` (`None`: nothing).
    fn host_breaker(
        &self,
        breakers: Option<KeyedBreakers<Authority>>,
        hint: ServerOpenHint,
        cancelled: Option<Outcome>,
    ) -> Self::Breaker;
}

fn body_breaker<C>(
    classifier: C,
    breakers: Option<KeyedBreakers<Authority>>,
    hint: ServerOpenHint,
    cancelled: Option<Outcome>,
) -> BodyBreakerLayer<C> {
    match breakers {
        Some(b) => BodyBreakerLayer::new(b, classifier),
        None => BodyBreakerLayer::off(classifier),
    }
    .open_hint(hint)
    .cancelled_as(cancelled)
}

impl ClientClassifier for HttpClassifier {
    type Breaker = BodyBreakerLayer<HttpClassifier>;

    fn host_breaker(
        &self,
        breakers: Option<KeyedBreakers<Authority>>,
        hint: ServerOpenHint,
        cancelled: Option<Outcome>,
    ) -> Self::Breaker {
        body_breaker(*self, breakers, hint, cancelled)
    }
}

impl ClientClassifier for GrpcClassifier {
    type Breaker = BodyBreakerLayer<GrpcClassifier>;

    fn host_breaker(
        &self,
        breakers: Option<KeyedBreakers<Authority>>,
        hint: ServerOpenHint,
        cancelled: Option<Outcome>,
    ) -> Self::Breaker {
        body_breaker(*self, breakers, hint, cancelled)
    }
}

/// Any [`Classify`] as a [`ClientClassifier`] whose verdict the breaker
/// takes at the response head.
///
/// The classifier sees the stack's responses, whose bodies are wrapped
/// (in a [`TimeoutBody`](crate::response_timeout::TimeoutBody) and a
/// [`VerdictBody`](crate::verdict::VerdictBody)): write it for any body.
///
/// ```
/// use bulwark::http::stack::HeadClassifier;
/// use bulwark::http::ClientStack;
/// use bulwark::{BoxError, Classify, Outcome};
///
/// /// Only 503 is a failure here.
/// #[derive(Clone, Copy)]
/// struct Only503;
/// impl<B> Classify<http::Response<B>> for Only503 {
///     fn classify(&self, r: &Result<http::Response<B>, BoxError>) -> Outcome {
///         match r {
///             Ok(res) if res.status() == 503 => Outcome::Failure,
///             Ok(_) => Outcome::Success,
///             Err(e) => Outcome::of_error(e),
///         }
///     }
/// }
/// let layer = ClientStack::new().classifier(HeadClassifier(Only503)).build().unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadClassifier<C>(pub C);

impl<Res, C: Classify<Res>> Classify<Res> for HeadClassifier<C> {
    #[inline]
    fn classify(&self, result: &Result<Res, BoxError>) -> Outcome {
        self.0.classify(result)
    }
}

impl<C: Clone> ClassifyEnd for HeadClassifier<C> {
    /// Never consulted: the head decides.
    type End = crate::verdict::HttpEnd;

    #[inline]
    fn end_judge(&self) -> crate::verdict::HttpEnd {
        crate::verdict::HttpEnd
    }
}

impl<Res, C: Classify<Res> + Clone> ClassifyBody<Res> for HeadClassifier<C> {
    #[inline]
    fn verdict_at_head(&self, result: &Result<Res, BoxError>) -> Option<Outcome> {
        Some(self.0.classify(result))
    }
}

impl<C: Clone> ClientClassifier for HeadClassifier<C> {
    type Breaker = BodyBreakerLayer<HeadClassifier<C>>;

    fn host_breaker(
        &self,
        breakers: Option<KeyedBreakers<Authority>>,
        hint: ServerOpenHint,
        cancelled: Option<Outcome>,
    ) -> Self::Breaker {
        body_breaker(self.clone(), breakers, hint, cancelled)
    }
}

impl<C: ClientClassifier> ClientStack<C> {
    /// Checks the configuration and builds the layer: the settings every
    /// client stack shares are checked and wired by the generic stack
    /// ([`bulwark_stack::ClientStack::into_parts`]), the rest here.
    ///
    /// # Errors
    ///
    /// What cannot work, naming the setting: those of the generic stack
    /// (a zero timeout, an attempt timeout not shorter than the total
    /// timeout while retrying, an invalid retry, breaker or bulkhead, each
    /// naming its own layer and setting) and, of layer `client stack`, a
    /// zero `body_idle_timeout`, `max_hosts` or `host_idle_timeout`.
    pub fn build(self) -> Result<ClientLayer<C>, ConfigError> {
        let invalid = |field, reason: &str| Err(ConfigError::new("client stack", field, reason));
        if self.body_idle.is_some_and(|d| d.is_zero()) {
            return invalid("body_idle_timeout", "must be longer than zero");
        }
        let parts = self.base.into_parts()?;
        let breakers = match &parts.breaker {
            None => None,
            Some(breaker) => {
                if self.max_hosts == 0 {
                    return invalid("max_hosts", "must be at least 1");
                }
                if self.host_idle.is_zero() {
                    return invalid("host_idle_timeout", "must be longer than zero");
                }
                Some(breaker.keyed::<Authority>(self.max_hosts, self.host_idle)?)
            }
        };
        let name = parts.name.clone().unwrap_or_else(|| Arc::from("http"));
        // The cap on the server's pushback, for retry and the breaker's
        // open hint: the retry's, or its default without retry.
        let max_pushback = parts.retry.as_ref().map_or_else(
            || RetryLayer::new().get_max_pushback(),
            |r| r.get_max_pushback(),
        );
        let retry = parts.retry.clone().map(|r| {
            r.pushback(ServerPushback::new().max(max_pushback))
                .deadline_from(CarriedDeadline)
        });
        let propagate = self.propagate.map(|always| {
            let layer = PropagateDeadlineLayer::new();
            let layer = if always { layer } else { layer.grpc_only() };
            match parts.attempt_timeout {
                Some(attempt) => layer.max(attempt),
                None => layer,
            }
        });
        let timeout = |layer: ResponseTimeoutLayer, _part: &str| {
            #[cfg(feature = "observe")]
            if let Some(l) = parts.timeout_listener(_part) {
                return layer.on_event(l);
            }
            layer
        };
        Ok(ClientLayer {
            name,
            total: timeout(ResponseTimeoutLayer::total(parts.total_timeout), "total"),
            deadline: parts
                .total_timeout
                .filter(|_| propagate.is_some())
                .map(|total| DeadlineLayer::new(Some(total))),
            retry,
            propagate,
            guard: Identity::new(),
            breaker: parts.classifier.host_breaker(
                breakers.clone(),
                ServerOpenHint::new(max_pushback),
                self.cancelled,
            ),
            breakers,
            attempt: timeout(
                ResponseTimeoutLayer::attempt(parts.attempt_timeout).idle(self.body_idle),
                "attempt",
            ),
            bulkhead: parts.bulkhead,
        })
    }
}

/// How long a host's breaker is kept unused (the keyed breakers' default).
const DEFAULT_HOST_IDLE: Duration = Duration::from_secs(600);

/// The layer built by [`ClientStack::build`].
///
/// Clones share the breakers, the retry budget and the bulkhead.
#[derive(Clone)]
pub struct ClientLayer<C: ClientClassifier = HttpClassifier, G = Identity> {
    name: Arc<str>,
    total: ResponseTimeoutLayer,
    deadline: Option<DeadlineLayer>,
    retry: Option<RetryLayer<C, ServerPushback, HttpReplay, CarriedDeadline>>,
    propagate: Option<PropagateDeadlineLayer>,
    guard: G,
    breakers: Option<KeyedBreakers<Authority>>,
    breaker: C::Breaker,
    attempt: ResponseTimeoutLayer,
    bulkhead: Option<BulkheadLayer>,
}

impl<C: ClientClassifier, G> ClientLayer<C, G> {
    /// The stack's name ([`ClientStack::name`], `http` by default).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bulkhead's handle, to watch its load (`None` without one).
    ///
    /// ```
    /// use bulwark::http::ClientStack;
    ///
    /// let layer = ClientStack::new().bulkhead(|b| b.max_concurrent(8)).build().unwrap();
    /// assert_eq!(layer.bulkhead().unwrap().limit(), 8);
    /// ```
    pub fn bulkhead(&self) -> Option<bulwark_bulkhead::BulkheadHandle> {
        self.bulkhead.as_ref().and_then(BulkheadLayer::handle)
    }

    /// The per-host breakers, as a handle (`None` without a breaker).
    pub fn breakers(&self) -> Option<&KeyedBreakers<Authority>> {
        self.breakers.as_ref()
    }

    /// The retry budget (`None` without retry).
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.retry.as_ref().map(|r| r.get_budget())
    }

    /// For requests with a [`ReplayBody`](crate::body::ReplayBody): puts a
    /// [`ReplayGuardLayer`] inside retry, so a body over its cap is sent once
    /// and not retried. The stack then takes `http::Request<ReplayBody<B>>`.
    pub fn replay_guard(self, guard: ReplayGuardLayer) -> ClientLayer<C, ReplayGuardLayer> {
        ClientLayer {
            name: self.name,
            total: self.total,
            deadline: self.deadline,
            retry: self.retry,
            propagate: self.propagate,
            guard,
            breakers: self.breakers,
            breaker: self.breaker,
            attempt: self.attempt,
            bulkhead: self.bulkhead,
        }
    }
}

impl<C: ClientClassifier, G> fmt::Debug for ClientLayer<C, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLayer")
            .field("total", &self.total)
            .field("retry", &self.retry.is_some())
            .field("breakers", &self.breakers)
            .field("attempt", &self.attempt)
            .field("bulkhead", &self.bulkhead)
            .finish_non_exhaustive()
    }
}

/// The bulkhead, if on.
pub type ClientBulkhead<S> = Optional<Bulkhead<S>, S>;
/// The attempt timeout (head and body; a pass-through if off).
pub type ClientAttempt<S> = ResponseTimeout<ClientBulkhead<S>>;
/// The per-host breaker, or its pass-through (see [`ClientClassifier`]).
pub type ClientBreaker<S, C> =
    <<C as ClientClassifier>::Breaker as Layer<ClientAttempt<S>>>::Service;
/// The guard (identity unless [`ClientLayer::replay_guard`]).
pub type ClientGuard<S, C, G> = <G as Layer<ClientBreaker<S, C>>>::Service;
/// Writes each attempt's `grpc-timeout`, if on.
pub type ClientPropagate<S, C, G> =
    Optional<PropagateDeadline<ClientGuard<S, C, G>>, ClientGuard<S, C, G>>;
/// Retry, if on.
pub type ClientRetry<S, C, G> = Optional<
    Retry<ClientPropagate<S, C, G>, C, ServerPushback, HttpReplay, CarriedDeadline>,
    ClientPropagate<S, C, G>,
>;
/// Stamps the call's deadline (from the total timeout), if propagating.
pub type ClientDeadline<S, C, G> =
    Optional<SetDeadline<ClientRetry<S, C, G>>, ClientRetry<S, C, G>>;
/// The whole client stack around a transport `S`: the total timeout (head
/// and body; a pass-through if off) outermost.
pub type ClientService<S, C = HttpClassifier, G = Identity> =
    ResponseTimeout<ClientDeadline<S, C, G>>;

impl<S, C, G> Layer<S> for ClientLayer<C, G>
where
    C: ClientClassifier,
    C::Breaker: Layer<ClientAttempt<S>>,
    G: Layer<ClientBreaker<S, C>>,
{
    type Service = ClientService<S, C, G>;

    fn layer(&self, inner: S) -> Self::Service {
        let s = OptionalLayer::new(self.bulkhead.clone()).layer(inner);
        let s = self.attempt.layer(s);
        let s = self.breaker.layer(s);
        let s = self.guard.layer(s);
        let s = OptionalLayer::new(self.propagate.clone()).layer(s);
        let s = OptionalLayer::new(self.retry.clone()).layer(s);
        let s = OptionalLayer::new(self.deadline.clone()).layer(s);
        self.total.layer(s)
    }
}

/// Builds the server [`Layer`]; see the [module docs](self) for the order.
///
/// | part | default | off |
/// |---|---|---|
/// | errors → responses | [`ErrorMapping::server`] | always on |
/// | bulkhead | 512 in flight, fixed (an adaptive limit through [`bulkhead`](Self::bulkhead) moves it), the rest shed at once (503 + `Retry-After: 1` + `bulwark-shed: 1`) | [`no_bulkhead`](Self::no_bulkhead) |
/// | request timeout | 30 s, or the caller's `grpc-timeout` if shorter | [`no_timeout`](Self::no_timeout) |
///
/// ```
/// use bulwark::http::ServerStack;
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let layer = ServerStack::new()
///     .bulkhead(|b| b.max_concurrent(100))
///     .timeout(Duration::from_secs(5))
///     .shed_status(StatusCode::TOO_MANY_REQUESTS)
///     .build()
///     .unwrap();
/// // axum: Router::new().route(..).layer(layer)
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct ServerStack {
    bulkhead: BulkheadBuilder,
    /// Whether the bulkhead is on.
    shed: bool,
    timeout: Option<Duration>,
    deadline: ServerDeadline,
    mapping: ErrorMapping,
    name: Option<Arc<str>>,
    #[cfg(feature = "observe")]
    registry: Option<bulwark_observe::Registry>,
}

impl ServerStack {
    /// The defaults listed above.
    pub fn new() -> Self {
        ServerStack {
            bulkhead: BulkheadLayer::builder().max_concurrent(512),
            shed: true,
            timeout: Some(Duration::from_secs(30)),
            deadline: ServerDeadline::new(None),
            mapping: ErrorMapping::server(),
            name: None,
            #[cfg(feature = "observe")]
            registry: None,
        }
    }

    /// Names the stack (default `server`): its bulkhead and timeout carry
    /// the name in events and health.
    ///
    /// ```
    /// use bulwark::http::ServerStack;
    ///
    /// let layer = ServerStack::new().name("api").build().unwrap();
    /// assert_eq!(layer.name(), "api");
    /// ```
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Names the stack `name` and registers its parts in `registry`
    /// (feature `observe`): the bulkhead as the *serving* bulkhead `NAME`
    /// (it counts for readiness, `/health/ready`, and every shed request in
    /// `bulwark_bulkhead_rejected_total{name="NAME"}`), the request timeout
    /// as the timeout `NAME` (`bulwark_timeouts_total{name="NAME"}`).
    ///
    /// ```
    /// use bulwark::http::ServerStack;
    /// use bulwark::observe::Registry;
    ///
    /// let registry = Registry::new();
    /// let layer = ServerStack::new().registry(&registry, "server").build().unwrap();
    /// assert_eq!(registry.readiness().bulkheads[0].name, "server");
    /// // axum: Router::new().route(..).layer(layer)
    /// # drop(layer);
    /// ```
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    pub fn registry(mut self, registry: &bulwark_observe::Registry, name: &str) -> Self {
        self.name = Some(name.into());
        self.registry = Some(registry.clone());
        self
    }

    /// Edits the bulkhead that sheds load, starting from the stack's: at
    /// most 512 requests in flight, the rest shed at once. The same shape
    /// as [`ClientStack::bulkhead`]: what `edit` does not set keeps the
    /// stack's default.
    ///
    /// ```
    /// use bulwark::http::ServerStack;
    /// use std::time::Duration;
    ///
    /// // 100 in flight; a request over the limit waits up to 50 ms for a
    /// // permit before it is shed.
    /// let layer = ServerStack::new()
    ///     .bulkhead(|b| b.max_concurrent(100).max_wait(Duration::from_millis(50)))
    ///     .build()?;
    /// assert_eq!(layer.bulkhead().unwrap().limit(), 100);
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    ///
    /// The limit can also move with the load
    /// ([`BulkheadBuilder::adaptive`], see
    /// [`bulwark::bulkhead::adaptive`](bulwark_bulkhead::adaptive)), between
    /// the algorithm's bounds and at most `max_concurrent` (512 unless set)
    /// unless the algorithm sets its own maximum. It is off by default, as
    /// chosen in `bulwark-sim` (`cargo run --example simulate -- --servers`,
    /// callers without resilience of their own; figures in the
    /// repository's `BENCHMARKS.md`), goodput during the fault:
    ///
    /// | scenario | no stack | fixed 512 (default) | `Gradient2::new(16)` |
    /// |---|---:|---:|---:|
    /// | `overload` (2×) | 15.7% | 50.0%, p99 1.5 s | 49.4%, p99 187 ms |
    /// | `brownout` (10× slower, 30% failing) | 70.2% | 70.2% | 68.7% |
    /// | `slow-recovery` | 54.6% | 54.6% | 51.0% |
    ///
    /// Where the upstream's capacity is far above what 512 calls in flight
    /// need, the fixed limit loses nothing and the adaptive one trades a few
    /// points for a much shorter queue. A handler whose capacity is far
    /// below 512 (a small worker pool, so that 512 queued calls wait longer
    /// than callers do) needs a fixed limit that fits it, or an adaptive
    /// one: the `overload` example (3× load on 8 workers, answers within
    /// 1 s) serves 2% with the default 512 and 91% with `Gradient2`.
    ///
    /// ```
    /// use bulwark::bulkhead::adaptive::Gradient2;
    /// use bulwark::http::ServerStack;
    ///
    /// let layer = ServerStack::new()
    ///     .bulkhead(|b| b.adaptive(Gradient2::new(16)))
    ///     .build()?;
    /// // axum: Router::new().route(..).layer(layer)
    /// # drop(layer);
    /// # Ok::<(), bulwark::error::ConfigError>(())
    /// ```
    pub fn bulkhead(mut self, edit: impl FnOnce(BulkheadBuilder) -> BulkheadBuilder) -> Self {
        self.bulkhead = edit(self.bulkhead);
        self.shed = true;
        self
    }

    /// No bulkhead.
    pub fn no_bulkhead(mut self) -> Self {
        self.shed = false;
        self
    }

    /// Bounds each request.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// No server-side limit (the caller's `grpc-timeout` still applies).
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Also honours a caller's deadline in this HTTP header (see
    /// [`ServerDeadline::http_header`]).
    pub fn deadline_header(mut self, header: http::HeaderName) -> Self {
        self.deadline = self.deadline.http_header(header);
        self
    }

    /// The status of a shed request (503 by default; 429 is the other
    /// common choice).
    pub fn shed_status(mut self, status: http::StatusCode) -> Self {
        self.mapping = self.mapping.bulkhead_status(status);
        self
    }

    /// The `Retry-After` of a shed request (1 s by default, rounded up to
    /// whole seconds; see [`ErrorMapping::shed_retry_after`]).
    pub fn shed_retry_after(mut self, after: Duration) -> Self {
        self.mapping = self.mapping.shed_retry_after(after);
        self
    }

    /// The whole error mapping.
    pub fn mapping(mut self, mapping: ErrorMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// An invalid bulkhead (layer `bulkhead`), or a zero `timeout` (layer
    /// `server stack`).
    pub fn build(self) -> Result<ServerLayer, ConfigError> {
        if self.shed {
            self.bulkhead.validate()?;
        }
        if self.timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "server stack",
                "timeout",
                "must be longer than zero",
            ));
        }
        let name: Arc<str> = self.name.clone().unwrap_or_else(|| Arc::from("server"));
        let bulkhead = self.shed.then(|| {
            let builder = self.bulkhead.clone();
            #[cfg(feature = "observe")]
            if let Some(r) = &self.registry {
                return r.serving_bulkhead(&name, builder);
            }
            builder.name(name.clone()).build_shared()
        });
        // Shared by every clone: axum clones the service for each request.
        let deadline = ServerDeadlineWith(Arc::new(self.deadline.replace_max(self.timeout)));
        let timeout = TimeoutLayer::per_request(deadline);
        #[cfg(feature = "observe")]
        let timeout = match &self.registry {
            Some(r) => timeout.on_event(r.timeout_listener(&name)),
            None => timeout,
        };
        Ok(ServerLayer {
            name,
            mapping: self.mapping,
            bulkhead,
            timeout,
        })
    }
}

impl Default for ServerStack {
    fn default() -> Self {
        Self::new()
    }
}

/// The server stack's timeout policy: the server's limit and the caller's
/// deadline, whichever is shorter.
///
/// One pointer, shared by every clone: axum clones the whole service for
/// each request, so the service is kept small and cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerDeadlineWith(Arc<ServerDeadline>);

impl<B> bulwark_timeout::TimeoutPolicy<http::Request<B>> for ServerDeadlineWith {
    #[inline]
    fn timeout(&self, req: &http::Request<B>) -> Option<Duration> {
        bulwark_timeout::TimeoutPolicy::timeout(&*self.0, req)
    }
}

/// The layer built by [`ServerStack::build`]. Clones share the bulkhead.
#[derive(Debug, Clone)]
pub struct ServerLayer<M = ErrorMapping> {
    name: Arc<str>,
    mapping: M,
    bulkhead: Option<BulkheadLayer>,
    timeout: TimeoutLayer<ServerDeadlineWith>,
}

impl<M> ServerLayer<M> {
    /// The stack's name ([`ServerStack::name`], `server` by default).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bulkhead's handle, to watch its load (`None` without one).
    pub fn bulkhead(&self) -> Option<bulwark_bulkhead::BulkheadHandle> {
        self.bulkhead.as_ref().and_then(BulkheadLayer::handle)
    }

    /// Maps errors to responses with `mapping` instead: any
    /// [`ErrorToResponse`](crate::response::ErrorToResponse), such as a
    /// closure, or for a tonic server
    /// `bulwark_http::status::grpc_error_response` (feature `tonic`), whose
    /// answers are gRPC statuses.
    pub fn map_errors_with<M2>(self, mapping: M2) -> ServerLayer<M2> {
        ServerLayer {
            name: self.name,
            mapping,
            bulkhead: self.bulkhead,
            timeout: self.timeout,
        }
    }
}

/// The whole server stack around a handler `S`.
pub type ServerService<S, M = ErrorMapping> = MapErrors<
    Optional<Bulkhead<Timeout<S, ServerDeadlineWith>>, Timeout<S, ServerDeadlineWith>>,
    M,
>;

impl<S, M: Clone> Layer<S> for ServerLayer<M> {
    type Service = ServerService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        let s = self.timeout.layer(inner);
        let s = OptionalLayer::new(self.bulkhead.clone()).layer(s);
        MapErrors::new(s, self.mapping.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GrpcClassifier;
    use std::sync::{Arc, Mutex};
    use tower::{ServiceBuilder, ServiceExt};

    /// Sends one call through `stack` to a server that always answers
    /// UNAVAILABLE (trailers-only), and returns the `grpc-timeout` of each
    /// attempt.
    async fn timeouts_sent(stack: ClientStack<GrpcClassifier>, grpc: bool) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = move |req: http::Request<String>| {
            let t = req
                .headers()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_owned());
            log.lock().unwrap().push(t.unwrap_or_default());
            std::future::ready(Ok::<_, std::io::Error>(
                http::Response::builder()
                    .header("grpc-status", "14")
                    .body(String::new())
                    .unwrap(),
            ))
        };
        let svc = ServiceBuilder::new()
            .layer(stack.build().unwrap())
            .service(tower::service_fn(server));
        let mut req = http::Request::post("http://a.example/pkg.Svc/Get");
        if grpc {
            req = req.header("content-type", "application/grpc");
        }
        let _ = svc.oneshot(req.body(String::new()).unwrap()).await;
        let v = seen.lock().unwrap().clone();
        v
    }

    fn grpc_stack() -> ClientStack<GrpcClassifier> {
        ClientStack::new()
            .classifier(GrpcClassifier::new())
            .replay(HttpReplay::new().retry_all())
            .no_breaker()
            .retry(|r| {
                r.max_attempts(3)
                    .backoff(BackoffPolicy::constant(Duration::from_millis(100)))
            })
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn each_attempt_sends_the_time_then_left() {
        let stack = grpc_stack()
            .total_timeout(Duration::from_secs(2))
            .no_attempt_timeout();
        assert_eq!(
            timeouts_sent(stack, true).await,
            ["2000000u", "1900000u", "1800000u"]
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn grpc_timeout_is_capped_by_the_attempt_timeout_and_only_for_grpc() {
        let stack = || {
            grpc_stack()
                .total_timeout(Duration::from_millis(1150))
                .attempt_timeout(Duration::from_secs(1))
        };
        // 1.15 s left, capped at the 1 s attempt timeout; then 1.05 s
        // (capped); then 0.95 s.
        assert_eq!(
            timeouts_sent(stack(), true).await,
            ["1000000u", "1000000u", "950000u"]
        );
        // Not a gRPC call: nothing, unless asked for.
        assert_eq!(timeouts_sent(stack(), false).await, ["", "", ""]);
        assert_eq!(
            timeouts_sent(stack().propagate_deadline_always(), false).await,
            ["1000000u", "1000000u", "950000u"]
        );
        assert_eq!(
            timeouts_sent(stack().no_deadline_propagation(), true).await,
            ["", "", ""]
        );
        // No total timeout: nothing to send.
        assert_eq!(
            timeouts_sent(grpc_stack().no_total_timeout(), true).await,
            ["", "", ""]
        );
    }

    /// A server that answers `status` with `Retry-After: retry_after`, and
    /// counts its calls.
    fn throttling(
        status: u16,
        retry_after: &'static str,
    ) -> (
        impl tower::Service<
                http::Request<String>,
                Response = http::Response<String>,
                Error = std::io::Error,
                Future = impl Send,
            > + Clone,
        Arc<Mutex<u32>>,
    ) {
        let calls = Arc::new(Mutex::new(0));
        let count = calls.clone();
        let server = tower::service_fn(move |_: http::Request<String>| {
            *count.lock().unwrap() += 1;
            std::future::ready(Ok::<_, std::io::Error>(
                http::Response::builder()
                    .status(status)
                    .header("retry-after", retry_after)
                    .body(String::new())
                    .unwrap(),
            ))
        });
        (server, calls)
    }

    fn get() -> http::Request<String> {
        http::Request::get("http://a.example/")
            .body(String::new())
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_retry_after_past_the_total_timeout_returns_the_answer_at_once() {
        // Issue 12, defect 4: the default stack (10 s total timeout) against a
        // 503 with Retry-After: 20 used to wait 10 s and fail with "request
        // timed out". Ten years, and 1e26 s (saturating), the same.
        for after in ["20", "315360000", "100000000000000000000000000"] {
            let (server, calls) = throttling(503, after);
            let svc = ServiceBuilder::new()
                .layer(ClientStack::new().build().unwrap())
                .service(server);
            let start = tokio::time::Instant::now();
            let res = svc.oneshot(get()).await.expect("the server's answer");
            assert_eq!(res.status(), 503, "Retry-After: {after}");
            assert_eq!(start.elapsed(), Duration::ZERO, "Retry-After: {after}");
            assert_eq!(*calls.lock().unwrap(), 1);
        }
        // A 429 whose Retry-After fits is honoured, to the millisecond.
        let (server, calls) = throttling(429, "4");
        let svc = ServiceBuilder::new()
            .layer(ClientStack::new().build().unwrap())
            .service(server);
        let start = tokio::time::Instant::now();
        let res = svc.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 429);
        // 0, 4 s, 8 s; a third retry at 12 s would pass the 10 s deadline.
        assert_eq!(*calls.lock().unwrap(), 3);
        assert_eq!(start.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn retry_reads_the_deadline_the_request_carries() {
        let (server, calls) = throttling(429, "2");
        let svc = ServiceBuilder::new()
            .layer(ClientStack::new().build().unwrap())
            .service(server);
        let mut req = get();
        req.extensions_mut()
            .insert(crate::deadline::Deadline::after(Duration::from_secs(1)));
        let start = tokio::time::Instant::now();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(*calls.lock().unwrap(), 1);
        // Without a total timeout, the request's deadline alone counts.
        let (server, calls) = throttling(429, "2");
        let svc = ServiceBuilder::new()
            .layer(ClientStack::new().no_total_timeout().build().unwrap())
            .service(server);
        let mut req = get();
        req.extensions_mut()
            .insert(crate::deadline::Deadline::after(Duration::from_secs(3)));
        let start = tokio::time::Instant::now();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 429);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(*calls.lock().unwrap(), 2);
    }

    #[test]
    fn builder_checks() {
        assert!(ClientStack::new().build().is_ok());
        let e = ClientStack::new()
            .total_timeout(Duration::from_secs(1))
            .attempt_timeout(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "attempt_timeout");
        assert!(e.to_string().contains("not shorter"));
        // Without retry, equal limits are fine.
        assert!(ClientStack::new()
            .total_timeout(Duration::from_secs(1))
            .attempt_timeout(Duration::from_secs(1))
            .no_retry()
            .build()
            .is_ok());
        // Each part's error names its own layer and setting.
        let layer_field = |e: ConfigError| (e.layer(), e.field());
        let e = ClientStack::new().retry(|r| r.max_attempts(0)).build();
        assert_eq!(
            e.map_err(layer_field).unwrap_err(),
            ("retry", "max_attempts")
        );
        let e = ClientStack::new().bulkhead(|b| b.max_concurrent(0)).build();
        assert_eq!(
            e.map_err(layer_field).unwrap_err(),
            ("bulkhead", "max_concurrent")
        );
        let e = ClientStack::new().breaker(|b| b.failure_rate(2.0)).build();
        assert_eq!(
            e.map_err(layer_field).unwrap_err(),
            ("circuit breaker", "failure_rate")
        );
        let e = ClientStack::new().max_hosts(0).build();
        assert_eq!(
            e.map_err(layer_field).unwrap_err(),
            ("client stack", "max_hosts")
        );
        let e = ServerStack::new().bulkhead(|b| b.max_concurrent(0)).build();
        assert_eq!(
            e.map_err(layer_field).unwrap_err(),
            ("bulkhead", "max_concurrent")
        );
    }
}
