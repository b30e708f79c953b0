//! An axum router serving health as JSON, with optional admin routes
//! (feature `axum`).
//!
//! ```
//! use bulwark::observe::HealthRouter;
//! use bulwark::observe::Registry;
//!
//! let registry = Registry::new();
//! let app: axum::Router = HealthRouter::new(registry.clone()).into_router();
//! // Merge `app` into your router, then serve it. Point the readiness probe
//! // (and load balancer) at /health/ready, dashboards at /health/resilience.
//! # drop(app);
//! ```
//!
//! # Routes
//!
//! - `GET /health/ready` (or the [`ready_path`](HealthRouter::ready_path)
//!   given): whether **this service** can take more requests, the
//!   [`Readiness`](crate::Readiness) JSON: `200 OK`, or `503 Service
//!   Unavailable` while a bulkhead in front of its own handlers is full
//!   (a `ServerStack` registered with `.registry(..)`). Dependencies never
//!   make it fail. Use it for readiness probes and load balancers.
//! - `GET /health/resilience` (or the [`path`](HealthRouter::path) given):
//!   the **dependencies'** health, the [`Health`](crate::Health) JSON,
//!   informational: always `200 OK` unless
//!   [`status_on_degraded`](HealthRouter::status_on_degraded). Use it for
//!   dashboards and alerts, not for load balancers (see
//!   [`health`](crate::health#which-probe-for-what)).
//! - With [`admin`](HealthRouter::admin): `POST {prefix}/breakers/{name}/reset`,
//!   `.../force-open` and `.../force-closed`, answering with the breaker's
//!   health (`200`), or `404` for an unknown name.
//!
//! # Protect the admin routes
//!
//! The admin routes let whoever reaches them open or close any breaker:
//! serve them only on an internal port, or behind your authentication
//! middleware (e.g. a `tower-http` `ValidateRequestHeaderLayer`), never on
//! the public listener. They are off unless asked for.

use crate::health::BreakerHealth;
use crate::Registry;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// Builds the health (and admin) router of a [`Registry`].
#[derive(Debug, Clone)]
pub struct HealthRouter {
    registry: Registry,
    path: String,
    ready_path: Option<String>,
    status_on_degraded: bool,
    admin: Option<String>,
}

impl HealthRouter {
    /// Health at `GET /health/resilience`, always `200`, readiness at
    /// `GET /health/ready`, no admin routes.
    pub fn new(registry: Registry) -> Self {
        HealthRouter {
            registry,
            path: "/health/resilience".to_owned(),
            ready_path: Some("/health/ready".to_owned()),
            status_on_degraded: false,
            admin: None,
        }
    }

    /// Serves health at `path` instead.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Serves readiness at `path` instead of `/health/ready`.
    ///
    /// ```
    /// use bulwark::observe::HealthRouter;
    /// use bulwark::observe::Registry;
    ///
    /// let app: axum::Router = HealthRouter::new(Registry::new()).ready_path("/readyz").into_router();
    /// # drop(app);
    /// ```
    pub fn ready_path(mut self, path: impl Into<String>) -> Self {
        self.ready_path = Some(path.into());
        self
    }

    /// Serves no readiness route (e.g. for a second health router merged
    /// into the same app).
    ///
    /// ```
    /// use bulwark::observe::HealthRouter;
    /// use bulwark::observe::Registry;
    ///
    /// let registry = Registry::new();
    /// let app: axum::Router = HealthRouter::new(registry.clone())
    ///     .into_router()
    ///     .merge(HealthRouter::new(registry).path("/health/strict").status_on_degraded(true).no_ready_route().into_router());
    /// # drop(app);
    /// ```
    pub fn no_ready_route(mut self) -> Self {
        self.ready_path = None;
        self
    }

    /// Answers `503 Service Unavailable` on the health route when degraded.
    /// The body is the same JSON.
    ///
    /// Not for load balancers or readiness probes: a dependency's open
    /// breaker degrades every replica at once, and a probe on this route
    /// would take them all out together. Probe `/health/ready` instead
    /// ([`ready_path`](Self::ready_path)); this is for monitors that want a
    /// status code.
    pub fn status_on_degraded(mut self, yes: bool) -> Self {
        self.status_on_degraded = yes;
        self
    }

    /// Adds the admin routes under `prefix` (e.g. `/admin/resilience`).
    /// Protect them: see the [module docs](self).
    pub fn admin(mut self, prefix: impl Into<String>) -> Self {
        self.admin = Some(prefix.into().trim_end_matches('/').to_owned());
        self
    }

    /// The router (state already applied: merge or nest it anywhere).
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let strict = self.status_on_degraded;
        let mut router = Router::new();
        if let Some(path) = &self.ready_path {
            router = router.route(
                path,
                get(|State(registry): State<Registry>| async move {
                    let ready = registry.readiness();
                    let status = if ready.ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, Json(ready))
                }),
            );
        }
        router = router.route(
            &self.path,
            get(move |State(registry): State<Registry>| async move {
                let health = registry.health();
                let status = if strict && !health.is_healthy() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                (status, Json(health))
            }),
        );
        if let Some(prefix) = &self.admin {
            router = router
                .route(
                    &format!("{prefix}/breakers/{{name}}/reset"),
                    post(|s: State<Registry>, n: Path<String>| admin(s, n, Registry::reset)),
                )
                .route(
                    &format!("{prefix}/breakers/{{name}}/force-open"),
                    post(|s: State<Registry>, n: Path<String>| admin(s, n, Registry::force_open)),
                )
                .route(
                    &format!("{prefix}/breakers/{{name}}/force-closed"),
                    post(|s: State<Registry>, n: Path<String>| admin(s, n, Registry::force_closed)),
                );
        }
        router.with_state(self.registry)
    }
}

type Op = fn(&Registry, &str) -> Result<(), crate::UnknownInstance>;

async fn admin(State(registry): State<Registry>, Path(name): Path<String>, op: Op) -> Response {
    match op(&registry, &name) {
        Ok(()) => match registry.get_breaker(&name) {
            Some(b) => Json(BreakerHealth::from_snapshot(name, &b.snapshot())).into_response(),
            // Keyed breakers: the whole set's health.
            None => Json(registry.health().keyed_breakers).into_response(),
        },
        Err(e) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
