//! Client stacks built from a configuration, and reloads.

use crate::error::{LoadError, ReloadError};
use crate::ResilienceConfig;
use bulwark_breaker::{Breaker, CircuitBreakerLayer};
use bulwark_bulkhead::BulkheadLayer;
use bulwark_core::{BoxError, Classify, DefaultClassifier};
use bulwark_observe::{Kind, Registry};
use bulwark_retry::RetryLayer;
use bulwark_timeout::TimeoutLayer;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;
use tower::util::{BoxCloneSyncService, Either};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

impl ResilienceConfig {
    /// The recommended client stack of upstream `name`
    /// ([`bulwark::stack::ClientStack`](bulwark_stack::ClientStack)), configured from `[timeout.NAME]`,
    /// `[retry.NAME]` (with its budget), `[breaker.NAME]` and
    /// `[bulkhead.NAME]`, each falling back to its defaults; a timeout the
    /// configuration does not set keeps the stack's own default. Give it
    /// your classifier (and replay, pushback) and build it. With the global
    /// switch off, every part is off.
    ///
    /// Unlike [`client_layer`](Self::client_layer), its instances are its
    /// own, not the registry's, unless you register it:
    /// `config.client_stack("payments")?.registry(&registry, "payments")`.
    ///
    /// ```
    /// use bulwark::config::ResilienceConfig;
    /// use bulwark::BoxError;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let config = ResilienceConfig::from_toml_str(r#"
    ///     [timeout.payments]
    ///     total = "2s"
    ///     [breaker.payments]
    ///     consecutive_failures = 5
    /// "#)?;
    /// let stack = config.client_stack("payments")?.build()?;
    /// let payments = ServiceBuilder::new()
    ///     .layer(stack)
    ///     .service_fn(|amount: u32| async move { Ok::<_, BoxError>(amount) });
    /// assert_eq!(payments.oneshot(42).await?, 42);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// When the retry budget's settings are refused (they were validated at
    /// load, so this is rare).
    pub fn client_stack(&self, name: &str) -> Result<bulwark_stack::ClientStack, LoadError> {
        let stack = bulwark_stack::ClientStack::new().name(name);
        if !self.enabled() {
            return Ok(stack
                .no_total_timeout()
                .no_retry()
                .no_breaker()
                .no_attempt_timeout()
                .no_bulkhead());
        }
        let retry = self.retry(name);
        let budget_name = retry.budget.as_deref().unwrap_or(name);
        for (shared, at) in [
            (self.breaker(name).shared, format!("breaker.{name}")),
            (
                self.retry_budget(budget_name).shared,
                format!("retry_budget.{budget_name}"),
            ),
        ] {
            if shared {
                return Err(LoadError::invalid(
                    &at,
                    "shared",
                    "client_stack has no registry to keep the fleet's connection and shared layers in: use client_layer(name, &registry)".into(),
                ));
            }
        }
        let budget = self
            .retry_budget(budget_name)
            .budget()
            .map_err(|e| e.at(&format!("retry_budget.{budget_name}")))?;
        // The configuration's settings, each from its own defaults.
        let mut stack = stack
            .retry(|_| retry.layer().budget(budget))
            .breaker(|_| self.breaker(name).builder())
            .bulkhead(|_| self.bulkhead(name).builder());
        let timeouts = self.timeout(name);
        if let Some(total) = timeouts.total {
            stack = stack.total_timeout(total);
        }
        if let Some(attempt) = timeouts.attempt {
            stack = stack.attempt_timeout(attempt);
        }
        Ok(stack)
    }

    /// The client stack of upstream `name`, in the order that works
    /// (outermost first):
    ///
    /// ```text
    /// rate limit → total timeout → retry (budget) → fleet's breaker gate → circuit breaker → attempt timeout → bulkhead → your service
    /// ```
    ///
    /// Settings come from `[timeout.NAME]`, `[retry.NAME]`,
    /// `[breaker.NAME]`, `[bulkhead.NAME]` (each falling back to its
    /// defaults) and `[ratelimit.NAME]` (only when it has one); the
    /// breaker, the bulkhead and the retry budget are the registry's
    /// instances of that name, made on first use, so every stack built for
    /// `name` shares their state, a reload reaches them, and the health and
    /// admin routes see them. Timeouts that are not set are left out. With
    /// the global switch off, the layer is a pass-through.
    ///
    /// With `[fleet]` (feature `fleet`), `shared = true` shares a part with
    /// every instance of the service through Redis: on `[breaker.NAME]`, the
    /// fleet's breaker gate goes in front of the local breaker (with the
    /// breaker's `failure_rate`, `minimum_calls`, `window_duration` and
    /// `open_for`); on the `[retry_budget]`, the budget is the fleet's; on
    /// `[ratelimit.NAME]`, the limit is the fleet's. They are made once per
    /// registry and health lists them under `fleet`.
    ///
    /// The stack is boxed once, at the edge ([`BoxCloneSyncService`]): its
    /// type stays the same whatever the configuration says, and it is
    /// `Send + Sync + Clone`, usable as axum state. For HTTP and gRPC
    /// clients (a `reqwest` or `hyper` client, a tonic `Channel`) use
    /// [`http_client_stack`](Self::http_client_stack) (feature `http`)
    /// instead: its status classifier, `Retry-After`, idempotent-only
    /// retries and per-host breakers are what those need, and it does not
    /// require `Req: Clone`. With the `metrics`
    /// feature, it reports calls (`MetricsLayer`, outermost), retries and
    /// timeouts under `name` (`NAME/total`, `NAME/attempt` for timeouts).
    ///
    /// # Errors
    ///
    /// When the registry has to make an instance and its settings are
    /// refused (they were validated at load, so this is rare); a
    /// `shared = true` in a build without the `fleet` feature, or outside
    /// a tokio runtime.
    ///
    /// ```
    /// use bulwark::config::ResilienceConfig;
    /// use bulwark::BoxError;
    /// use bulwark::observe::Registry;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let config = ResilienceConfig::from_toml_str(r#"
    ///     [timeout.payments]
    ///     total = "2s"
    ///     attempt = "500ms"
    /// "#)?;
    /// let registry = Registry::new();
    /// let payments = ServiceBuilder::new()
    ///     .layer(config.client_layer("payments", &registry)?)
    ///     .service_fn(|amount: u32| async move { Ok::<_, BoxError>(amount) });
    /// assert_eq!(payments.oneshot(42).await?, 42);
    /// assert!(registry.get_breaker("payments").is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn client_layer<Req>(
        &self,
        name: &str,
        registry: &Registry,
    ) -> Result<UpstreamLayer<Req>, LoadError> {
        if !self.enabled() {
            return Ok(UpstreamLayer {
                name: name.to_owned(),
                parts: None,
                classifier: DefaultClassifier,
                _req: PhantomData,
            });
        }
        let breaker = registry
            .breaker(name, self.breaker(name).builder())
            .map_err(|e| LoadError::from_core(&format!("breaker.{name}"), e))?;
        let bulkhead = registry.bulkhead(name, self.bulkhead(name).builder());
        let retry = self.retry(name);
        let budget_name = retry.budget.as_deref().unwrap_or(name);
        let budget = self.registry_budget(budget_name, registry)?;
        let gate = self.gate(name, registry)?;
        let limiter = self.limiter(name, registry)?;
        let retry = retry.layer().budget(budget);
        #[cfg(feature = "metrics")]
        let retry = retry.on_event(bulwark_observe::metrics::RetryMetrics::new(name));
        let timeouts = self.timeout(name);
        Ok(UpstreamLayer {
            name: name.to_owned(),
            parts: Some(Parts {
                total: timeouts.total,
                attempt: timeouts.attempt,
                readiness: timeouts.readiness,
                retry,
                breaker,
                gate,
                limiter,
                bulkhead,
                #[cfg(feature = "metrics")]
                calls: bulwark_observe::metrics::MetricsLayer::new(name),
            }),
            classifier: DefaultClassifier,
            _req: PhantomData,
        })
    }

    /// Applies this configuration to the registry's live instances, keeping
    /// their state (counts, open breakers, calls in flight): every breaker
    /// gets its new thresholds ([`Breaker::reconfigure`]), every key of a
    /// set of keyed breakers too, every bulkhead its new limit
    /// ([`BulkheadHandle::set_limit`](bulwark_bulkhead::BulkheadHandle::set_limit)).
    /// Instances the configuration does not name take the defaults, as they
    /// were made from them.
    ///
    /// What is not reloaded in place: retry budgets, a bulkhead's wait and
    /// queue, new keys of keyed breakers (they use the old template),
    /// retry and timeout settings and the global switch. Those live in the
    /// stacks: build them again with [`client_layer`](Self::client_layer)
    /// (they pick up the same registry instances, so no state is lost).
    ///
    /// # Errors
    ///
    /// The instances that could not take their new settings (e.g. a switch
    /// from a count to a time window); they keep the old ones, the others
    /// are updated.
    pub fn apply(&self, registry: &Registry) -> Result<(), ReloadError> {
        let mut errors = Vec::new();
        for (kind, name) in registry.list() {
            let at = format!("{kind}.{name}");
            let result = match kind {
                Kind::Breaker => registry
                    .get_breaker(&name)
                    .map_or(Ok(()), |b| b.reconfigure(&self.breaker(&name).builder())),
                Kind::KeyedBreakers => registry.keyed_breaker_entries(&name).map_or(Ok(()), |k| {
                    let builder = self.breaker(&name).builder();
                    k.iter().try_for_each(|(_, b)| b.reconfigure(&builder))
                }),
                Kind::Bulkhead => registry
                    .get_bulkhead(&name)
                    .map_or(Ok(()), |h| h.set_limit(self.bulkhead(&name).max_concurrent)),
                _ => Ok(()),
            };
            if let Err(e) = result {
                errors.push(LoadError::from_core(&at, e));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ReloadError::new(errors))
        }
    }
}

struct Parts {
    total: Option<Duration>,
    attempt: Option<Duration>,
    readiness: Option<Duration>,
    retry: RetryLayer,
    breaker: Breaker,
    gate: Option<crate::shared::Gate>,
    limiter: Option<crate::shared::Limiter>,
    bulkhead: BulkheadLayer,
    #[cfg(feature = "metrics")]
    calls: bulwark_observe::metrics::MetricsLayer,
}

/// The client stack of one upstream, from
/// [`ResilienceConfig::client_layer`]: its rate limit, timeouts, retry,
/// fleet's gate, breaker and bulkhead as the configuration says, boxed at
/// the edge so that its type does not depend on which are on. (Not to be
/// confused with the `ClientLayer` that `bulwark::stack::ClientStack` and
/// `bulwark::http::ClientStack` build, whose parts are fixed when it is
/// written.)
///
/// Outcomes are judged by one classifier shared by retry, the breaker and
/// the metrics: [`DefaultClassifier`] (an `Err` is a failure) unless
/// [`classifier`](Self::classifier) says otherwise, e.g. an HTTP status
/// classifier from `bulwark-http` so that a 503 counts as a failure.
pub struct UpstreamLayer<Req, C = DefaultClassifier> {
    name: String,
    parts: Option<Parts>,
    classifier: C,
    _req: PhantomData<fn(Req)>,
}

impl<Req, C> UpstreamLayer<Req, C> {
    /// Judges outcomes with `classifier` in retry, the breaker and the
    /// metrics.
    pub fn classifier<C2>(self, classifier: C2) -> UpstreamLayer<Req, C2> {
        UpstreamLayer {
            name: self.name,
            parts: self.parts,
            classifier,
            _req: PhantomData,
        }
    }

    /// Whether the stack does anything (the global switch was on).
    pub fn is_enabled(&self) -> bool {
        self.parts.is_some()
    }

    /// The shared breaker (none when disabled).
    pub fn breaker(&self) -> Option<&Breaker> {
        self.parts.as_ref().map(|p| &p.breaker)
    }
}

impl<Req, C> fmt::Debug for UpstreamLayer<Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamLayer")
            .field("name", &self.name)
            .field("enabled", &self.parts.is_some())
            .finish()
    }
}

impl<Req, C: Clone> Clone for UpstreamLayer<Req, C> {
    fn clone(&self) -> Self {
        UpstreamLayer {
            name: self.name.clone(),
            parts: self.parts.as_ref().map(|p| Parts {
                total: p.total,
                attempt: p.attempt,
                readiness: p.readiness,
                retry: p.retry.clone(),
                breaker: p.breaker.clone(),
                gate: p.gate.clone(),
                limiter: p.limiter.clone(),
                bulkhead: p.bulkhead.clone(),
                #[cfg(feature = "metrics")]
                calls: p.calls.clone(),
            }),
            classifier: self.classifier.clone(),
            _req: PhantomData,
        }
    }
}

fn timeout_layer(limit: Duration, readiness: Option<Duration>, _label: String) -> TimeoutLayer {
    let layer = TimeoutLayer::new(limit);
    let layer = match readiness {
        Some(r) => layer.readiness_timeout(r),
        None => layer,
    };
    #[cfg(feature = "metrics")]
    let layer = layer.on_event(bulwark_observe::metrics::TimeoutMetrics::new(_label));
    layer
}

impl<S, Req, C> Layer<S> for UpstreamLayer<Req, C>
where
    C: Classify<S::Response> + Clone + Send + Sync + 'static,
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    Req: Clone + Send + 'static,
{
    type Service = BoxCloneSyncService<Req, S::Response, BoxError>;

    fn layer(&self, inner: S) -> Self::Service {
        let Some(p) = &self.parts else {
            return BoxCloneSyncService::new(inner.map_err(Into::into));
        };
        let svc = p.bulkhead.layer(inner);
        let svc = match p.attempt {
            Some(limit) => Either::Left(
                timeout_layer(limit, p.readiness, format!("{}/attempt", self.name)).layer(svc),
            ),
            None => Either::Right(svc),
        };
        let svc = CircuitBreakerLayer::new(p.breaker.clone())
            .classifier(self.classifier.clone())
            .layer(svc);
        // The fleet's gate in front of the local breaker: each attempt
        // counts for the fleet, as it does for the local breaker.
        let svc = crate::shared::gated(p.gate.as_ref(), &self.classifier, svc);
        let svc = p
            .retry
            .clone()
            .classifier(self.classifier.clone())
            .layer(svc);
        let svc = match p.total {
            Some(limit) => {
                Either::Left(timeout_layer(limit, None, format!("{}/total", self.name)).layer(svc))
            }
            None => Either::Right(svc),
        };
        // The rate limit counts calls, not attempts (retries are bounded
        // by the budget), and refuses at once.
        let svc = crate::shared::limited(p.limiter.as_ref(), svc);
        #[cfg(feature = "metrics")]
        let svc = p
            .calls
            .clone()
            .classifier(self.classifier.clone())
            .layer(svc);
        BoxCloneSyncService::new(svc)
    }
}
