//! The HTTP and gRPC stacks of `bulwark-http` built from a configuration
//! (feature `http`).

use crate::error::LoadError;
use crate::ResilienceConfig;
use bulwark_http::{ClientStack, ServerStack};
use bulwark_observe::Registry;

impl ResilienceConfig {
    /// The HTTP (or, with `.classifier(GrpcClassifier::new())`, gRPC)
    /// [`ClientStack`] of upstream `name`, configured from
    /// `[timeout.NAME]` (`total`, `attempt`), `[retry.NAME]` (attempts,
    /// backoff, `max_pushback`, its `[retry_budget]`), `[breaker.NAME]` (the
    /// template of each host's breaker), `[keyed_breaker.NAME]` (how many
    /// hosts, how long an idle one is kept) and `[bulkhead.NAME]`
    /// (`max_concurrent`), each falling back to its defaults; a timeout the
    /// configuration does not set keeps the stack's own default. With the
    /// global switch off, every part is off.
    ///
    /// It is the same stack as [`ClientStack::new`]'s, with everything that
    /// has: the HTTP classifier, `Retry-After`, retries of idempotent
    /// requests only, per-host breakers, deadline propagation. It is
    /// registered in `registry` under `name`
    /// ([`ClientStack::registry`]): health and metrics show it, and a stack
    /// built again for `name` (after a reload) gets the same breakers,
    /// bulkhead and budget, their state kept, while
    /// [`apply`](Self::apply) changes their thresholds and limit in place.
    /// `retry.deadline` is not used: the stack's retry plans within the
    /// total timeout and the request's own deadline.
    ///
    /// The service it builds is `Send + Sync + Clone` when the transport
    /// is (hyper's and reqwest's clients are): usable as axum state.
    ///
    /// ```
    /// use bulwark::config::ResilienceConfig;
    /// use bulwark::observe::Registry;
    /// use tower::ServiceBuilder;
    ///
    /// let config = ResilienceConfig::from_toml_str(r#"
    ///     [timeout.payments]
    ///     total = "2s"
    ///     attempt = "500ms"
    ///     [keyed_breaker.payments]
    ///     max_keys = 16
    /// "#)?;
    /// let registry = Registry::new();
    /// let layer = config.http_client_stack("payments", &registry)?.build()?;
    /// # let transport = tower::service_fn(|_: http::Request<String>| async {
    /// #     Ok::<_, std::io::Error>(http::Response::new(String::new()))
    /// # });
    /// let payments = ServiceBuilder::new().layer(layer).service(transport);
    /// fn axum_state<T: Clone + Send + Sync + 'static>(_: &T) {}
    /// axum_state(&payments);
    /// assert!(registry.get_keyed_breakers::<http::uri::Authority>("payments").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// With `[fleet]` (feature `fleet`), a `[retry_budget]` with
    /// `shared = true` is the fleet's. The stack's breakers are per host,
    /// so the fleet's breaker gate (`shared = true` on `[breaker.NAME]`)
    /// and the rate limit of `[ratelimit.NAME]` go in front of it:
    /// [`fleet_layer`](Self::fleet_layer), built first.
    ///
    /// # Errors
    ///
    /// When the retry budget's settings are refused (they were validated at
    /// load, so this is rare); a shared retry budget without the `fleet`
    /// feature; `breaker.NAME.shared` when
    /// [`fleet_layer`](Self::fleet_layer) did not make the gate first.
    pub fn http_client_stack(
        &self,
        name: &str,
        registry: &Registry,
    ) -> Result<ClientStack, LoadError> {
        let stack = ClientStack::new().registry(registry, name);
        if !self.enabled() {
            return Ok(stack
                .no_total_timeout()
                .no_retry()
                .no_breaker()
                .no_attempt_timeout()
                .no_bulkhead()
                .no_deadline_propagation());
        }
        self.gate_made_first(name, registry, "http_client_stack")?;
        let retry = self.retry(name);
        let budget_name = retry.budget.as_deref().unwrap_or(name);
        let budget = self.registry_budget(budget_name, registry)?;
        let keyed = self.keyed_breaker(name);
        let max_concurrent = self.bulkhead(name).max_concurrent;
        let mut stack = stack
            .retry(|r| {
                r.max_attempts(retry.max_attempts)
                    .backoff(retry.backoff())
                    .max_pushback(retry.max_pushback)
                    .budget(budget)
            })
            // The configuration's template, from the breaker defaults.
            .breaker(|_| self.breaker(name).builder())
            .max_hosts(keyed.max_keys)
            .host_idle_timeout(keyed.idle_timeout)
            .bulkhead(|b| b.max_concurrent(max_concurrent));
        let timeouts = self.timeout(name);
        if let Some(total) = timeouts.total {
            stack = stack.total_timeout(total);
        }
        if let Some(attempt) = timeouts.attempt {
            stack = stack.attempt_timeout(attempt);
        }
        Ok(stack)
    }

    /// The [`ServerStack`] of this service, named `name` (say `server`),
    /// configured from `[bulkhead.NAME]` (`max_concurrent`, `max_wait`: the
    /// load it sheds) and `[timeout.NAME]` (`total`: each request's limit;
    /// unset, the stack's 30 s), and registered in `registry`
    /// ([`ServerStack::registry`]): its bulkhead counts for readiness
    /// (`/health/ready`), its shed answers and timeouts show in health and
    /// metrics, and [`apply`](Self::apply) changes its limit in place. With
    /// the global switch off, it only maps errors to responses. A rate
    /// limit (`[ratelimit.NAME]`, local or fleet-wide) goes inside it:
    /// `.layer(server).layer(config.fleet_layer(NAME, &registry)?)`, so a
    /// refused request is answered 429 with `Retry-After`.
    ///
    /// ```
    /// use bulwark::config::ResilienceConfig;
    /// use bulwark::observe::Registry;
    ///
    /// let config = ResilienceConfig::from_toml_str(r#"
    ///     [bulkhead.server]
    ///     max_concurrent = 256
    ///     [timeout.server]
    ///     total = "5s"
    /// "#)?;
    /// let registry = Registry::new();
    /// let layer = config.server_stack("server", &registry).build()?;
    /// assert_eq!(layer.bulkhead().unwrap().limit(), 256);
    /// assert_eq!(registry.readiness().bulkheads[0].name, "server");
    /// // axum: Router::new().route(..).layer(layer)
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn server_stack(&self, name: &str, registry: &Registry) -> ServerStack {
        let stack = ServerStack::new().registry(registry, name);
        if !self.enabled() {
            return stack.no_bulkhead().no_timeout();
        }
        let bulkhead = self.bulkhead(name);
        let stack = stack.bulkhead(|b| {
            b.max_concurrent(bulkhead.max_concurrent)
                .max_wait(bulkhead.max_wait)
        });
        match self.timeout(name).total {
            Some(total) => stack.timeout(total),
            None => stack,
        }
    }
}
