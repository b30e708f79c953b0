//! [`Fleet`]: the connection to Redis that shared layers sync through.

use bulwark_core::error::ConfigError;
use bulwark_core::event::{Listener, Listeners};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the fleet tells its listeners ([`FleetBuilder::on_event`]): a
/// shared layer lost Redis and decides alone, or came back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// A shared layer could not reach Redis within the operation timeout
    /// and now decides locally.
    FellBack {
        /// The layer's key (`ratelimit:NAME`, `breaker:NAME`).
        layer: Arc<str>,
        /// Why (the error or "timed out").
        reason: Arc<str>,
    },
    /// A shared layer reached Redis again and shares its state once more.
    Rejoined {
        /// The layer's key.
        layer: Arc<str>,
    },
    /// The fleet's breaker tripped (seen by this instance at its sync).
    BreakerOpened {
        /// The breaker's key (`breaker:NAME`).
        layer: Arc<str>,
        /// The trip's generation, the same on every instance.
        generation: u64,
        /// How long it stays open from now.
        open_for: Duration,
    },
    /// The fleet's breaker is half-open: one instance probes.
    BreakerHalfOpen {
        /// The breaker's key.
        layer: Arc<str>,
        /// The generation.
        generation: u64,
    },
    /// The fleet's breaker closed after a successful probe.
    BreakerClosed {
        /// The breaker's key.
        layer: Arc<str>,
        /// The generation.
        generation: u64,
    },
}

/// Builds a [`Fleet`].
pub struct FleetBuilder {
    url: Option<String>,
    prefix: String,
    instance: Option<String>,
    sync_interval: Duration,
    op_timeout: Duration,
    listeners: Listeners<FleetEvent>,
}

impl fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .field("sync_interval", &self.sync_interval)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// The Redis URL (`redis://host:port/db`), required.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The prefix of every key, one per service (default `bulwark`): keys
    /// are `{PREFIX:kind:NAME}:...`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// This instance's id in the fleet (default: random).
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// How often shared layers publish and read state (default 200 ms,
    /// between 10 ms and 10 s).
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// How long one Redis operation may take before the layer decides alone
    /// (default 50 ms). It bounds the background sync only: no call waits
    /// on Redis.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Adds a listener of fall-backs and rejoins.
    pub fn on_event(mut self, listener: impl Listener<FleetEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// The fleet. Connects lazily, in the background: a Redis that is down
    /// now is not an error (layers decide locally until it is up). Must be
    /// called inside a tokio runtime.
    pub fn build(self) -> Result<Fleet, ConfigError> {
        let url = self
            .url
            .ok_or_else(|| ConfigError::new("fleet", "redis_url", "is required"))?;
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.sync_interval) {
            return Err(ConfigError::new(
                "fleet",
                "sync_interval",
                format!("must be between 10ms and 10s, got {:?}", self.sync_interval),
            ));
        }
        if self.op_timeout.is_zero() {
            return Err(ConfigError::new(
                "fleet",
                "op_timeout",
                "must be more than zero",
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "fleet",
                "prefix",
                format!("must be non-empty, without braces, got {:?}", self.prefix),
            ));
        }
        let client = redis::Client::open(url.as_str())
            .map_err(|e| ConfigError::new("fleet", "redis_url", format!("{url:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ConfigError::new("fleet", "redis_url", e.to_string()))?;
        let instance = self
            .instance
            .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)));
        Ok(Fleet {
            inner: Arc::new(FleetInner {
                conn,
                prefix: self.prefix.into(),
                instance: instance.into(),
                sync_interval: self.sync_interval,
                op_timeout: self.op_timeout,
                listeners: self.listeners,
            }),
        })
    }
}

/// A connection to the Redis that the instances of one service share, and
/// the settings of their sync. Cheap to clone.
///
/// Build one per process and pass it to each shared layer
/// ([`FleetRateLimiter`](crate::FleetRateLimiter),
/// [`SharedBreakerLayer`](crate::SharedBreakerLayer)). Nothing on a
/// request's path talks to Redis: each layer syncs in a background task
/// and decides from what it last learned.
///
/// ```no_run
/// use bulwark_fleet::Fleet;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fleet = Fleet::builder()
///     .url("redis://127.0.0.1:6379")
///     .prefix("checkout")
///     .sync_interval(Duration::from_millis(200))
///     .build()
///     .unwrap();
/// assert_eq!(fleet.prefix(), "checkout");
/// # }
/// ```
#[derive(Clone)]
pub struct Fleet {
    pub(crate) inner: Arc<FleetInner>,
}

pub(crate) struct FleetInner {
    conn: ConnectionManager,
    pub(crate) prefix: Arc<str>,
    pub(crate) instance: Arc<str>,
    pub(crate) sync_interval: Duration,
    pub(crate) op_timeout: Duration,
    listeners: Listeners<FleetEvent>,
}

impl Fleet {
    /// A builder; [`url`](FleetBuilder::url) is required.
    pub fn builder() -> FleetBuilder {
        FleetBuilder {
            url: None,
            prefix: "bulwark".into(),
            instance: None,
            sync_interval: Duration::from_millis(200),
            op_timeout: Duration::from_millis(50),
            listeners: Listeners::new(),
        }
    }

    /// A fleet on `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder().url(url).build()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The sync interval.
    pub fn sync_interval(&self) -> Duration {
        self.inner.sync_interval
    }

    /// The operation timeout.
    pub fn op_timeout(&self) -> Duration {
        self.inner.op_timeout
    }
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("prefix", &self.inner.prefix)
            .field("instance", &self.inner.instance)
            .field("sync_interval", &self.inner.sync_interval)
            .field("op_timeout", &self.inner.op_timeout)
            .finish_non_exhaustive()
    }
}

impl FleetInner {
    /// The hash-tagged key of one layer: every key of a layer lands on one
    /// Redis Cluster slot.
    pub(crate) fn key(&self, kind: &str, name: &str, part: &str) -> String {
        format!("{{{}:{kind}:{name}}}:{part}", self.prefix)
    }

    pub(crate) fn emit(&self, make: impl FnOnce() -> FleetEvent) {
        self.listeners.emit(make);
    }

    /// Runs one Redis operation within the operation timeout.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, Arc<str>>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.op_timeout, op(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string().into()),
            Err(_) => Err(format!("timed out after {:?}", self.op_timeout).into()),
        }
    }
}

/// Whether a layer shares its state now, with the event and metrics of a
/// change.
#[derive(Debug)]
pub(crate) struct Link {
    layer: Arc<str>,
    degraded: AtomicBool,
}

impl Link {
    /// A link that has not reached Redis yet: degraded until it does.
    pub(crate) fn new(layer: String) -> Self {
        Link {
            layer: layer.into(),
            degraded: AtomicBool::new(true),
        }
    }

    #[inline]
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Redis answered: share again (announced if a fall-back was).
    pub(crate) fn ok(&self, fleet: &FleetInner, fell_back: &mut bool) {
        self.degraded.store(false, Ordering::Release);
        if std::mem::replace(fell_back, false) {
            tracing::info!(target: "bulwark::fleet", layer = &*self.layer, "rejoined the fleet");
            metrics::counter!("bulwark_fleet_rejoins_total", "layer" => self.layer.to_string())
                .increment(1);
            metrics::gauge!("bulwark_fleet_degraded", "layer" => self.layer.to_string()).set(0.0);
            fleet.listeners.emit(|| FleetEvent::Rejoined {
                layer: self.layer.clone(),
            });
        }
    }

    /// Redis failed or was too slow: decide locally (announced once).
    pub(crate) fn failed(&self, fleet: &FleetInner, fell_back: &mut bool, reason: Arc<str>) {
        self.degraded.store(true, Ordering::Release);
        if !std::mem::replace(fell_back, true) {
            tracing::warn!(target: "bulwark::fleet", layer = &*self.layer, %reason, "lost the fleet; deciding locally");
            metrics::counter!("bulwark_fleet_fallbacks_total", "layer" => self.layer.to_string())
                .increment(1);
            metrics::gauge!("bulwark_fleet_degraded", "layer" => self.layer.to_string()).set(1.0);
            fleet.listeners.emit(|| FleetEvent::FellBack {
                layer: self.layer.clone(),
                reason,
            });
        }
    }
}

/// Aborts a background task when the last handle of its layer is dropped.
#[derive(Debug)]
pub(crate) struct TaskGuard(pub(crate) tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
