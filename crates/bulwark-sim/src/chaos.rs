//! Fault injection for real services: the simulator's faults as a layer,
//! for game days in staging.
//!
//! A [`Chaos`] handle holds what to inject and a switch; a [`ChaosLayer`]
//! made from it injects into every call of the services it wraps while the
//! switch is on. Per call, at most one fault, drawn in this order:
//!
//! | fault | what the caller sees |
//! |---|---|
//! | hang | a future that never completes (until the caller gives up) |
//! | error | an immediate [`ChaosError`] (or the response you make for it) |
//! | rate limited | an immediate [`ChaosError`] that carries a retry-after (or your `429`) |
//! | latency | the real call, started after the delay |
//!
//! It is **never on by default**: a handle starts disabled unless its
//! configuration says `enabled = true`, and the switch can be flipped at
//! run time ([`Chaos::enable`], [`Chaos::disable`], [`Chaos::set_config`]).
//! Every injection is counted ([`Chaos::injected`]), logged at `debug` and
//! sent to listeners ([`ChaosConfig`] is serde, for configuration files).
//!
//! ```
//! use bulwark::sim::chaos::{Chaos, ChaosConfig, ChaosError};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let chaos = Chaos::new(ChaosConfig { error_rate: 1.0, ..ChaosConfig::default() }).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(chaos.layer())
//!     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) });
//!
//! // Off until switched on.
//! assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
//! chaos.enable();
//! let err = svc.clone().oneshot(2).await.unwrap_err();
//! assert!(err.is::<ChaosError>());
//! assert_eq!(chaos.injected().errors, 1);
//! # }
//! ```

use bulwark_core::error::ConfigError;
use bulwark_core::event::{Listener, Listeners};
use bulwark_core::BoxError;
use parking_lot::{Mutex, RwLock};
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

/// What to inject, each as a share of calls in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    /// Whether injection is on.
    pub enabled: bool,
    /// Calls that fail at once.
    pub error_rate: f64,
    /// Calls answered "retry after".
    pub rate_limited_rate: f64,
    /// What the rate-limited answers ask for.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Calls delayed before they are made.
    pub latency_rate: f64,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Calls that never complete.
    pub hang_rate: f64,
    /// Seeds the draws, for repeatable game days and tests.
    pub seed: Option<u64>,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            enabled: false,
            error_rate: 0.0,
            rate_limited_rate: 0.0,
            retry_after: Duration::from_secs(1),
            latency_rate: 0.0,
            latency: Duration::from_millis(500),
            hang_rate: 0.0,
            seed: None,
        }
    }
}

impl ChaosConfig {
    /// Checks every share is in `[0, 1]` and they add up to at most 1, and
    /// durations are at most a day. The error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let shares = [
            ("error_rate", self.error_rate),
            ("rate_limited_rate", self.rate_limited_rate),
            ("latency_rate", self.latency_rate),
            ("hang_rate", self.hang_rate),
        ];
        for (field, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::new(
                    "chaos",
                    field,
                    format!("must be in [0, 1], got {v}"),
                ));
            }
        }
        let sum: f64 = shares.iter().map(|(_, v)| v).sum();
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                "chaos",
                "error_rate",
                format!("the shares add up to {sum}, more than every call"),
            ));
        }
        const DAY: Duration = Duration::from_secs(86_400);
        for (field, d) in [("retry_after", self.retry_after), ("latency", self.latency)] {
            if d > DAY {
                return Err(ConfigError::new(
                    "chaos",
                    field,
                    format!("must be at most a day, got {d:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call failed at once.
    Error,
    /// The call was answered "retry after".
    RateLimited(Duration),
    /// The call was delayed.
    Latency(Duration),
    /// The call never completes.
    Hang,
}

/// What a [`Chaos`] handle reports to listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosEvent {
    /// What was injected.
    pub fault: Fault,
}

/// Injections so far, by fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Injected {
    /// Calls failed.
    pub errors: u64,
    /// Calls answered "retry after".
    pub rate_limited: u64,
    /// Calls delayed.
    pub delayed: u64,
    /// Calls hung.
    pub hung: u64,
}

/// The error of an injected failure or rate-limited answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosError {
    retry_after: Option<Duration>,
}

impl ChaosError {
    /// What a rate-limited answer asks for; `None` for a failure.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for ChaosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            None => f.write_str("injected failure"),
            Some(d) => write!(f, "injected rate limit: retry after {d:?}"),
        }
    }
}

impl std::error::Error for ChaosError {}

/// Makes the response for an injected fault instead of an error (a `503`
/// or a `429` with `Retry-After` for HTTP). `()` makes none: faults are
/// [`ChaosError`]s. Any `Fn(Fault) -> Option<Res>` is one.
pub trait Respond<Res> {
    /// The response for `fault` (only [`Fault::Error`] and
    /// [`Fault::RateLimited`] are asked), or `None` for an error.
    fn respond(&self, fault: Fault) -> Option<Res>;
}

impl<Res> Respond<Res> for () {
    fn respond(&self, _: Fault) -> Option<Res> {
        None
    }
}

impl<Res, F: Fn(Fault) -> Option<Res>> Respond<Res> for F {
    fn respond(&self, fault: Fault) -> Option<Res> {
        self(fault)
    }
}

/// The switch and settings of fault injection; a cheap clone, every clone
/// the same (see the [module docs](self)).
#[derive(Clone)]
pub struct Chaos {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: AtomicBool,
    config: RwLock<ChaosConfig>,
    rng: Mutex<fastrand::Rng>,
    errors: AtomicU64,
    rate_limited: AtomicU64,
    delayed: AtomicU64,
    hung: AtomicU64,
    listeners: Listeners<ChaosEvent>,
}

impl Chaos {
    /// A handle with `config`, on only if `config.enabled`.
    pub fn new(config: ChaosConfig) -> Result<Self, ConfigError> {
        Self::with_listeners(config, Listeners::new())
    }

    /// The same, with listeners for every injection.
    pub fn with_listener(
        config: ChaosConfig,
        listener: impl Listener<ChaosEvent>,
    ) -> Result<Self, ConfigError> {
        Self::with_listeners(config, Listeners::new().with(listener))
    }

    fn with_listeners(
        config: ChaosConfig,
        listeners: Listeners<ChaosEvent>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let rng = config
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Ok(Chaos {
            inner: Arc::new(Inner {
                enabled: AtomicBool::new(config.enabled),
                config: RwLock::new(config),
                rng: Mutex::new(rng),
                errors: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
                delayed: AtomicU64::new(0),
                hung: AtomicU64::new(0),
                listeners,
            }),
        })
    }

    /// Turns injection on.
    pub fn enable(&self) {
        self.inner.enabled.store(true, Ordering::Relaxed);
        tracing::warn!(target: "bulwark::chaos", "fault injection enabled");
    }

    /// Turns injection off: calls pass untouched.
    pub fn disable(&self) {
        self.inner.enabled.store(false, Ordering::Relaxed);
        tracing::info!(target: "bulwark::chaos", "fault injection disabled");
    }

    /// Whether injection is on.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// Replaces the settings (and the switch, from `config.enabled`).
    pub fn set_config(&self, config: ChaosConfig) -> Result<(), ConfigError> {
        config.validate()?;
        if let Some(seed) = config.seed {
            *self.inner.rng.lock() = fastrand::Rng::with_seed(seed);
        }
        let enabled = config.enabled;
        *self.inner.config.write() = config;
        if enabled {
            self.enable();
        } else {
            self.disable();
        }
        Ok(())
    }

    /// The current settings.
    pub fn config(&self) -> ChaosConfig {
        self.inner.config.read().clone()
    }

    /// Injections so far.
    pub fn injected(&self) -> Injected {
        let i = &*self.inner;
        Injected {
            errors: i.errors.load(Ordering::Relaxed),
            rate_limited: i.rate_limited.load(Ordering::Relaxed),
            delayed: i.delayed.load(Ordering::Relaxed),
            hung: i.hung.load(Ordering::Relaxed),
        }
    }

    /// A layer that injects for this handle.
    pub fn layer(&self) -> ChaosLayer {
        ChaosLayer {
            chaos: self.clone(),
            respond: (),
        }
    }

    fn draw(&self) -> Option<Fault> {
        if !self.is_enabled() {
            return None;
        }
        let c = self.inner.config.read();
        let x = self.inner.rng.lock().f64();
        let mut edge = c.hang_rate;
        let fault = if x < edge {
            Fault::Hang
        } else if x < {
            edge += c.error_rate;
            edge
        } {
            Fault::Error
        } else if x < {
            edge += c.rate_limited_rate;
            edge
        } {
            Fault::RateLimited(c.retry_after)
        } else if x < edge + c.latency_rate {
            Fault::Latency(c.latency)
        } else {
            return None;
        };
        drop(c);
        let counter = match fault {
            Fault::Error => &self.inner.errors,
            Fault::RateLimited(_) => &self.inner.rate_limited,
            Fault::Latency(_) => &self.inner.delayed,
            Fault::Hang => &self.inner.hung,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "bulwark::chaos", ?fault, "fault injected");
        self.inner.listeners.emit(|| ChaosEvent { fault });
        Some(fault)
    }
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("enabled", &self.is_enabled())
            .field("config", &*self.inner.config.read())
            .finish()
    }
}

/// Injects faults into the services it wraps (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ChaosLayer<R = ()> {
    chaos: Chaos,
    respond: R,
}

impl<R> ChaosLayer<R> {
    /// Answers injected failures and rate limits with responses made by
    /// `respond` instead of errors.
    ///
    /// ```
    /// use bulwark::sim::chaos::{Chaos, ChaosConfig, Fault};
    ///
    /// let chaos = Chaos::new(ChaosConfig::default()).unwrap();
    /// let layer = chaos.layer().respond_with(|fault: Fault| match fault {
    ///     Fault::RateLimited(_) => Some(http::StatusCode::TOO_MANY_REQUESTS),
    ///     _ => Some(http::StatusCode::SERVICE_UNAVAILABLE),
    /// });
    /// # let _ = layer;
    /// ```
    pub fn respond_with<R2>(self, respond: R2) -> ChaosLayer<R2> {
        ChaosLayer {
            chaos: self.chaos,
            respond,
        }
    }
}

impl<S, R: Clone> Layer<S> for ChaosLayer<R> {
    type Service = ChaosService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ChaosService {
            inner,
            chaos: self.chaos.clone(),
            respond: self.respond.clone(),
        }
    }
}

/// The service of a [`ChaosLayer`].
#[derive(Debug, Clone)]
pub struct ChaosService<S, R = ()> {
    inner: S,
    chaos: Chaos,
    respond: R,
}

impl<S, R> ChaosService<S, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, Req> Service<Req> for ChaosService<S, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Respond<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ChaosFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.chaos.draw() {
            None => State::Call {
                future: self.inner.call(req),
            },
            Some(Fault::Latency(d)) => State::Delay {
                sleep: tokio::time::sleep(d),
                future: self.inner.call(req),
            },
            Some(Fault::Hang) => State::Hang,
            Some(fault) => {
                let answer = match self.respond.respond(fault) {
                    Some(res) => Ok(res),
                    None => Err(ChaosError {
                        retry_after: match fault {
                            Fault::RateLimited(d) => Some(d),
                            _ => None,
                        },
                    }
                    .into()),
                };
                State::Done {
                    answer: Some(answer),
                }
            }
        };
        ChaosFuture { state }
    }
}

pin_project! {
    /// The future of [`ChaosService`].
    pub struct ChaosFuture<F, Res> {
        #[pin]
        state: State<F, Res>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, Res> {
        Call { #[pin] future: F },
        Delay { #[pin] sleep: Sleep, #[pin] future: F },
        Done { answer: Option<Result<Res, BoxError>> },
        Hang,
    }
}

impl<F, Res> fmt::Debug for ChaosFuture<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosFuture").finish_non_exhaustive()
    }
}

impl<F, Res, E> Future for ChaosFuture<F, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Call { future } => future.poll(cx).map_err(Into::into),
            StateProj::Delay { sleep, future } => {
                // The inner future is not polled (so not started) before
                // the delay is over.
                ready!(sleep.poll(cx));
                future.poll(cx).map_err(Into::into)
            }
            StateProj::Done { answer } => Poll::Ready(
                answer
                    .take()
                    .unwrap_or_else(|| Err("chaos future polled after completion".into())),
            ),
            StateProj::Hang => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceBuilder, ServiceExt};

    fn echo(
        chaos: &Chaos,
    ) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
        ServiceBuilder::new()
            .layer(chaos.layer())
            .service_fn(|x: u32| async move { Ok::<_, BoxError>(x) })
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn injects_each_fault_at_its_rate() {
        let config = ChaosConfig {
            enabled: true,
            error_rate: 0.2,
            rate_limited_rate: 0.1,
            latency_rate: 0.3,
            latency: Duration::from_millis(50),
            seed: Some(7),
            ..ChaosConfig::default()
        };
        let chaos = Chaos::new(config).unwrap();
        let svc = echo(&chaos);
        let (mut ok, mut failed, mut limited) = (0, 0, 0);
        for i in 0..2000 {
            match svc.clone().oneshot(i).await {
                Ok(v) => {
                    assert_eq!(v, i);
                    ok += 1;
                }
                Err(e) => match e
                    .downcast_ref::<ChaosError>()
                    .and_then(ChaosError::retry_after)
                {
                    Some(d) => {
                        assert_eq!(d, Duration::from_secs(1));
                        limited += 1;
                    }
                    None => failed += 1,
                },
            }
        }
        let injected = chaos.injected();
        assert_eq!(injected.errors, failed);
        assert_eq!(injected.rate_limited, limited);
        assert_eq!(ok + failed + limited, 2000);
        // Within a few standard deviations of the rates.
        assert!((340..460).contains(&failed), "{failed}");
        assert!((150..250).contains(&limited), "{limited}");
        assert!(
            (520..680).contains(&injected.delayed),
            "{}",
            injected.delayed
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn latency_delays_and_hangs_hang() {
        let chaos = Chaos::new(ChaosConfig {
            enabled: true,
            latency_rate: 1.0,
            latency: Duration::from_millis(300),
            ..ChaosConfig::default()
        })
        .unwrap();
        let t0 = tokio::time::Instant::now();
        assert_eq!(echo(&chaos).oneshot(5).await.unwrap(), 5);
        assert_eq!(t0.elapsed(), Duration::from_millis(300));

        chaos
            .set_config(ChaosConfig {
                enabled: true,
                hang_rate: 1.0,
                ..ChaosConfig::default()
            })
            .unwrap();
        let hung = tokio::time::timeout(Duration::from_secs(60), echo(&chaos).oneshot(1)).await;
        assert!(hung.is_err());
        assert_eq!(chaos.injected().hung, 1);
        chaos.disable();
        assert_eq!(echo(&chaos).oneshot(9).await.unwrap(), 9);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn responses_replace_errors_when_asked() {
        let chaos = Chaos::new(ChaosConfig {
            enabled: true,
            rate_limited_rate: 1.0,
            ..ChaosConfig::default()
        })
        .unwrap();
        let svc = ServiceBuilder::new()
            .layer(chaos.layer().respond_with(|f: Fault| match f {
                Fault::RateLimited(_) => Some(429u16),
                _ => None,
            }))
            .service_fn(|_: ()| async { Ok::<_, BoxError>(200u16) });
        assert_eq!(svc.oneshot(()).await.unwrap(), 429);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |c: ChaosConfig| Chaos::new(c).unwrap_err().field();
        assert_eq!(
            bad(ChaosConfig {
                error_rate: 1.5,
                ..ChaosConfig::default()
            }),
            "error_rate"
        );
        assert_eq!(
            bad(ChaosConfig {
                hang_rate: -0.1,
                ..ChaosConfig::default()
            }),
            "hang_rate"
        );
        assert_eq!(
            bad(ChaosConfig {
                error_rate: 0.6,
                latency_rate: 0.6,
                ..ChaosConfig::default()
            }),
            "error_rate"
        );
        assert_eq!(
            bad(ChaosConfig {
                latency: Duration::MAX,
                ..ChaosConfig::default()
            }),
            "latency"
        );
        assert!(ChaosConfig::default().validate().is_ok());
        let parsed: ChaosConfig =
            toml::from_str("enabled = true\nerror_rate = 0.1\nlatency = \"250ms\"\n").unwrap();
        assert_eq!(parsed.latency, Duration::from_millis(250));
        assert!(toml::from_str::<ChaosConfig>("error_rte = 0.1").is_err());
    }
}
