//! An axum router serving health as JSON, with optional admin routes
//! (feature `axum`).
//!
//! ```
//! use bulwark_observe::router::HealthRouter;
//! use bulwark_observe::Registry;
//!
//! let registry = Registry::new();
//! let app: axum::Router = HealthRouter::new(registry.clone())
//!     .status_on_degraded(true) // 503 when degraded
//!     .into_router();
//! // Merge `app` into your router, then serve it.
//! # drop(app);
//! ```
//!
//! # Routes
//!
//! - `GET /health/resilience` (or the [`path`](HealthRouter::path) given):
//!   the [`Health`](crate::Health) JSON, `200 OK`; `503 Service Unavailable`
//!   when degraded, if [`status_on_degraded`](HealthRouter::status_on_degraded).
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
    status_on_degraded: bool,
    admin: Option<String>,
}

impl HealthRouter {
    /// Health at `GET /health/resilience`, always `200`, no admin routes.
    pub fn new(registry: Registry) -> Self {
        HealthRouter {
            registry,
            path: "/health/resilience".to_owned(),
            status_on_degraded: false,
            admin: None,
        }
    }

    /// Serves health at `path` instead.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Answers `503 Service Unavailable` when degraded (for load balancers
    /// and readiness probes). The body is the same JSON.
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
        let mut router = Router::new().route(
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
