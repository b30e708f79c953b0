//! Fleet-wide resilience on Redis: one rate limit and one circuit breaker
//! for all the instances of a service, with the local layer still
//! authoritative and fast.
//!
//! A service that runs as N instances learns alone today: each breaker
//! sees 1/N of the traffic, and a limit such as "at most 500 requests/s to
//! the payments provider" cannot be said at all. This crate shares coarse
//! state through Redis, *asynchronously*: a background task per shared
//! layer publishes and reads state every sync interval, and the request
//! path reads only what that task last learned, from atomics. Redis being
//! slow or gone never blocks or fails a request: each layer falls back to
//! a local decision within a bounded time, says so (an event, a metric)
//! and rejoins by itself.
//!
//! - [`FleetRateLimiter`]: GCRA in one atomic Lua script per limiter on
//!   Redis's clock, with a local lease of tokens (no Redis call per
//!   request); behind [`RateLimitLayer`](bulwark_ratelimit::RateLimitLayer).
//! - [`SharedBreakerLayer`]: a fleet-wide gate in front of a local breaker:
//!   the instances publish their window counts in batches, the gate opens
//!   everywhere when the fleet's failure rate crosses its threshold, and
//!   half-open probes are limited fleet-wide by a short lease.
//! - [`SharedRetryBudget`]: the fleet's retries stay within their ratio of
//!   the fleet's requests (one budget, not N).
//!
//! ```no_run
//! use bulwark::fleet::{Fleet, FleetRateLimiter, SharedBreakerLayer};
//! use bulwark::ratelimit::RateLimitLayer;
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fleet = Fleet::builder().url("redis://127.0.0.1:6379").prefix("checkout").build().unwrap();
//! let limiter = FleetRateLimiter::builder(&fleet, "payments")
//!     .limit(500, Duration::from_secs(1))
//!     .build()
//!     .unwrap();
//! let shared = SharedBreakerLayer::builder(&fleet, "payments")
//!     .failure_rate(0.5)
//!     .minimum_calls(20)
//!     .open_for(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(shared)
//!     .layer(RateLimitLayer::new(limiter))
//!     .service_fn(|req: u32| async move { Ok::<_, bulwark::BoxError>(req) });
//! # drop(svc);
//! # }
//! ```
//!
//! # Design
//!
//! **Authoritative local layer, coarse shared state.** Nothing on a
//! request's path waits on Redis, not even for a small budget: a call
//! reads atomics that a background task per shared layer keeps up to date
//! (one Lua script per layer per sync, one round trip). Redis's answers
//! only ever make the local decision stricter (a fleet-wide open, a
//! smaller lease); without them every layer decides as a local one would.
//!
//! **Breaker detection.** The fleet's window is ten buckets on Redis's
//! clock. Measured by the example (3 instances of 50 calls/s against one
//! instance taking all 150 calls/s with a local breaker of the same
//! thresholds, sync every 100 ms): the fleet opened 0.53 s after the fault
//! on its first instance and 0.64 s on its last, the single instance after
//! 0.51 s; the upstream got 86 calls during the 2 s outage from the fleet,
//! 77 from the single instance (1.12×).
//!
//! **Failure modes.** Every Redis operation has the fleet's
//! [`op_timeout`](FleetBuilder::op_timeout) (default 50 ms); past it, or on
//! any error (refused, reset, Redis restarted), the layer falls back within
//! one sync: the rate limiter to `limit / instances` locally (as soon as a
//! refill is overdue by 25 ms more than its interval, so a call is not
//! refused for want of an answer), the breaker gate to letting calls
//! through to the local breaker (an open time it already knew is kept),
//! the retry budget to a local ratio budget. Each fall-back is a
//! [`FleetEvent::FellBack`], a `bulwark_fleet_fallbacks_total` counter
//! and a `bulwark_fleet_degraded` gauge; the layer keeps trying every sync
//! interval and rejoins by itself ([`FleetEvent::Rejoined`]): tests kill
//! and restart a real `redis-server`, and cut or slow it through a proxy.
//!
//! **Clocks.** Every time that matters is Redis's (`TIME` inside the
//! scripts) or relative: "open until T" is an expiry of `open_for` on the
//! `open` key, which each instance turns into its own deadline with the
//! remaining TTL. Instances' clock skew changes nothing.
//!
//! **Redis Cluster** (feature `cluster`). A `redis+cluster://host:port,host:port`
//! URL, or [`FleetBuilder::cluster_nodes`], selects the redis crate's
//! cluster client (`cluster-async`) instead of the one connection of
//! [`redis::aio::ConnectionManager`]: any one seed node is enough, the
//! client learns the others and the slot map from it, follows `MOVED` and
//! `ASK` redirections and refreshes the map when the cluster changes. It
//! connects on the first sync (a cluster that is down at start is not an
//! error: the layers decide locally until it is up, as with one server);
//! every operation, connecting included, has the same
//! [`op_timeout`](FleetBuilder::op_timeout). Every key of one layer shares
//! a hash tag, the part in braces: `{PREFIX:rl:NAME}:tat|members` for a
//! rate limiter, `{PREFIX:b:NAME}:w|open|half|probe|gen` for a breaker,
//! `{PREFIX:rb:NAME}:w|members` for a retry budget. So each script's keys
//! live in one slot (Cluster refuses a multi-key script across slots with
//! `CROSSSLOT`), the script runs on the node that owns that slot, and
//! different layers spread over the shards. Tested against real clusters
//! started by the tests (`tests/cluster.rs`): one node holding all 16,384
//! slots (where `CROSSSLOT` is enforced: the test checks that a script
//! across two tags is refused), and three nodes with the slots split
//! (`CLUSTER ADDSLOTSRANGE`) and joined by `CLUSTER MEET`, each layer's keys
//! found on the node of their slot and answered `MOVED` by the others, a
//! fleet seeded with one node reading the others' trip. The cluster client
//! costs nothing on the request path either: only the sync task talks to
//! Redis. Without the feature, a cluster URL is a
//! [`ConfigError`](bulwark_core::error::ConfigError) naming
//! `redis_url`.
//!
//! **Health and metrics.** With feature `observe`,
//! [`FleetBuilder::registry`] shows every shared layer of the fleet (and the
//! connection, as `fleet`) in a `bulwark::observe::Registry`'s health:
//! `registry.health().fleet`, served as JSON by its health router, gives
//! per layer the fleet's view as last read (a breaker's state, generation
//! and window counts; a budget's requests, retries and share; a limiter's
//! lease and grants), its link (`up`, `fallback` with `fallback_for_ms`,
//! or `connecting`) and `last_sync_ms_ago`. A shared breaker the fleet holds
//! open makes the status degraded; a fall-back does not (calls go on,
//! decided locally). The metrics, each labelled `layer` (`breaker:NAME`,
//! `retry-budget:NAME`, `ratelimit:NAME`, and `fleet` for the connection
//! as a whole):
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `bulwark_fleet_fallbacks_total` | counter | the layer lost Redis and decides locally (once per fall-back; also a [`FleetEvent::FellBack`]) |
//! | `bulwark_fleet_rejoins_total` | counter | it reached Redis again after a fall-back ([`FleetEvent::Rejoined`]) |
//! | `bulwark_fleet_degraded` | gauge | 1 while the layer decides locally (from its creation until its first sync reaches Redis, and during a fall-back), 0 while it shares |
//!
//! **Configuration.** `bulwark-config` (feature `fleet`) builds these layers
//! from `[fleet]` and `shared = true` on `[breaker.NAME]`,
//! `[retry_budget.NAME]` and `[ratelimit.NAME]`.
//!
//! **Accuracy of the rate limit.** Redis grants tokens by GCRA over all
//! instances, so the fleet never gets more than `burst + T · rate` in a
//! window `T`; measured (`cargo run --example fleet`, 10 instances, limit
//! 1,000/s, offered 5,000/s, burst 100, on 2 loaded shared cores):
//! 10,102 calls in 10 s, +1.02%, the burst of 100 being 1.0%; every second
//! after the first 986–1,005. Less is admitted when
//! instances hold leased tokens they do not spend (at most one lease,
//! `4 · rate · refill_interval / instances`, per instance, for at most
//! `lease_ttl`).
//!
//! **At 1,000 instances and 10,000 breakers.** Writes follow the layers in
//! use. A shared breaker costs one script per instance per sync interval
//! while it has calls (every 5th interval while idle and closed): with
//! 1,000 instances each using 100 of the breakers at the default 200 ms,
//! `1,000 × 100 / 0.2 s = 500,000` scripts/s, too many for one Redis
//! (a script of ~20 commands costs ~20–50 µs: 20,000–50,000/s per shard);
//! at a 1 s interval, 100,000/s, for a Cluster of 3–5 shards. Every
//! breaker active on every instance (`1,000 × 10,000 / 1 s = 10⁷`/s) is
//! beyond this design: share only the breakers of shared upstreams. A
//! rate limiter costs one script per instance per refill interval while it
//! needs tokens: `1,000 / 10 ms = 100,000`/s at the default, 10,000/s with
//! a 100 ms refill interval (each ask then being ~`4 · rate · 0.1 s /
//! 1,000` tokens). Memory: a breaker holds a hash of 2 fields per bucket
//! of its window (ten buckets: 20 fields) and four small strings, about 1 KB, so
//! 10,000 breakers take ~10 MB whatever the number of instances; a rate
//! limiter or budget holds one sorted-set entry per instance (~100 B), so
//! 100 KB at 1,000 instances.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod budget;
mod fleet;
mod limiter;

pub use breaker::{
    FleetState, ResponseFuture, ShareBreaker, SharedBreaker, SharedBreakerBuilder,
    SharedBreakerLayer, SharedBreakerSnapshot,
};
pub use budget::{SharedRetryBudget, SharedRetryBudgetSnapshot};
pub use fleet::{Fleet, FleetBuilder, FleetError, FleetEvent, CLUSTER_SCHEME};
#[cfg(test)]
mod tests;

pub use limiter::{FleetRateLimiter, FleetRateLimiterBuilder, FleetRateLimiterSnapshot};
