//! Exact metric names, labels and values, read from a recording recorder.
#![cfg(feature = "metrics")]

use bulwark_breaker::{Breaker, CircuitBreakerLayer, State};
use bulwark_bulkhead::BulkheadLayer;
use bulwark_core::backoff::BackoffPolicy;
use bulwark_core::BoxError;
use bulwark_fallback::FallbackLayer;
use bulwark_observe::metrics::{FallbackMetrics, MetricsLayer, RetryMetrics, TimeoutMetrics};
use bulwark_observe::Registry;
use bulwark_retry::{RetryBudget, RetryLayer};
use bulwark_timeout::TimeoutLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::collections::BTreeMap;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

/// `name{k=v,...}` (labels sorted) to value.
fn read(snapshotter: &Snapshotter) -> BTreeMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn counter(m: &BTreeMap<String, DebugValue>, key: &str) -> u64 {
    match m.get(key) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!(
            "{key}: expected a counter, got {other:?}; have {:?}",
            m.keys()
        ),
    }
}

fn gauge(m: &BTreeMap<String, DebugValue>, key: &str) -> f64 {
    match m.get(key) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!(
            "{key}: expected a gauge, got {other:?}; have {:?}",
            m.keys()
        ),
    }
}

fn histogram_len(m: &BTreeMap<String, DebugValue>, key: &str) -> usize {
    match m.get(key) {
        Some(DebugValue::Histogram(v)) => v.len(),
        other => panic!("{key}: expected a histogram, got {other:?}"),
    }
}

fn states(m: &BTreeMap<String, DebugValue>, name: &str) -> Vec<(&'static str, f64)> {
    [
        "closed",
        "open",
        "half_open",
        "forced_open",
        "forced_closed",
        "metrics_only",
    ]
    .into_iter()
    .map(|s| {
        (
            s,
            gauge(
                m,
                &format!("bulwark_breaker_state{{name={name},state={s}}}"),
            ),
        )
    })
    .filter(|(_, v)| *v != 0.0)
    .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn breaker_state_transitions_rejections_and_calls() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let registry = Registry::new();
    let (breaker, mut svc) = metrics::with_local_recorder(&recorder, || {
        let breaker = registry
            .breaker(
                "payments",
                Breaker::builder()
                    .consecutive_failures(2)
                    .open_for(Duration::from_secs(10))
                    .permitted_probes(1)
                    .successes_to_close(1),
            )
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(MetricsLayer::new("payments"))
            .layer(CircuitBreakerLayer::new(breaker.clone()))
            .service_fn(|fail: bool| async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if fail {
                    Err::<(), BoxError>("upstream down".into())
                } else {
                    Ok(())
                }
            });
        (breaker, svc)
    });

    let m = read(&snapshotter);
    assert_eq!(states(&m, "payments"), vec![("closed", 1.0)]);

    for _ in 0..2 {
        svc.ready().await.unwrap().call(true).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    svc.ready().await.unwrap().call(false).await.unwrap_err();

    let m = read(&snapshotter);
    assert_eq!(states(&m, "payments"), vec![("open", 1.0)]);
    assert_eq!(
        counter(
            &m,
            "bulwark_breaker_transitions_total{name=payments,to=open}"
        ),
        1
    );
    assert_eq!(
        counter(&m, "bulwark_breaker_rejected_total{name=payments}"),
        1
    );
    assert_eq!(
        counter(&m, "bulwark_calls_total{name=payments,outcome=failure}"),
        2
    );
    assert_eq!(
        counter(&m, "bulwark_calls_total{name=payments,outcome=rejected}"),
        1
    );
    assert_eq!(
        counter(&m, "bulwark_calls_total{name=payments,outcome=success}"),
        0
    );
    assert_eq!(
        histogram_len(
            &m,
            "bulwark_call_duration_seconds{name=payments,outcome=failure}"
        ),
        2
    );

    // Rates come from the snapshot.
    registry.update_gauges();
    let m = read(&snapshotter);
    assert_eq!(
        gauge(&m, "bulwark_breaker_window_calls{name=payments}"),
        2.0
    );
    assert_eq!(
        gauge(&m, "bulwark_breaker_failure_rate{name=payments}"),
        0.0
    );

    // Open elapses; one successful probe closes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    svc.ready().await.unwrap().call(false).await.unwrap();
    let m = read(&snapshotter);
    assert_eq!(states(&m, "payments"), vec![("closed", 1.0)]);
    for to in ["half_open", "closed"] {
        assert_eq!(
            counter(
                &m,
                &format!("bulwark_breaker_transitions_total{{name=payments,to={to}}}")
            ),
            1
        );
    }
    assert_eq!(
        histogram_len(
            &m,
            "bulwark_call_duration_seconds{name=payments,outcome=success}"
        ),
        1
    );

    // Manual control by name moves the gauge too, never leaving two at 1.
    registry.force_open("payments").unwrap();
    let m = read(&snapshotter);
    assert_eq!(states(&m, "payments"), vec![("forced_open", 1.0)]);
    registry.force_closed("payments").unwrap();
    let m = read(&snapshotter);
    assert_eq!(states(&m, "payments"), vec![("forced_closed", 1.0)]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn durations_are_measured_in_seconds() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let svc = metrics::with_local_recorder(&recorder, || {
        ServiceBuilder::new()
            .layer(MetricsLayer::new("slow"))
            .service_fn(|()| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok::<_, BoxError>(())
            })
    });
    svc.oneshot(()).await.unwrap();
    let m = read(&snapshotter);
    match m.get("bulwark_call_duration_seconds{name=slow,outcome=success}") {
        Some(DebugValue::Histogram(v)) => assert_eq!(v[0].into_inner(), 1.5),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn durations_can_be_turned_off_and_counts_stay() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let svc = metrics::with_local_recorder(&recorder, || {
        ServiceBuilder::new()
            .layer(MetricsLayer::new("untimed").durations(false))
            .service_fn(|()| async { Ok::<_, BoxError>(()) })
    });
    svc.oneshot(()).await.unwrap();
    let m = read(&snapshotter);
    assert_eq!(
        counter(&m, "bulwark_calls_total{name=untimed,outcome=success}"),
        1
    );
    assert_eq!(
        histogram_len(
            &m,
            "bulwark_call_duration_seconds{name=untimed,outcome=success}"
        ),
        0
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_give_ups_and_budget_denials() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let registry = Registry::new();
    let (plenty, starved) = metrics::with_local_recorder(&recorder, || {
        let failing = tower::service_fn(|()| async { Err::<(), BoxError>("boom".into()) });
        let plenty = ServiceBuilder::new()
            .layer(
                RetryLayer::new()
                    .max_attempts(3)
                    .backoff(BackoffPolicy::constant(Duration::from_millis(10)))
                    .budget(RetryBudget::unlimited())
                    .on_event(RetryMetrics::new("search")),
            )
            .service(failing);
        // A budget with no floor and no traffic allows no retry.
        let empty = registry.retry_budget(
            "orders",
            RetryBudget::ratio(0.0, 0, Duration::from_secs(10)).unwrap(),
        );
        let starved = ServiceBuilder::new()
            .layer(
                RetryLayer::new()
                    .max_attempts(3)
                    .budget(empty)
                    .on_event(RetryMetrics::new("orders")),
            )
            .service(failing);
        (plenty, starved)
    });
    plenty.oneshot(()).await.unwrap_err();
    starved.oneshot(()).await.unwrap_err();
    registry.update_gauges();

    let m = read(&snapshotter);
    assert_eq!(counter(&m, "bulwark_retries_total{name=search}"), 2);
    assert_eq!(
        counter(
            &m,
            "bulwark_retry_gave_up_total{name=search,reason=attempts_exhausted}"
        ),
        1
    );
    assert_eq!(
        counter(&m, "bulwark_retry_budget_denied_total{name=search}"),
        0
    );
    assert_eq!(counter(&m, "bulwark_retries_total{name=orders}"), 0);
    assert_eq!(
        counter(
            &m,
            "bulwark_retry_gave_up_total{name=orders,reason=budget_exhausted}"
        ),
        1
    );
    assert_eq!(
        counter(&m, "bulwark_retry_budget_denied_total{name=orders}"),
        1
    );
    assert_eq!(
        gauge(&m, "bulwark_retry_budget_available{name=orders}"),
        0.0
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_retry_refused_by_an_open_breaker_is_a_give_up_with_its_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let svc = metrics::with_local_recorder(&recorder, || {
        // The first failure opens the breaker below, which refuses the retry.
        let breaker = Breaker::builder().consecutive_failures(1).build().unwrap();
        ServiceBuilder::new()
            .layer(
                RetryLayer::new()
                    .max_attempts(3)
                    .backoff(BackoffPolicy::constant(Duration::from_millis(10)))
                    .budget(RetryBudget::unlimited())
                    .on_event(RetryMetrics::new("billing")),
            )
            .layer(CircuitBreakerLayer::new(breaker))
            .service_fn(|()| async { Err::<(), BoxError>("boom".into()) })
    });
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(
        err.to_string().contains("last upstream error: boom"),
        "{err}"
    );
    let m = read(&snapshotter);
    assert_eq!(counter(&m, "bulwark_retries_total{name=billing}"), 1);
    assert_eq!(
        counter(
            &m,
            "bulwark_retry_gave_up_total{name=billing,reason=rejected}"
        ),
        1
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn timeouts_bulkheads_and_fallbacks() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let registry = Registry::new();
    let (timed, mut limited, fallback) = metrics::with_local_recorder(&recorder, || {
        let sleeper = tower::service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        });
        let timed = ServiceBuilder::new()
            .layer(TimeoutLayer::new(Duration::from_millis(100)).on_event(TimeoutMetrics::new("t")))
            .service(sleeper);
        let limited = ServiceBuilder::new()
            .layer(registry.bulkhead("db", BulkheadLayer::builder().max_concurrent(1)))
            .service(sleeper);
        let fallback = ServiceBuilder::new()
            .layer(FallbackLayer::value(7u64).on_event(FallbackMetrics::new("f")))
            .service_fn(|_: u64| async { Err::<u64, BoxError>("boom".into()) });
        (timed, limited, fallback)
    });

    timed.oneshot(1_000).await.unwrap_err();
    let held = limited.ready().await.unwrap().call(1_000);
    limited.ready().await.unwrap().call(1).await.unwrap_err();
    registry.update_gauges();
    assert_eq!(fallback.oneshot(1).await.unwrap(), 7);

    let m = read(&snapshotter);
    assert_eq!(
        counter(&m, "bulwark_timeouts_total{limit=request,name=t}"),
        1
    );
    assert_eq!(
        counter(&m, "bulwark_timeouts_total{limit=readiness,name=t}"),
        0
    );
    assert_eq!(
        counter(
            &m,
            "bulwark_bulkhead_rejected_total{name=db,reason=at_capacity}"
        ),
        1
    );
    assert_eq!(gauge(&m, "bulwark_bulkhead_in_flight{name=db}"), 1.0);
    assert_eq!(gauge(&m, "bulwark_bulkhead_queued{name=db}"), 0.0);
    assert_eq!(gauge(&m, "bulwark_bulkhead_limit{name=db}"), 1.0);
    assert_eq!(
        counter(&m, "bulwark_fallbacks_total{name=f,outcome=failure}"),
        1
    );
    assert_eq!(counter(&m, "bulwark_fallback_failures_total{name=f}"), 0);

    held.await.unwrap();
    registry.update_gauges();
    let m = read(&snapshotter);
    assert_eq!(gauge(&m, "bulwark_bulkhead_in_flight{name=db}"), 0.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_breakers_are_labelled_by_set_not_key() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let registry = Registry::new();
    let keyed = metrics::with_local_recorder(&recorder, || {
        registry
            .keyed_breakers(
                "hosts",
                Breaker::builder().consecutive_failures(1),
                10,
                None,
            )
            .unwrap()
    });
    let a = keyed.get_or_create(&"a.example".to_owned());
    keyed.get_or_create(&"b.example".to_owned());
    a.call_sync(|| Err::<(), _>("down")).unwrap_err();
    a.call_sync(|| Ok::<_, ()>(())).unwrap_err();
    registry.update_gauges();
    let m = read(&snapshotter);
    assert_eq!(
        counter(&m, "bulwark_breaker_transitions_total{name=hosts,to=open}"),
        1
    );
    assert_eq!(counter(&m, "bulwark_breaker_rejected_total{name=hosts}"), 1);
    assert_eq!(gauge(&m, "bulwark_keyed_breaker_keys{name=hosts}"), 2.0);
    assert_eq!(
        gauge(&m, "bulwark_keyed_breaker_open_keys{name=hosts}"),
        1.0
    );
    assert!(m.keys().all(|k| !k.contains("a.example")));
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_recorder_everything_still_works() {
    let registry = Registry::new();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::new("quiet"))
        .layer(CircuitBreakerLayer::new(
            registry.breaker("quiet", Breaker::builder()).unwrap(),
        ))
        .service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
    assert_eq!(svc.oneshot(1).await.unwrap(), 2);
    registry.update_gauges();
}

/// gRPC streams judged at their end: the trailers' status, a broken
/// stream, a stream the client cancels (not a failure).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn at_body_end_judges_streams_when_they_end() {
    use bulwark_http::metrics::BodyMetricsLayer;
    use bulwark_http::GrpcClassifier;
    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full};
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Plays its frames, then ends (or, if `hang`, waits for ever).
    struct Scripted {
        frames: VecDeque<Result<http_body::Frame<Bytes>, BoxError>>,
        hang: bool,
    }
    impl http_body::Body for Scripted {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
            match self.frames.pop_front() {
                Some(f) => Poll::Ready(Some(f)),
                None if self.hang => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }
    let frame = || Ok(http_body::Frame::data(Bytes::from_static(b"msg")));

    type B = BoxBody<Bytes, BoxError>;
    let body = move |path: &str| -> B {
        let msg = Full::new(Bytes::from_static(b"msg")).map_err(|e| match e {});
        let trailers = |code: &'static str| {
            let mut t = http::HeaderMap::new();
            t.insert("grpc-status", code.parse().unwrap());
            async move { Some(Ok(t)) }
        };
        match path {
            "/ok" => msg.with_trailers(trailers("0")).boxed(),
            "/unavailable" => msg.with_trailers(trailers("14")).boxed(),
            // One message, then the stream breaks.
            "/broken" => Scripted {
                frames: VecDeque::from([frame(), Err("stream reset".into())]),
                hang: false,
            }
            .boxed(),
            // One message, then nothing for ever.
            _ => Scripted {
                frames: VecDeque::from([frame()]),
                hang: true,
            }
            .boxed(),
        }
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let svc = metrics::with_local_recorder(&recorder, || {
        ServiceBuilder::new()
            .layer(BodyMetricsLayer::new(
                MetricsLayer::new("watch").classifier(GrpcClassifier::new()),
            ))
            .service_fn(move |req: http::Request<()>| {
                let res = http::Response::new(body(req.uri().path()));
                async move { Ok::<_, BoxError>(res) }
            })
    });
    let call = |path: &'static str| {
        svc.clone()
            .oneshot(http::Request::post(path).body(()).unwrap())
    };
    for path in ["/ok", "/unavailable", "/broken"] {
        let res = call(path).await.unwrap();
        let _ = res.into_body().collect().await;
    }
    // The client reads one message and cancels.
    let mut res = Box::pin(call("/hang").await.unwrap().into_body());
    assert!(res.frame().await.unwrap().unwrap().is_data());
    // (Each snapshot of the debugging recorder drains its counters.)
    let m = read(&snapshotter);
    for (outcome, n) in [("success", 1), ("failure", 2), ("ignored", 0)] {
        assert_eq!(
            counter(
                &m,
                &format!("bulwark_calls_total{{name=watch,outcome={outcome}}}")
            ),
            n,
            "{outcome}: the open stream is not judged yet"
        );
    }
    drop(res);
    let m = read(&snapshotter);
    assert_eq!(
        counter(&m, "bulwark_calls_total{name=watch,outcome=ignored}"),
        1,
        "a cancelled stream is neither a success nor a failure"
    );
    assert_eq!(
        counter(&m, "bulwark_calls_total{name=watch,outcome=failure}"),
        0
    );
}
