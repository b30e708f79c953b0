//! [`Fleet`]: the connection to Redis that shared layers sync through.

use bulwark_core::clock::TimeBase;
use bulwark_core::error::ConfigError;
use bulwark_core::event::{Listener, Listeners};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The URL scheme that selects the Redis Cluster client:
/// `redis+cluster://host1:port1,host2:port2`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

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
        /// Why: Redis was too slow, or answered with an error.
        reason: FleetError,
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

/// Why a shared layer could not reach the fleet's state in Redis (the
/// reason of a [`FleetEvent::FellBack`]). It never reaches a caller: the
/// layer decides locally instead.
///
/// ```
/// use bulwark::fleet::{FleetError, FleetEvent};
///
/// fn alert(event: &FleetEvent) {
///     if let FleetEvent::FellBack { layer, reason } = event {
///         match reason {
///             FleetError::TimedOut(after) => eprintln!("{layer}: Redis slower than {after:?}"),
///             other => eprintln!("{layer}: {other}"),
///         }
///     }
/// }
/// # alert(&FleetEvent::Rejoined { layer: "breaker:payments".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetError {
    /// Redis did not answer within the operation timeout (`op_timeout`,
    /// connecting included).
    TimedOut(Duration),
    /// Redis, or the connection to it, failed: its message.
    Redis(Arc<str>),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::TimedOut(after) => write!(f, "redis timed out after {after:?}"),
            FleetError::Redis(message) => write!(f, "redis failed: {message}"),
        }
    }
}

impl std::error::Error for FleetError {}

/// Builds a [`Fleet`].
pub struct FleetBuilder {
    url: Option<String>,
    cluster_nodes: Vec<String>,
    #[cfg(feature = "observe")]
    registry: Option<bulwark_observe::Registry>,
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
            .field("cluster_nodes", &self.cluster_nodes)
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .field("sync_interval", &self.sync_interval)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// The Redis URL (`redis://host:port/db`, `rediss://`, `unix://`), or
    /// a Redis Cluster's seed nodes as `redis+cluster://host1:port1,host2:port2`
    /// (feature `cluster`; any one node is enough, the client learns the
    /// others and their slots from it). Required, unless
    /// [`cluster_nodes`](Self::cluster_nodes) is given.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Talks to a Redis Cluster through these seed nodes (`redis://host:port`
    /// each; feature `cluster`), the same as a `redis+cluster://` URL.
    ///
    /// ```no_run
    /// use bulwark::fleet::Fleet;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let fleet = Fleet::builder()
    ///     .cluster_nodes(["redis://10.0.0.5:7000", "redis://10.0.0.6:7000"])
    ///     .prefix("checkout")
    ///     .build()
    ///     .unwrap();
    /// assert!(fleet.is_cluster());
    /// # }
    /// ```
    pub fn cluster_nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cluster_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// Shows every shared layer built on this fleet, and the connection
    /// itself, in `registry`'s health (feature `observe`): each registers
    /// as a [`FleetView`](bulwark_observe::FleetView) under its name when
    /// it is built (the connection under `fleet`), and
    /// `registry.health().fleet` lists the fleet's view of each, with its
    /// link state and last sync.
    ///
    /// ```no_run
    /// use bulwark::fleet::{Fleet, SharedBreakerLayer};
    /// use bulwark::observe::Registry;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = Registry::new();
    /// let fleet = Fleet::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .registry(&registry)
    ///     .build()
    ///     .unwrap();
    /// let _gate = SharedBreakerLayer::builder(&fleet, "payments").build().unwrap();
    /// let names: Vec<_> = registry.health().fleet.into_iter().map(|f| f.name).collect();
    /// assert_eq!(names, ["fleet", "payments"]);
    /// # }
    /// ```
    #[cfg(feature = "observe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "observe")))]
    pub fn registry(mut self, registry: &bulwark_observe::Registry) -> Self {
        self.registry = Some(registry.clone());
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
        let nodes = match (&self.url, self.cluster_nodes.is_empty()) {
            (Some(url), _) if url.starts_with(CLUSTER_SCHEME) => Some(cluster_urls(url)?),
            (None, false) => Some(self.cluster_nodes.clone()),
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "fleet",
                    "cluster_nodes",
                    "give either a URL or cluster nodes, not both",
                ))
            }
            (Some(_), true) => None,
            (None, true) => {
                return Err(ConfigError::new("fleet", "redis_url", "is required"));
            }
        };
        let connector = match nodes {
            Some(nodes) => cluster_connector(nodes, self.op_timeout)?,
            None => {
                let url = self.url.unwrap_or_default();
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| ConfigError::new("fleet", "redis_url", format!("{url:?}: {e}")))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.op_timeout.max(Duration::from_millis(100))))
                    .set_response_timeout(Some(self.op_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let conn = ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| ConfigError::new("fleet", "redis_url", e.to_string()))?;
                Connector::Single(conn)
            }
        };
        let instance = self
            .instance
            .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)));
        let fleet = Fleet {
            inner: Arc::new(FleetInner {
                conn: connector,
                prefix: self.prefix.into(),
                instance: instance.into(),
                sync_interval: self.sync_interval,
                op_timeout: self.op_timeout,
                listeners: self.listeners,
                link: Link::new("fleet".to_owned()),
                #[cfg(feature = "observe")]
                registry: self.registry,
            }),
        };
        #[cfg(feature = "observe")]
        fleet.inner.register("fleet", fleet.clone());
        Ok(fleet)
    }
}

/// The seed nodes of a `redis+cluster://a:1,b:2` URL, as `redis://` URLs.
fn cluster_urls(url: &str) -> Result<Vec<String>, ConfigError> {
    let rest = url[CLUSTER_SCHEME.len()..].trim_end_matches('/');
    let nodes: Vec<String> = rest
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| format!("redis://{n}"))
        .collect();
    if nodes.is_empty() {
        return Err(ConfigError::new(
            "fleet",
            "redis_url",
            format!("{url:?}: names no node (redis+cluster://host:port,host:port)"),
        ));
    }
    Ok(nodes)
}

#[cfg(feature = "cluster")]
fn cluster_connector(nodes: Vec<String>, op_timeout: Duration) -> Result<Connector, ConfigError> {
    let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
        .connection_timeout(op_timeout.max(Duration::from_millis(100)))
        .response_timeout(op_timeout)
        .retries(1)
        .build()
        .map_err(|e| ConfigError::new("fleet", "redis_url", format!("{nodes:?}: {e}")))?;
    Ok(Connector::Cluster(Box::new(ClusterConnector {
        client,
        conn: tokio::sync::OnceCell::new(),
    })))
}

#[cfg(not(feature = "cluster"))]
fn cluster_connector(_: Vec<String>, _: Duration) -> Result<Connector, ConfigError> {
    Err(ConfigError::new(
        "fleet",
        "redis_url",
        "Redis Cluster needs the `cluster` feature of bulwark-fleet (`fleet-cluster` of bulwark)",
    ))
}

/// How a fleet reaches Redis.
enum Connector {
    /// One server (or a proxy in front of many), through a connection
    /// manager that reconnects by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: connected on the first sync (and again after a
    /// failure to connect), then routing each script by its keys' slot.
    #[cfg(feature = "cluster")]
    Cluster(Box<ClusterConnector>),
}

#[cfg(feature = "cluster")]
struct ClusterConnector {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

/// A connection the scripts run on.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.get_db(),
        }
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
/// use bulwark::fleet::Fleet;
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
    conn: Connector,
    /// Whether the last operation of any layer reached Redis.
    link: Link,
    #[cfg(feature = "observe")]
    registry: Option<bulwark_observe::Registry>,
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
            cluster_nodes: Vec::new(),
            #[cfg(feature = "observe")]
            registry: None,
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

    /// Whether it talks to a Redis Cluster (`redis+cluster://`,
    /// [`cluster_nodes`](FleetBuilder::cluster_nodes)).
    pub fn is_cluster(&self) -> bool {
        !matches!(self.inner.conn, Connector::Single(_))
    }

    /// Whether the last Redis operation of any of its layers failed or
    /// timed out (or none reached Redis yet): its layers decide locally.
    pub fn is_degraded(&self) -> bool {
        self.inner.link.is_degraded()
    }
}

#[cfg(feature = "observe")]
impl bulwark_observe::FleetView for Fleet {
    fn fleet_health(&self) -> bulwark_observe::health::FleetHealth {
        self.inner.link.health(
            "fleet",
            bulwark_observe::health::FleetDetail::Connection {
                prefix: self.prefix().to_owned(),
                instance: self.instance().to_owned(),
                cluster: self.is_cluster(),
            },
        )
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

    /// Registers a shared layer's view in the fleet's registry, if any.
    #[cfg(feature = "observe")]
    pub(crate) fn register<T: bulwark_observe::FleetView>(&self, name: &str, view: T) {
        if let Some(registry) = &self.registry {
            registry.fleet_view(name, view);
        }
    }

    async fn conn(&self) -> redis::RedisResult<Conn> {
        match &self.conn {
            Connector::Single(c) => Ok(Conn::Single(c.clone())),
            #[cfg(feature = "cluster")]
            Connector::Cluster(c) => c
                .conn
                .get_or_try_init(|| c.client.get_async_connection())
                .await
                .map(|c| Conn::Cluster(c.clone())),
        }
    }

    /// Runs one Redis operation within the operation timeout (connecting
    /// to a cluster included).
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, FleetError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async { op(self.conn().await?).await };
        let result = match tokio::time::timeout(self.op_timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(FleetError::Redis(e.to_string().into())),
            Err(_) => Err(FleetError::TimedOut(self.op_timeout)),
        };
        match &result {
            Ok(_) => self.link.touch_ok(),
            Err(_) => self.link.touch_failed(),
        }
        result
    }
}

/// Whether a layer shares its state now, with the event and metrics of a
/// change, and when it last synced or fell back (for health).
#[derive(Debug)]
pub(crate) struct Link {
    layer: Arc<str>,
    degraded: AtomicBool,
    base: TimeBase,
    /// When a sync last reached Redis (nanoseconds since `base`, at least
    /// 1); 0: never.
    last_sync: AtomicU64,
    /// When it fell back (nanoseconds since `base`, at least 1); 0 while up
    /// or before Redis was first tried.
    fell_back_at: AtomicU64,
}

impl Link {
    /// A link that has not reached Redis yet: degraded until it does.
    pub(crate) fn new(layer: String) -> Self {
        metrics::gauge!("bulwark_fleet_degraded", "layer" => layer.clone()).set(1.0);
        Link {
            layer: layer.into(),
            degraded: AtomicBool::new(true),
            base: TimeBase::new(),
            last_sync: AtomicU64::new(0),
            fell_back_at: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    fn now(&self) -> u64 {
        self.base.now_nanos().max(1)
    }

    /// The connection's own link: no events, only the times.
    fn touch_ok(&self) {
        self.last_sync.store(self.now(), Ordering::Release);
        self.fell_back_at.store(0, Ordering::Release);
        if self.degraded.swap(false, Ordering::AcqRel) {
            metrics::gauge!("bulwark_fleet_degraded", "layer" => self.layer.to_string()).set(0.0);
        }
    }

    fn touch_failed(&self) {
        let _ =
            self.fell_back_at
                .compare_exchange(0, self.now(), Ordering::AcqRel, Ordering::Acquire);
        if !self.degraded.swap(true, Ordering::AcqRel) {
            metrics::gauge!("bulwark_fleet_degraded", "layer" => self.layer.to_string()).set(1.0);
        }
    }

    /// Redis answered: share again (announced if a fall-back was).
    pub(crate) fn ok(&self, fleet: &FleetInner, fell_back: &mut bool) {
        self.touch_ok();
        if std::mem::replace(fell_back, false) {
            tracing::info!(target: "bulwark::fleet", layer = &*self.layer, "rejoined the fleet");
            metrics::counter!("bulwark_fleet_rejoins_total", "layer" => self.layer.to_string())
                .increment(1);
            fleet.listeners.emit(|| FleetEvent::Rejoined {
                layer: self.layer.clone(),
            });
        }
    }

    /// Redis failed or was too slow: decide locally (announced once).
    pub(crate) fn failed(&self, fleet: &FleetInner, fell_back: &mut bool, reason: FleetError) {
        self.touch_failed();
        if !std::mem::replace(fell_back, true) {
            tracing::warn!(target: "bulwark::fleet", layer = &*self.layer, %reason, "lost the fleet; deciding locally");
            metrics::counter!("bulwark_fleet_fallbacks_total", "layer" => self.layer.to_string())
                .increment(1);
            fleet.listeners.emit(|| FleetEvent::FellBack {
                layer: self.layer.clone(),
                reason,
            });
        }
    }

    /// The health of the layer `name` with this link's state and times.
    #[cfg(feature = "observe")]
    pub(crate) fn health(
        &self,
        name: &str,
        detail: bulwark_observe::health::FleetDetail,
    ) -> bulwark_observe::health::FleetHealth {
        use bulwark_observe::health::{FleetHealth, FleetLink};
        let now = self.now();
        let ago = |at: u64| (at != 0).then(|| Duration::from_nanos(now.saturating_sub(at)));
        let fell_back = self.fell_back_at.load(Ordering::Acquire);
        let link = match (self.is_degraded(), fell_back) {
            (false, _) => FleetLink::Up,
            (true, 0) => FleetLink::Connecting,
            (true, _) => FleetLink::Fallback,
        };
        FleetHealth::new(name, detail)
            .link(link, ago(fell_back))
            .last_sync(ago(self.last_sync.load(Ordering::Acquire)))
    }
}

/// Starts a layer's sync task on the current tokio runtime; outside one,
/// a [`ConfigError`] naming the layer (never a panic).
pub(crate) fn spawn<F>(layer: &'static str, task: F) -> Result<TaskGuard, ConfigError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        ConfigError::new(
            layer,
            "runtime",
            "must be built inside a tokio runtime (it syncs in a background task)",
        )
    })?;
    Ok(TaskGuard(runtime.spawn(task).abort_handle()))
}

/// Aborts a background task when the last handle of its layer is dropped.
#[derive(Debug)]
pub(crate) struct TaskGuard(pub(crate) tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
