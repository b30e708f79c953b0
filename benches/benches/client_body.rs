//! What covering the body costs on the HTTP client path (issue 15): the
//! head-only layers against the ones that carry a deadline and a verdict
//! into the body, over the same no-op HTTP service whose answer has a
//! one-chunk body, each call read to the end of its body, in the same run.
//!
//! - timeout: the timeout crate's `Timeout` (head only) against
//!   `ResponseTimeoutLayer` (head and body);
//! - breaker: the keyed head breaker (`host_breaker_layer`) against the
//!   `BodyBreakerLayer` (verdict at the end of the body);
//! - stack: the client stack's layers as they were composed before (total
//!   `Timeout`, `Retry`, head breaker, attempt `Timeout`, `Bulkhead`)
//!   against today's `ClientStack::new()`.
//!
//! Run: `cargo bench -p bulwark-benches --bench client_body`

use bulwark_benches::{keep, Counting, Group, INSTRUMENTED_SYSTEM};
use bulwark_breaker::Breaker;
use bulwark_bulkhead::BulkheadLayer;
use bulwark_http::breaker::{host_breaker_layer, BodyBreakerLayer};
use bulwark_http::deadline::{CarriedDeadline, DeadlineLayer, PropagateDeadlineLayer};
use bulwark_http::response_timeout::ResponseTimeoutLayer;
use bulwark_http::{ClientStack, HttpClassifier, HttpReplay, ServerPushback};
use bulwark_retry::RetryLayer;
use bulwark_timeout::TimeoutLayer;
use bytes::Bytes;
use http_body::Body;
use http_body_util::Full;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceBuilder};

#[global_allocator]
static GLOBAL: Counting = &INSTRUMENTED_SYSTEM;

/// An HTTP service answering 200 with a one-chunk body, at once.
#[derive(Clone, Copy, Debug)]
struct HttpNoop;

impl Service<http::Request<()>> for HttpNoop {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            b"ok",
        )))))
    }
}

/// One call, polled by hand, and its body read to the end.
#[inline]
fn call_and_read<S, B>(svc: &mut S, req: http::Request<()>) -> usize
where
    S: Service<http::Request<()>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let waker = futures_util::task::noop_waker_ref();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let fut = pin!(svc.call(req));
    let res = match fut.poll(&mut cx) {
        Poll::Ready(r) => r.expect("answers"),
        Poll::Pending => panic!("benchmarked future was not ready at once"),
    };
    let mut body = pin!(res.into_body());
    let mut frames = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(_))) => frames += 1,
            Poll::Ready(None) => return frames,
            _ => panic!("the body is ready at once and does not fail"),
        }
    }
}

fn req() -> http::Request<()> {
    http::Request::get("http://api.local/users")
        .body(())
        .expect("a valid request")
}

fn main() {
    let rt = bulwark_benches::timer_runtime();
    let _enter = rt.enter();
    let ten = Duration::from_secs(10);
    let breakers = || {
        Breaker::builder()
            .name("http")
            .keyed()
            .max_keys(1024)
            .build::<http::uri::Authority>()
            .expect("valid")
    };

    let mut bare = HttpNoop;
    let mut head_timeout = ServiceBuilder::new()
        .layer(TimeoutLayer::new(ten))
        .service(HttpNoop);
    let mut body_timeout = ServiceBuilder::new()
        .layer(ResponseTimeoutLayer::total(Some(ten)))
        .service(HttpNoop);
    let mut head_breaker = ServiceBuilder::new()
        .layer(host_breaker_layer(breakers(), HttpClassifier::new()))
        .service(HttpNoop);
    let mut body_breaker = ServiceBuilder::new()
        .layer(BodyBreakerLayer::new(breakers(), HttpClassifier::new()))
        .service(HttpNoop);
    // The client stack as `ClientStack::build` composed it before issue
    // 15's body coverage, layer for layer.
    let mut before = ServiceBuilder::new()
        .layer(TimeoutLayer::new(ten))
        .layer(DeadlineLayer::new(Some(ten)))
        .layer(
            RetryLayer::new()
                .max_attempts(3)
                .classifier(HttpClassifier::new())
                .pushback(ServerPushback::new())
                .replay(HttpReplay::new())
                .deadline_from(CarriedDeadline)
                .deadline(ten),
        )
        .layer(
            PropagateDeadlineLayer::new()
                .grpc_only()
                .max(Duration::from_secs(5)),
        )
        .layer(host_breaker_layer(breakers(), HttpClassifier::new()))
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .layer(BulkheadLayer::new(100))
        .service(HttpNoop);
    let mut after = ServiceBuilder::new()
        .layer(ClientStack::new().build().expect("valid"))
        .service(HttpNoop);

    Group::new("HTTP client path, body read to the end")
        .bench("bare no-op HTTP service (baseline)", || {
            keep(call_and_read(&mut bare, req()))
        })
        .bench("timeout: Timeout (head only)", || {
            keep(call_and_read(&mut head_timeout, req()))
        })
        .bench("timeout: ResponseTimeoutLayer (head and body)", || {
            keep(call_and_read(&mut body_timeout, req()))
        })
        .bench("breaker: host_breaker_layer (head)", || {
            keep(call_and_read(&mut head_breaker, req()))
        })
        .bench("breaker: BodyBreakerLayer (end of body)", || {
            keep(call_and_read(&mut body_breaker, req()))
        })
        .bench("stack: the layers composed as before", || {
            keep(call_and_read(&mut before, req()))
        })
        .bench("stack: ClientStack::new() (body covered)", || {
            keep(call_and_read(&mut after, req()))
        })
        .run(GLOBAL);
    println!(
        "\nbytes of a response: bare {}, before {}, ClientStack {}",
        response_size(&bare),
        response_size(&before),
        response_size(&after)
    );
}

/// The size of the response `svc` answers with (moved through every layer).
fn response_size<S, B>(_: &S) -> usize
where
    S: Service<http::Request<()>, Response = http::Response<B>>,
{
    std::mem::size_of::<http::Response<B>>()
}
