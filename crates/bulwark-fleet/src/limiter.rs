//! [`FleetRateLimiter`]: one rate limit for every instance of a service.

use crate::fleet::{spawn, FleetInner, Link, TaskGuard};
use crate::Fleet;
use bulwark_core::clock::TimeBase;
use bulwark_core::error::{ConfigError, RateLimited};
use bulwark_ratelimit::{Admit, Rate, RateLimiter};
use parking_lot::RwLock;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// GCRA for a batch of cells, atomically, on Redis's clock (so the
/// instances' clocks do not matter). Grants as many of the `want` cells as
/// fit now, and says how long until one more would, and how many instances
/// asked in the last `member_ttl`.
const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ttl = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local granted = math.floor((now + tau - tat) / interval)
if granted > want then granted = want end
if granted < 0 then granted = 0 end
if granted > 0 then
  tat = tat + granted * interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local wait = tat + interval - tau - now
if wait < 0 then wait = 0 end
local ms = math.floor(now / 1000)
redis.call('ZADD', KEYS[2], ms, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms - ttl)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return {granted, wait, redis.call('ZCARD', KEYS[2])}
";

/// Builds a [`FleetRateLimiter`].
#[derive(Debug)]
pub struct FleetRateLimiterBuilder {
    fleet: Fleet,
    name: Arc<str>,
    rate: Option<Result<Rate, ConfigError>>,
    refill_interval: Duration,
    lease_ttl: Duration,
    fallback: Option<Rate>,
}

impl FleetRateLimiterBuilder {
    /// The fleet's limit (required): `permits` calls per `per` for all
    /// instances together. The burst is the limit's (see [`rate`](Self::rate)).
    pub fn limit(mut self, permits: u32, per: Duration) -> Self {
        self.rate = Some(Rate::new(permits, per));
        self
    }

    /// The most calls the fleet admits at once after a quiet spell (default:
    /// the limit's permits).
    pub fn burst(mut self, burst: u32) -> Self {
        self.rate = self.rate.map(|r| r.and_then(|r| r.burst(burst)));
        self
    }

    /// The fleet's limit as a [`Rate`] (with its burst).
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(Ok(rate));
        self
    }

    /// How often an instance may ask Redis for more tokens while it needs
    /// them (default 10 ms): a Redis call per instance per interval at most.
    pub fn refill_interval(mut self, interval: Duration) -> Self {
        self.refill_interval = interval;
        self
    }

    /// How long leased tokens stay usable (default 1 s): an instance that
    /// goes quiet cannot save up a lease and burst past the limit later.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The local limit while Redis is out of reach (default: the fleet's
    /// limit divided by the number of instances last seen).
    pub fn fallback(mut self, rate: Rate) -> Self {
        self.fallback = Some(rate);
        self
    }

    /// The limiter; its background task starts now.
    pub fn build(self) -> Result<FleetRateLimiter, ConfigError> {
        let rate = self.rate.unwrap_or_else(|| {
            Err(ConfigError::new(
                "fleet rate limiter",
                "limit",
                "is required (calls per period)",
            ))
        })?;
        if self.refill_interval < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "fleet rate limiter",
                "refill_interval",
                "must be at least 1ms",
            ));
        }
        if self.lease_ttl < self.refill_interval {
            return Err(ConfigError::new(
                "fleet rate limiter",
                "lease_ttl",
                "must be at least the refill interval",
            ));
        }
        let interval_us = u64::try_from(rate.interval().as_micros()).unwrap_or(u64::MAX);
        if interval_us == 0 {
            return Err(ConfigError::new(
                "fleet rate limiter",
                "limit",
                "must space calls at least 1µs apart (at most 1,000,000/s)",
            ));
        }
        let fleet = self.fleet.inner.clone();
        let state = Arc::new(State {
            link: Link::new(format!("ratelimit:{}", self.name)),
            tat_key: fleet.key("rl", &self.name, "tat"),
            members_key: fleet.key("rl", &self.name, "members"),
            fallback: RwLock::new(local_limiter(&self.name, self.fallback.unwrap_or(rate), 1)?),
            fixed_fallback: self.fallback.is_some(),
            name: self.name,
            rate,
            interval_us,
            tokens: AtomicI64::new(0),
            members: AtomicU32::new(1),
            granted: AtomicU64::new(0),
            retry_hint_us: AtomicU64::new(interval_us),
            want: Notify::new(),
            base: TimeBase::new(),
            asking_since: AtomicU64::new(0),
            wanted_since: AtomicU64::new(0),
            next_ask: AtomicU64::new(0),
            refill_interval: self.refill_interval,
            lease_ttl: self.lease_ttl,
        });
        let task = spawn("fleet rate limiter", refill(fleet.clone(), state.clone()))?;
        let limiter = FleetRateLimiter {
            state,
            _task: Arc::new(task),
        };
        #[cfg(feature = "observe")]
        fleet.register(&limiter.state.name, limiter.clone());
        Ok(limiter)
    }
}

fn local_limiter(name: &Arc<str>, rate: Rate, instances: u32) -> Result<RateLimiter, ConfigError> {
    let instances = instances.max(1);
    let permits = (rate.permits() / instances).max(1);
    let burst = (rate.burst_size() / instances).max(1);
    RateLimiter::builder()
        .name(name.clone())
        .limit(permits, rate.per())
        .burst(burst)
        .build()
}

/// One rate limit shared by every instance of a service through Redis:
/// GCRA in one atomic Lua script per limiter, with a local lease of tokens
/// so that a call never waits on Redis.
///
/// It implements [`Admit`]: put it behind a
/// [`RateLimitLayer`](bulwark_ratelimit::RateLimitLayer).
///
/// **The lease.** A background task asks Redis for a few tokens at a time
/// (up to four times this instance's share of one
/// [`refill_interval`](FleetRateLimiterBuilder::refill_interval)) whenever
/// the local stock falls below twice that share, at most once per interval while refused. A
/// call takes a token from the stock (one atomic operation); with none
/// left it is refused with [`RateLimited`], at once. Redis grants tokens by
/// GCRA on its own clock, so the fleet as a whole never gets more than
/// `burst + T · rate` in any window `T`, however many instances ask;
/// tokens unused after [`lease_ttl`](FleetRateLimiterBuilder::lease_ttl)
/// are dropped.
///
/// **Without Redis.** Until it first reaches Redis, and when Redis fails
/// or does not answer within the fleet's operation timeout, the limiter
/// decides locally with
/// [`fallback`](FleetRateLimiterBuilder::fallback) (default: the limit
/// divided by the instances last seen; the whole limit before any was
/// seen). A call that finds no token while a refill is overdue by more
/// than `refill_interval + 25 ms` is decided locally too, rather than
/// refused for want of an answer. The limiter announces a fall-back
/// ([`FleetEvent::FellBack`](crate::FleetEvent::FellBack), the
/// `bulwark_fleet_fallbacks_total` counter), keeps trying every sync
/// interval and rejoins by itself.
///
/// ```no_run
/// use bulwark::fleet::{Fleet, FleetRateLimiter};
/// use bulwark::ratelimit::RateLimitLayer;
/// use std::time::Duration;
/// use tower::ServiceBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fleet = Fleet::new("redis://127.0.0.1:6379").unwrap();
/// // At most 500 calls per second to the provider, for all instances.
/// let limiter = FleetRateLimiter::builder(&fleet, "payments-provider")
///     .limit(500, Duration::from_secs(1))
///     .build()
///     .unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(limiter))
///     .service_fn(|req: u32| async move { Ok::<_, bulwark::BoxError>(req) });
/// # drop(svc);
/// # }
/// ```
#[derive(Clone)]
pub struct FleetRateLimiter {
    state: Arc<State>,
    _task: Arc<TaskGuard>,
}

struct State {
    name: Arc<str>,
    rate: Rate,
    link: Link,
    tat_key: String,
    members_key: String,
    fallback: RwLock<RateLimiter>,
    fixed_fallback: bool,
    interval_us: u64,
    /// Leased tokens not spent yet.
    tokens: AtomicI64,
    /// Instances seen by Redis recently.
    members: AtomicU32,
    /// Tokens granted by Redis since the start.
    granted: AtomicU64,
    retry_hint_us: AtomicU64,
    want: Notify,
    base: TimeBase,
    /// When the refill in flight was sent (nanoseconds since `base`, at
    /// least 1), 0 when none is.
    asking_since: AtomicU64,
    /// When a call first found no token since Redis last answered
    /// (nanoseconds since `base`, at least 1), 0 when none did.
    wanted_since: AtomicU64,
    /// When the refill task, refused by Redis, last planned to ask again
    /// (nanoseconds since `base`; 0 before any refusal).
    next_ask: AtomicU64,
    refill_interval: Duration,
    lease_ttl: Duration,
}

/// What a [`FleetRateLimiter`] knows now.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FleetRateLimiterSnapshot {
    /// The fleet's limit.
    pub rate: Rate,
    /// Whether it decides locally now (Redis out of reach).
    pub degraded: bool,
    /// Leased tokens not spent yet.
    pub leased: i64,
    /// Tokens granted to this instance by Redis since it started.
    pub granted: u64,
    /// Instances that asked Redis for tokens recently.
    pub instances: u32,
}

impl FleetRateLimiter {
    /// A builder for the limiter `name` (its Redis keys are
    /// `{PREFIX:rl:NAME}:tat` and `{PREFIX:rl:NAME}:members`).
    pub fn builder(fleet: &Fleet, name: impl Into<Arc<str>>) -> FleetRateLimiterBuilder {
        FleetRateLimiterBuilder {
            fleet: fleet.clone(),
            name: name.into(),
            rate: None,
            refill_interval: Duration::from_millis(10),
            lease_ttl: Duration::from_secs(1),
            fallback: None,
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Whether it decides locally now, Redis being out of reach.
    pub fn is_degraded(&self) -> bool {
        self.state.link.is_degraded()
    }

    /// What it knows now.
    pub fn snapshot(&self) -> FleetRateLimiterSnapshot {
        let s = &*self.state;
        FleetRateLimiterSnapshot {
            rate: s.rate,
            degraded: s.link.is_degraded(),
            leased: s.tokens.load(Ordering::Relaxed).max(0),
            granted: s.granted.load(Ordering::Relaxed),
            instances: s.members.load(Ordering::Relaxed),
        }
    }
}

#[cfg(feature = "observe")]
impl bulwark_observe::FleetView for FleetRateLimiter {
    fn fleet_health(&self) -> bulwark_observe::health::FleetHealth {
        let s = self.snapshot();
        self.state.link.health(
            &self.state.name,
            bulwark_observe::health::FleetDetail::RateLimiter {
                limit_per_sec: s.rate.per_second(),
                leased: s.leased,
                granted: s.granted,
                instances: s.instances,
            },
        )
    }
}

impl Admit for FleetRateLimiter {
    #[inline]
    fn admit(&self) -> Result<(), RateLimited> {
        let s = &*self.state;
        let taken = s
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t > 0).then(|| t - 1)
            });
        match taken {
            Ok(before) => {
                if before <= low_water(s) {
                    s.want.notify_one();
                }
                Ok(())
            }
            Err(_) => self.no_token(),
        }
    }
}

/// Below this stock the task asks for more: one share, so that a whole
/// share is left to spend while the answer comes.
fn low_water(s: &State) -> i64 {
    share(s)
}

/// This instance's ask: about twice its share of one refill interval.
fn share(s: &State) -> i64 {
    let per_interval = s.rate.per_second() * s.refill_interval.as_secs_f64();
    let members = f64::from(s.members.load(Ordering::Relaxed).max(1));
    let want = (2.0 * per_interval / members).ceil() as i64;
    want.clamp(1, i64::from(s.rate.burst_size()))
}

impl FleetRateLimiter {
    #[cold]
    fn no_token(&self) -> Result<(), RateLimited> {
        let s = &*self.state;
        s.want.notify_one();
        // Redis out of reach (known, or a refill outstanding for longer
        // than one should take): decide locally rather than refuse for
        // want of an answer.
        let now = s.base.now_nanos().max(1);
        let asking = s.asking_since.load(Ordering::Acquire);
        // Out of tokens since `wanted`, with no answer from Redis since
        // (the refill task may also be starved of CPU).
        let wanted =
            match s
                .wanted_since
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => now,
                Err(since) => since,
            };
        let stale = stale_after(s);
        // A refill the task put off (Redis said when one more token fits)
        // is not overdue before its time.
        let due = wanted.max(s.next_ask.load(Ordering::Acquire));
        let stuck =
            (asking != 0 && now.saturating_sub(asking) > stale) || now.saturating_sub(due) > stale;
        if s.link.is_degraded() || stuck {
            return s.fallback.read().admit();
        }
        let hint =
            Duration::from_micros(s.retry_hint_us.load(Ordering::Relaxed)).max(s.refill_interval);
        Err(RateLimited::new(hint).with_name(s.name.clone()))
    }
}

fn stale_after(s: &State) -> u64 {
    bulwark_core::clock::duration_nanos(s.refill_interval + Duration::from_millis(25))
}

async fn refill(fleet: Arc<FleetInner>, s: Arc<State>) {
    let script = redis::Script::new(LEASE_SCRIPT);
    let mut fell_back = false;
    let mut leased_at = s.base.now_nanos();
    let ttl = (s.lease_ttl.as_millis() as u64).max(1) * 3;
    let ttl = ttl.max(3 * fleet.sync_interval.as_millis() as u64);
    loop {
        // Wait for need, or a sync interval (membership, lease expiry).
        if s.tokens.load(Ordering::Acquire) > low_water(&s) {
            tokio::select! {
                () = s.want.notified() => {}
                () = tokio::time::sleep(fleet.sync_interval) => {}
            }
        }
        let now = s.base.now_nanos();
        if now.saturating_sub(leased_at) > bulwark_core::clock::duration_nanos(s.lease_ttl) {
            s.tokens.store(0, Ordering::Release);
        }
        let stock = s.tokens.load(Ordering::Acquire).max(0);
        let want = (2 * share(&s) - stock).max(0);
        let tau = s.interval_us.saturating_mul(u64::from(s.rate.burst_size()));
        s.asking_since
            .store(s.base.now_nanos().max(1), Ordering::Release);
        let answer = fleet
            .run(|mut conn| {
                let script = &script;
                let s = &s;
                let instance = fleet.instance.clone();
                async move {
                    script
                        .key(&s.tat_key)
                        .key(&s.members_key)
                        .arg(s.interval_us)
                        .arg(tau)
                        .arg(want)
                        .arg(&*instance)
                        .arg(ttl)
                        .invoke_async::<(i64, u64, u32)>(&mut conn)
                        .await
                }
            })
            .await;
        s.asking_since.store(0, Ordering::Release);
        match answer {
            Ok((granted, wait_us, members)) => {
                s.wanted_since.store(0, Ordering::Release);
                s.members.store(members.max(1), Ordering::Relaxed);
                if granted > 0 {
                    s.tokens.fetch_add(granted, Ordering::AcqRel);
                    s.granted
                        .fetch_add(granted.unsigned_abs(), Ordering::Relaxed);
                    leased_at = s.base.now_nanos();
                }
                s.retry_hint_us.store(wait_us, Ordering::Relaxed);
                s.link.ok(&fleet, &mut fell_back);
                if granted < want {
                    // Refused (in part): ask again when one more fits, at
                    // most once per refill interval.
                    let wait = Duration::from_micros(wait_us)
                        .max(s.refill_interval)
                        .min(fleet.sync_interval);
                    s.next_ask.store(
                        s.base.now_nanos() + bulwark_core::clock::duration_nanos(wait),
                        Ordering::Release,
                    );
                    // Left set: a refill is overdue only `stale` after this.
                    tokio::time::sleep(wait).await;
                }
            }
            Err(reason) => {
                if !s.fixed_fallback && !s.link.is_degraded() {
                    let members = s.members.load(Ordering::Relaxed);
                    if let Ok(local) = local_limiter(&s.name, s.rate, members) {
                        *s.fallback.write() = local;
                    }
                }
                s.link.failed(&fleet, &mut fell_back, reason);
                tokio::time::sleep(fleet.sync_interval).await;
            }
        }
    }
}

impl fmt::Debug for FleetRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetRateLimiter")
            .field("name", &self.state.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}
