//! Every trip policy and transition, as exact expectations in paused time.

use bulwark_breaker::{
    Breaker, BreakerBuilder, BreakerEvent, BreakerEventKind, CircuitBreakerLayer, State,
    TransitionReason,
};
use bulwark_core::backoff::{BackoffPolicy, Jitter};
use bulwark_core::error::{find, BulkheadFull, CircuitOpen};
use bulwark_core::{BoxError, Outcome};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{advance, sleep, Instant};
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the scripted upstream does with a request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Ok,
    Fail,
    /// Answers Ok after this long.
    SlowOk(Duration),
    /// Fails with a bulkhead rejection (a local rejection further in).
    LocalReject,
}

type Svc = bulwark_breaker::CircuitBreaker<Upstream>;

/// The scripted upstream; counts the calls that reach it.
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicUsize>,
}

impl Service<Reply> for Upstream {
    type Response = ();
    type Error = BoxError;
    type Future = futures_util::future::BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, reply: Reply) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match reply {
                Reply::Ok => Ok(()),
                Reply::Fail => Err::<(), BoxError>("upstream failed".into()),
                Reply::SlowOk(d) => {
                    sleep(d).await;
                    Ok(())
                }
                Reply::LocalReject => Err(BulkheadFull::at_capacity().into()),
            }
        })
    }
}

fn guarded(builder: BreakerBuilder) -> (Svc, Breaker, Arc<AtomicUsize>) {
    let breaker = builder.build().expect("valid");
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(Upstream {
            calls: calls.clone(),
        });
    (svc, breaker, calls)
}

async fn send(svc: &mut Svc, reply: Reply) -> Result<(), BoxError> {
    svc.ready().await?.call(reply).await
}

fn open_error(r: Result<(), BoxError>) -> CircuitOpen {
    let err = r.expect_err("expected a rejection");
    find::<CircuitOpen>(&*err)
        .unwrap_or_else(|| panic!("expected CircuitOpen, got {err}"))
        .clone()
}

#[tokio::test(start_paused = true)]
async fn count_window_truly_slides() {
    // Window of 10 calls, 50 %: after 1,000 successes, 5 failures trip it.
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .count_window(10)
            .failure_rate(0.5)
            .minimum_calls(10),
    );
    for _ in 0..1_000 {
        send(&mut svc, Reply::Ok).await.unwrap();
    }
    for i in 1..=5 {
        assert_eq!(
            breaker.state(),
            State::Closed,
            "still closed before failure {i}"
        );
        send(&mut svc, Reply::Fail).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.calls, snap.failures),
        (10, 5),
        "the snapshot shows what tripped it"
    );
    assert_eq!(snap.failure_rate, Some(0.5));
    let t = snap.history.last().copied().unwrap();
    assert_eq!((t.from, t.to), (State::Closed, State::Open));
    assert_eq!(t.reason, TransitionReason::FailureRate(0.5));
}

#[tokio::test(start_paused = true)]
async fn minimum_calls_before_any_rate_is_judged() {
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .count_window(20)
            .failure_rate(0.5)
            .minimum_calls(5),
    );
    for _ in 0..4 {
        send(&mut svc, Reply::Fail).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Closed, "4 calls < minimum of 5");
    assert_eq!(breaker.snapshot().failure_rate, None);
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_a_success_resets_the_run() {
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .without_failure_rate()
            .consecutive_failures(3),
    );
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().consecutive_failures, 2);
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        breaker.snapshot().history[0].reason,
        TransitionReason::ConsecutiveFailures(3)
    );
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_failures() {
    // 10 s in 10 buckets; 50 %; at least 4 calls.
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .time_window(Duration::from_secs(10), 10)
            .failure_rate(0.5)
            .minimum_calls(4),
    );
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Fail).await.unwrap_err();
    // 10 s later, those three have left the window.
    advance(Duration::from_secs(10)).await;
    assert_eq!(breaker.snapshot().calls, 0);
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Closed);
    // Within the window: 2 failures of 4 = 50 %.
    advance(Duration::from_secs(9)).await;
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_boundary_is_exact() {
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .time_window(Duration::from_secs(4), 4)
            .failure_rate(1.0)
            .minimum_calls(2),
    );
    send(&mut svc, Reply::Fail).await.unwrap_err(); // bucket [0 s, 1 s)
    advance(Duration::from_millis(3_999)).await;
    assert_eq!(
        breaker.snapshot().calls,
        1,
        "still inside the window at 3.999 s"
    );
    advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.snapshot().calls, 0, "left at exactly 4 s");
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_even_when_calls_succeed() {
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .count_window(4)
            .minimum_calls(4)
            .without_failure_rate()
            .slow_calls(Duration::from_millis(100), 0.5),
    );
    send(&mut svc, Reply::SlowOk(Duration::from_millis(99)))
        .await
        .unwrap();
    send(&mut svc, Reply::SlowOk(Duration::from_millis(100)))
        .await
        .unwrap();
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        breaker.snapshot().slow_calls,
        1,
        "99 ms is not slow, 100 ms is"
    );
    send(&mut svc, Reply::SlowOk(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        breaker.snapshot().history[0].reason,
        TransitionReason::SlowCallRate(0.5)
    );
}

#[tokio::test(start_paused = true)]
async fn open_rejects_without_calling_and_says_when_to_probe() {
    let (mut svc, breaker, calls) = guarded(
        Breaker::builder()
            .name("payments")
            .without_failure_rate()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(30)),
    );
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let open = open_error(send(&mut svc, Reply::Ok).await);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(open.name(), Some("payments"));
    advance(Duration::from_secs(10)).await;
    let open = open_error(send(&mut svc, Reply::Ok).await);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(20)));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the inner service was never called"
    );
    assert_eq!(breaker.rejected(), 2);

    // One nanosecond early: still open. At exactly 30 s: a probe goes through.
    advance(Duration::from_secs(20) - Duration::from_nanos(1)).await;
    let open = open_error(send(&mut svc, Reply::Ok).await);
    assert_eq!(open.retry_after(), Some(Duration::from_nanos(1)));
    advance(Duration::from_nanos(1)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn open_duration_grows_with_consecutive_trips_and_resets_on_close() {
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .without_failure_rate()
            .consecutive_failures(1)
            .successes_to_close(1)
            .failures_to_reopen(1)
            .open_backoff(
                BackoffPolicy::exponential(Duration::from_secs(1), 2.0)
                    .with_max(Duration::from_secs(5)),
            ),
    );
    send(&mut svc, Reply::Fail).await.unwrap_err();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let open = open_error(send(&mut svc, Reply::Ok).await);
        let wait = open.retry_after().unwrap();
        seen.push(wait);
        advance(wait).await;
        send(&mut svc, Reply::Fail).await.unwrap_err(); // the probe fails: open again
    }
    assert_eq!(seen, [1, 2, 4, 5, 5].map(Duration::from_secs));
    assert_eq!(breaker.snapshot().consecutive_trips, 6);

    // Closing starts the sequence over.
    advance(Duration::from_secs(5)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    send(&mut svc, Reply::Fail).await.unwrap_err();
    let open = open_error(send(&mut svc, Reply::Ok).await);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn jittered_open_duration_stays_in_bounds() {
    let (mut svc, _breaker, _) = guarded(
        Breaker::builder()
            .without_failure_rate()
            .consecutive_failures(1)
            .failures_to_reopen(1)
            .seed(7)
            .open_backoff(
                BackoffPolicy::exponential(Duration::from_secs(10), 2.0)
                    .with_max(Duration::from_secs(60))
                    .with_jitter(Jitter::Equal),
            ),
    );
    send(&mut svc, Reply::Fail).await.unwrap_err();
    for trip in 1..=6u32 {
        let wait = open_error(send(&mut svc, Reply::Ok).await)
            .retry_after()
            .unwrap();
        let full = Duration::from_secs(10 * 2u64.pow(trip - 1)).min(Duration::from_secs(60));
        assert!(
            wait >= full / 2 && wait <= full,
            "trip {trip}: {wait:?} not in [{:?}, {full:?}]",
            full / 2
        );
        advance(wait).await;
        send(&mut svc, Reply::Fail).await.unwrap_err();
    }
}

async fn trip_then_wait(svc: &mut Svc, breaker: &Breaker) {
    send(svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    advance(Duration::from_secs(1)).await;
}

fn half_open_builder(probes: u32, successes: u32) -> BreakerBuilder {
    Breaker::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .permitted_probes(probes)
        .successes_to_close(successes)
        .failures_to_reopen(1)
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_n_probes_across_clones() {
    let (mut svc, breaker, _) = guarded(half_open_builder(2, 2));
    trip_then_wait(&mut svc, &breaker).await;
    // Two clones take the two probe slots in poll_ready.
    let mut a = svc.clone();
    let mut b = svc.clone();
    let mut c = svc.clone();
    a.ready().await.unwrap();
    b.ready().await.unwrap();
    assert_eq!(breaker.snapshot().probes_in_flight, 2);
    let open = open_error(c.ready().await.unwrap().call(Reply::Ok).await);
    assert_eq!(open.retry_after(), None, "waiting on probes: no known time");
    // A probe whose ready service is dropped before `call` gives its slot back.
    drop(b);
    assert_eq!(breaker.snapshot().probes_in_flight, 1);
    // A probe future dropped before it completes gives its slot back too.
    let fut = a.call(Reply::SlowOk(Duration::from_secs(5)));
    let mut d = svc.clone();
    let slow = d
        .ready()
        .await
        .unwrap()
        .call(Reply::SlowOk(Duration::from_secs(5)));
    assert_eq!(breaker.snapshot().probes_in_flight, 2);
    drop(fut);
    drop(slow);
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "never stuck: probes can be taken again"
    );
    send(&mut c, Reply::Ok).await.unwrap();
    send(&mut c, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn success_threshold_closes_and_one_failed_probe_reopens() {
    let (mut svc, breaker, _) = guarded(half_open_builder(1, 3));
    trip_then_wait(&mut svc, &breaker).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.snapshot().probe_successes, 2);
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    let reasons: Vec<_> = breaker
        .snapshot()
        .history
        .iter()
        .map(|t| (t.to, t.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (State::Open, TransitionReason::ConsecutiveFailures(1)),
            (State::HalfOpen, TransitionReason::OpenElapsed),
            (State::Open, TransitionReason::ProbeFailed),
        ]
    );
    advance(Duration::from_secs(1)).await;
    for _ in 0..3 {
        send(&mut svc, Reply::Ok).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        breaker.snapshot().history.last().unwrap().reason,
        TransitionReason::ProbesSucceeded(3)
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_reopens() {
    let (mut svc, breaker, _) = guarded(
        half_open_builder(1, 1)
            .slow_calls(Duration::from_millis(100), 1.0)
            .consecutive_failures(1),
    );
    trip_then_wait(&mut svc, &breaker).await;
    send(&mut svc, Reply::SlowOk(Duration::from_millis(150)))
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        breaker.snapshot().history.last().unwrap().reason,
        TransitionReason::ProbeSlow
    );
}

#[tokio::test(start_paused = true)]
async fn local_rejections_and_ignored_outcomes_are_not_failures() {
    let (mut svc, breaker, _) = guarded(
        Breaker::builder()
            .without_failure_rate()
            .consecutive_failures(2),
    );
    for _ in 0..10 {
        let err = send(&mut svc, Reply::LocalReject).await.unwrap_err();
        assert!(
            find::<BulkheadFull>(&*err).is_some(),
            "the error passes through unchanged"
        );
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0);

    // A classifier can ignore outcomes too.
    let breaker = Breaker::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut svc =
        ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(
                |r: &Result<u16, BoxError>| match r {
                    Ok(404) => Outcome::Ignored,
                    Ok(s) if *s >= 500 => Outcome::Failure,
                    Ok(_) => Outcome::Success,
                    Err(e) => Outcome::of_error(e),
                },
            ))
            .service_fn(|status: u16| async move { Ok::<_, BoxError>(status) });
    assert_eq!(svc.ready().await.unwrap().call(404).await.unwrap(), 404);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        svc.ready().await.unwrap().call(503).await.unwrap(),
        503,
        "a 503 stays a response"
    );
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_admitted_before_a_transition_do_not_count() {
    let (mut svc, breaker, _) = guarded(half_open_builder(1, 1).consecutive_failures(2));
    // A slow call admitted while closed...
    let mut other = svc.clone();
    let slow = other
        .ready()
        .await
        .unwrap()
        .call(Reply::SlowOk(Duration::from_secs(3)));
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    // ...finishes after the trip (and after the probe time): it is not a probe.
    slow.await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_never_waits_on_the_inner_service_when_open() {
    let breaker = half_open_builder(1, 1).build().unwrap();
    breaker.force_open();
    // The inner service is never ready.
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer_never_ready();
    let r = tokio::time::timeout(Duration::from_secs(1), svc.ready()).await;
    assert!(
        r.expect("ready at once").is_ok(),
        "a policy decision is never an Err from poll_ready"
    );
    let open = open_error(svc.call(()).await);
    assert_eq!(open.retry_after(), None, "forced open: no probe time");
}

/// A tiny extension for the test above.
trait NeverReady {
    fn layer_never_ready(&self) -> bulwark_breaker::CircuitBreaker<Pending>;
}

impl NeverReady for CircuitBreakerLayer {
    fn layer_never_ready(&self) -> bulwark_breaker::CircuitBreaker<Pending> {
        tower::Layer::layer(self, Pending)
    }
}

#[derive(Clone)]
struct Pending;

impl Service<()> for Pending {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Pending
    }

    fn call(&mut self, _: ()) -> Self::Future {
        panic!("the breaker called a service that was never ready")
    }
}

#[tokio::test(start_paused = true)]
async fn manual_control_and_snapshot() {
    let (mut svc, breaker, calls) = guarded(
        Breaker::builder()
            .count_window(10)
            .minimum_calls(2)
            .history(3),
    );
    send(&mut svc, Reply::Ok).await.unwrap();
    send(&mut svc, Reply::Ok).await.unwrap();
    advance(Duration::from_secs(7)).await;
    let snap = breaker.snapshot();
    assert_eq!(
        (snap.state, snap.calls, snap.failures),
        (State::Closed, 2, 0)
    );
    assert_eq!(snap.failure_rate, Some(0.0));
    assert_eq!(snap.slow_call_rate, None, "no slow-call rule configured");
    assert_eq!(snap.time_in_state, Duration::from_secs(7));

    breaker.force_open();
    open_error(send(&mut svc, Reply::Ok).await);
    assert_eq!(breaker.state(), State::ForcedOpen);
    advance(Duration::from_secs(3600)).await;
    open_error(send(&mut svc, Reply::Ok).await); // forced: no probe ever

    breaker.force_closed();
    for _ in 0..20 {
        send(&mut svc, Reply::Fail).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::ForcedClosed);
    assert_eq!(breaker.snapshot().calls, 2, "disabled records nothing");

    breaker.metrics_only();
    for _ in 0..10 {
        send(&mut svc, Reply::Fail).await.unwrap_err();
    }
    let snap = breaker.snapshot();
    assert_eq!(snap.state, State::MetricsOnly, "metrics-only never trips");
    assert_eq!(
        (snap.calls, snap.failures, snap.failure_rate),
        (10, 10, Some(1.0))
    );

    breaker.reset();
    let snap = breaker.snapshot();
    assert_eq!((snap.state, snap.calls), (State::Closed, 0));
    let history: Vec<_> = snap.history.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        history,
        [
            (State::ForcedOpen, State::ForcedClosed),
            (State::ForcedClosed, State::MetricsOnly),
            (State::MetricsOnly, State::Closed),
        ],
        "bounded to the last 3"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 32);
}

#[tokio::test(start_paused = true)]
async fn events_reach_listeners_with_name_states_and_reason() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let (mut svc, _breaker, _) = guarded(half_open_builder(1, 1).name("db").on_event(
        move |e: &BreakerEvent| {
            let line = match &e.kind {
                BreakerEventKind::StateChanged(t) => format!(
                    "{}: {} -> {} ({})",
                    e.name.as_deref().unwrap(),
                    t.from,
                    t.to,
                    t.reason
                ),
                BreakerEventKind::Rejected { state, retry_after } => format!(
                    "{}: rejected in {state}, retry after {retry_after:?}",
                    e.name.as_deref().unwrap()
                ),
                _ => unreachable!(),
            };
            sink.lock().unwrap().push(line);
        },
    ));
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Ok).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    send(&mut svc, Reply::Ok).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "db: closed -> open (1 consecutive failures)",
            "db: rejected in open, retry after Some(1s)",
            "db: open -> half_open (open duration elapsed)",
            "db: half_open -> closed (1 probes succeeded)",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn tracing_events_carry_name_states_and_reason() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (mut svc, _breaker, _) = guarded(half_open_builder(1, 1).name("search"));
    send(&mut svc, Reply::Fail).await.unwrap_err();
    send(&mut svc, Reply::Ok).await.unwrap_err();
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        out.contains(r#"WARN bulwark::breaker: circuit breaker opened breaker="search" from="closed" to="open" reason=1 consecutive failures"#),
        "{out}"
    );
    assert!(out.contains(r#"DEBUG bulwark::breaker: call rejected breaker="search" state="open" retry_after_ms=1000"#), "{out}");
}

#[tokio::test(start_paused = true)]
async fn standalone_breaker_guards_futures_and_closures() {
    let breaker = half_open_builder(1, 1).build().unwrap();
    let r = breaker.call(async { Err::<(), _>("nope") }).await;
    assert_eq!(r.unwrap_err().into_inner(), Some("nope"));
    let polled = Arc::new(AtomicUsize::new(0));
    let p = polled.clone();
    let r = breaker
        .call(async move {
            p.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;
    assert!(r.unwrap_err().is_open());
    assert_eq!(
        polled.load(Ordering::SeqCst),
        0,
        "a rejected future is never polled"
    );
    assert!(breaker.call_sync(|| Ok::<_, ()>(1)).unwrap_err().is_open());

    // Dropping a guarded future mid-flight gives the probe back.
    advance(Duration::from_secs(1)).await;
    let fut = breaker.call(async {
        sleep(Duration::from_secs(10)).await;
        Ok::<_, ()>(())
    });
    let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
    let start = Instant::now();
    breaker
        .call_classified(async { Ok::<u16, ()>(200) }, |r| {
            if matches!(r, Ok(200)) {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        })
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_decided_again_on_the_next_poll_ready_and_counted_once_per_call() {
    let (mut svc, breaker, calls) = guarded(half_open_builder(1, 1));
    send(&mut svc, Reply::Fail).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    // Made ready while open, several times, and not called: nothing counted.
    for _ in 0..3 {
        svc.ready().await.unwrap();
    }
    assert_eq!(breaker.rejected(), 0);
    // Time passes while the refused service waits: the next poll_ready asks
    // again, and the call becomes a probe instead of a stale rejection.
    advance(Duration::from_secs(1)).await;
    svc.ready().await.unwrap().call(Reply::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A refusal is counted when the call is refused.
    send(&mut svc, Reply::Fail).await.unwrap_err();
    open_error(send(&mut svc, Reply::Ok).await);
    assert_eq!(breaker.rejected(), 1);
}
