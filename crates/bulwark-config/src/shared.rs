//! Rate limits and layers shared with the fleet, built from a
//! configuration: `[ratelimit.NAME]`, and `shared = true` with `[fleet]`
//! (feature `fleet`).

use crate::error::LoadError;
use crate::ResilienceConfig;
use bulwark_core::{BoxError, Classify, DefaultClassifier};
use bulwark_observe::Registry;
use bulwark_ratelimit::{Admit, RateLimitLayer, RateLimiter};
use bulwark_retry::RetryBudget;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use tower::util::{BoxCloneSyncService, Either};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

/// A rate limiter from `[ratelimit.NAME]`: local, or the fleet's.
pub(crate) type Limiter = Arc<dyn Admit + Send + Sync>;

/// The fleet's breaker gate of one upstream (feature `fleet`).
#[derive(Clone)]
pub(crate) struct Gate(#[cfg(feature = "fleet")] bulwark_fleet::SharedBreakerLayer);

/// The error of a `shared = true` that this build cannot honour.
#[cfg(not(feature = "fleet"))]
fn no_fleet_feature(at: &str) -> LoadError {
    LoadError::invalid(
        at,
        "shared",
        "needs the `fleet` feature (of bulwark-config, or `fleet` of bulwark): this build cannot share through Redis".into(),
    )
}

impl ResilienceConfig {
    /// The fleet's connection from `[fleet]` (feature `fleet`), made once
    /// per registry and kept there (as the fleet view `fleet`, so health
    /// shows its link): every shared layer built from this configuration
    /// with `registry` syncs through it. `None` without a `[fleet]`
    /// section.
    ///
    /// ```no_run
    /// use bulwark::config::ResilienceConfig;
    /// use bulwark::observe::Registry;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ResilienceConfig::from_toml_str(r#"
    ///     [fleet]
    ///     redis_url = "redis+cluster://10.0.0.5:7000,10.0.0.6:7000"
    ///     prefix = "checkout"
    /// "#)?;
    /// let registry = Registry::new();
    /// let fleet = config.fleet_connection(&registry)?.unwrap();
    /// assert!(fleet.is_cluster());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A URL the Redis client refuses, or a Cluster URL without the
    /// `fleet-cluster` feature (`fleet.redis_url`).
    #[cfg(feature = "fleet")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
    pub fn fleet_connection(
        &self,
        registry: &Registry,
    ) -> Result<Option<bulwark_fleet::Fleet>, LoadError> {
        let Some(config) = &self.fleet else {
            return Ok(None);
        };
        if let Some(fleet) = registry.get_fleet_view::<bulwark_fleet::Fleet>("fleet") {
            return Ok(Some(fleet));
        }
        config
            .builder()
            .registry(registry)
            .build()
            .map(Some)
            .map_err(|e| LoadError::from_core("fleet", e))
    }

    #[cfg(feature = "fleet")]
    fn fleet_for(&self, at: &str, registry: &Registry) -> Result<bulwark_fleet::Fleet, LoadError> {
        self.fleet_connection(registry)?
            .ok_or_else(|| LoadError::invalid(at, "shared", "needs a [fleet] section".into()))
    }

    /// The fleet's breaker gate of `name` when `[breaker.NAME]` says
    /// `shared = true`, made once per registry (keyed `{PREFIX:b:NAME}`).
    pub(crate) fn gate(&self, name: &str, registry: &Registry) -> Result<Option<Gate>, LoadError> {
        let config = self.breaker(name);
        if !config.shared {
            return Ok(None);
        }
        let at = format!("breaker.{name}");
        #[cfg(not(feature = "fleet"))]
        {
            let _ = registry;
            Err(no_fleet_feature(&at))
        }
        #[cfg(feature = "fleet")]
        {
            use bulwark_fleet::SharedBreakerLayer;
            if let Some(gate) = registry.get_fleet_view::<SharedBreakerLayer>(name) {
                return Ok(Some(Gate(gate)));
            }
            let fleet = self.fleet_for(&at, registry)?;
            SharedBreakerLayer::builder(&fleet, name)
                .failure_rate(config.failure_rate)
                .minimum_calls(config.minimum_calls)
                .window(config.window_duration)
                .open_for(config.open_for)
                .build()
                .map(|g| Some(Gate(g)))
                .map_err(|e| {
                    let field = match e.field() {
                        "window" => "window_duration",
                        f => f,
                    };
                    LoadError::invalid(&at, field, format!("with shared = true: {}", e.reason()))
                })
        }
    }

    /// The retry budget `name` of the registry: made from
    /// `[retry_budget.NAME]` on first use, shared with the fleet when it
    /// says `shared = true`.
    pub(crate) fn registry_budget(
        &self,
        name: &str,
        registry: &Registry,
    ) -> Result<RetryBudget, LoadError> {
        if let Some(b) = registry.get_retry_budget(name) {
            return Ok(b);
        }
        let at = format!("retry_budget.{name}");
        let config = self.retry_budget(name);
        let budget = if config.shared {
            #[cfg(not(feature = "fleet"))]
            return Err(no_fleet_feature(&at));
            #[cfg(feature = "fleet")]
            {
                let fleet = self.fleet_for(&at, registry)?;
                bulwark_fleet::SharedRetryBudget::new(
                    &fleet,
                    name,
                    config.ratio,
                    config.min_per_sec,
                    config.window,
                )
                .map_err(|e| {
                    LoadError::invalid(
                        &at,
                        e.field(),
                        format!("with shared = true: {}", e.reason()),
                    )
                })?
                .budget()
            }
        } else {
            config.budget().map_err(|e| e.at(&at))?
        };
        Ok(registry.retry_budget(name, budget))
    }

    /// The rate limiter of `[ratelimit.NAME]`, if there is one: the fleet's
    /// (made once per registry) with `shared = true`, else a new local one.
    pub(crate) fn limiter(
        &self,
        name: &str,
        registry: &Registry,
    ) -> Result<Option<Limiter>, LoadError> {
        let Some(config) = self.rate_limit(name) else {
            return Ok(None);
        };
        let at = format!("ratelimit.{name}");
        let rate = config.rate(&at)?;
        if config.shared {
            #[cfg(not(feature = "fleet"))]
            {
                let _ = (registry, rate);
                return Err(no_fleet_feature(&at));
            }
            #[cfg(feature = "fleet")]
            {
                use bulwark_fleet::FleetRateLimiter;
                if let Some(l) = registry.get_fleet_view::<FleetRateLimiter>(name) {
                    return Ok(Some(Arc::new(l)));
                }
                let fleet = self.fleet_for(&at, registry)?;
                let limiter = FleetRateLimiter::builder(&fleet, name)
                    .rate(rate)
                    .build()
                    .map_err(|e| LoadError::from_core(&at, e))?;
                return Ok(Some(Arc::new(limiter)));
            }
        }
        let local = RateLimiter::builder()
            .name(name)
            .rate(rate)
            .build()
            .map_err(|e| LoadError::from_core(&at, e))?;
        Ok(Some(Arc::new(local)))
    }

    /// What goes in front of an upstream's stack, outermost first: the rate
    /// limit of `[ratelimit.NAME]` (local, or the fleet's with
    /// `shared = true`) and the fleet's breaker gate when `[breaker.NAME]`
    /// says `shared = true` (feature `fleet`). A pass-through when neither
    /// is configured, or with the global switch off.
    ///
    /// [`client_layer`](Self::client_layer) holds both already. The HTTP
    /// stacks do not: put this layer in front of
    /// [`http_client_stack`](Self::http_client_stack)'s (with its
    /// classifier, e.g. `HttpClassifier`, so that a 503 counts as a
    /// failure for the fleet), and inside
    /// [`server_stack`](Self::server_stack)'s (so that a refused call is
    /// answered 429 with `Retry-After`). `http_client_stack` refuses a
    /// shared breaker whose gate was not made first by this method, so a
    /// forgotten gate is an error, not a silently local breaker.
    ///
    /// Shared parts (the fleet's connection, gates, fleet limiters) are
    /// made once per registry and kept there: health lists them under
    /// `fleet`, and a layer built again for `name` shares them. A local
    /// rate limiter is new with each call.
    ///
    /// ```
    /// use bulwark::config::ResilienceConfig;
    /// use bulwark::observe::Registry;
    /// use bulwark::BoxError;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let config = ResilienceConfig::from_toml_str(r#"
    ///     [ratelimit.provider]
    ///     limit = 2
    ///     per = "1s"
    /// "#)?;
    /// let registry = Registry::new();
    /// let provider = ServiceBuilder::new()
    ///     .layer(config.fleet_layer("provider", &registry)?)
    ///     .service_fn(|n: u32| async move { Ok::<_, BoxError>(n) });
    /// assert_eq!(provider.clone().oneshot(1).await?, 1);
    /// assert_eq!(provider.clone().oneshot(2).await?, 2);
    /// let refused = provider.oneshot(3).await.unwrap_err();
    /// assert!(bulwark::error::find::<bulwark::error::RateLimited>(&*refused).is_some());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// `shared = true` without the `fleet` feature, or outside a tokio
    /// runtime; settings a shared layer refuses (e.g. a breaker window
    /// under 1 s), each naming the setting.
    pub fn fleet_layer<Req>(
        &self,
        name: &str,
        registry: &Registry,
    ) -> Result<FleetLayer<Req>, LoadError> {
        let (limiter, gate) = if self.enabled() {
            (self.limiter(name, registry)?, self.gate(name, registry)?)
        } else {
            (None, None)
        };
        Ok(FleetLayer {
            name: name.to_owned(),
            limiter,
            gate,
            classifier: DefaultClassifier,
            _req: PhantomData,
        })
    }

    /// A typed error when `[breaker.NAME]` is shared and its gate is not in
    /// `registry`: for stacks that cannot hold the gate themselves.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn gate_made_first(
        &self,
        name: &str,
        registry: &Registry,
        stack: &str,
    ) -> Result<(), LoadError> {
        if !self.enabled() || !self.breaker(name).shared {
            return Ok(());
        }
        let at = format!("breaker.{name}");
        #[cfg(not(feature = "fleet"))]
        {
            let _ = (registry, stack);
            Err(no_fleet_feature(&at))
        }
        #[cfg(feature = "fleet")]
        {
            if registry
                .get_fleet_view::<bulwark_fleet::SharedBreakerLayer>(name)
                .is_some()
            {
                return Ok(());
            }
            Err(LoadError::invalid(
                &at,
                "shared",
                format!(
                    "{stack} cannot hold the fleet's breaker gate: build `config.fleet_layer(\"{name}\", &registry)` first and layer it in front of the stack"
                ),
            ))
        }
    }
}

/// The rate limit and the fleet's breaker gate of one upstream, from
/// [`ResilienceConfig::fleet_layer`]: in front of a stack, outermost
/// first, `rate limit → fleet's gate → your service`.
///
/// The gate judges outcomes with [`DefaultClassifier`] (an `Err` is a
/// failure) unless [`classifier`](Self::classifier) says otherwise. Like
/// [`UpstreamLayer`](crate::UpstreamLayer), the service it makes is boxed
/// once (`Send + Sync + Clone`).
pub struct FleetLayer<Req, C = DefaultClassifier> {
    name: String,
    limiter: Option<Limiter>,
    gate: Option<Gate>,
    classifier: C,
    _req: PhantomData<fn(Req)>,
}

impl<Req, C> FleetLayer<Req, C> {
    /// Judges outcomes with `classifier` in the fleet's gate.
    pub fn classifier<C2>(self, classifier: C2) -> FleetLayer<Req, C2> {
        FleetLayer {
            name: self.name,
            limiter: self.limiter,
            gate: self.gate,
            classifier,
            _req: PhantomData,
        }
    }

    /// Whether it limits the rate (`[ratelimit.NAME]`).
    pub fn is_rate_limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// The fleet's breaker gate, when the breaker is shared.
    #[cfg(feature = "fleet")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
    pub fn shared_breaker(&self) -> Option<&bulwark_fleet::SharedBreakerLayer> {
        self.gate.as_ref().map(|g| &g.0)
    }
}

impl<Req, C> fmt::Debug for FleetLayer<Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetLayer")
            .field("name", &self.name)
            .field("rate_limited", &self.limiter.is_some())
            .field("shared_breaker", &self.gate.is_some())
            .finish()
    }
}

impl<Req, C: Clone> Clone for FleetLayer<Req, C> {
    fn clone(&self) -> Self {
        FleetLayer {
            name: self.name.clone(),
            limiter: self.limiter.clone(),
            gate: self.gate.clone(),
            classifier: self.classifier.clone(),
            _req: PhantomData,
        }
    }
}

/// `svc` behind the fleet's gate, if any.
#[cfg(feature = "fleet")]
pub(crate) fn gated<S, C: Clone>(
    gate: Option<&Gate>,
    classifier: &C,
    svc: S,
) -> Either<bulwark_fleet::SharedBreaker<S, C>, S> {
    match gate {
        Some(g) => Either::Left(g.0.clone().classifier(classifier.clone()).layer(svc)),
        None => Either::Right(svc),
    }
}

/// `svc` (no gate without the `fleet` feature).
#[cfg(not(feature = "fleet"))]
pub(crate) fn gated<S, C>(_: Option<&Gate>, _: &C, svc: S) -> S {
    svc
}

/// `svc` behind the rate limit, if any.
pub(crate) fn limited<S>(
    limiter: Option<&Limiter>,
    svc: S,
) -> Either<bulwark_ratelimit::RateLimit<S, Limiter>, S> {
    match limiter {
        Some(l) => Either::Left(RateLimitLayer::new(l.clone()).layer(svc)),
        None => Either::Right(svc),
    }
}

impl<S, Req, C> Layer<S> for FleetLayer<Req, C>
where
    C: Classify<S::Response> + Clone + Send + Sync + 'static,
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    Req: Send + 'static,
{
    type Service = BoxCloneSyncService<Req, S::Response, BoxError>;

    fn layer(&self, inner: S) -> Self::Service {
        let svc = gated(
            self.gate.as_ref(),
            &self.classifier,
            inner.map_err(Into::into),
        );
        BoxCloneSyncService::new(limited(self.limiter.as_ref(), svc))
    }
}
