//! A Bulwark client in front of a Bulwark server that sheds load, on
//! 127.0.0.1: the server's shed answers say "full, come back in a moment"
//! (`Retry-After` and `bulwark-shed: 1`), so the default `ClientStack`
//! judges them throttled: its breaker never counts them, and its retries
//! (after the `Retry-After`) turn them into good answers. The pair does at
//! least as well as a plain hyper client against the same server.
//!
//! Each wave sends twice the server's capacity at once. Handlers wait on a
//! gate that opens only once the server has admitted its capacity and shed
//! the rest, so what is admitted and what is shed does not depend on machine
//! speed; real time is used only for the IO and the 1 s `Retry-After`.

use axum::routing::get;
use axum::Router;
use bulwark::breaker::State;
use bulwark::http::classify::HttpClassifier;
use bulwark::http::{ClientStack, ServerStack, SHED_HEADER};
use bulwark::BoxError;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Requests the server runs at once.
const CAPACITY: usize = 4;
/// Waves of 2 × CAPACITY requests per client.
const WAVES: usize = 2;
/// No wave may take longer (the ClientStack's own total timeout is 10 s).
const WAVE_LIMIT: Duration = Duration::from_secs(30);

struct Server {
    url: String,
    /// Handlers entered so far.
    entered: watch::Receiver<usize>,
    /// Shed answers sent so far.
    shed: watch::Receiver<usize>,
    /// Opens the handlers' gate.
    gate: watch::Sender<bool>,
}

async fn serve() -> Server {
    let (entered_tx, entered) = watch::channel(0usize);
    let (shed_tx, shed) = watch::channel(0usize);
    let (gate, open) = watch::channel(false);
    let handler = move || {
        let (entered, mut open) = (entered_tx.clone(), open.clone());
        async move {
            entered.send_modify(|n| *n += 1);
            open.wait_for(|o| *o).await.unwrap();
            "done"
        }
    };
    let stack = ServerStack::new()
        .bulkhead(|b| b.max_concurrent(CAPACITY))
        .build()
        .unwrap();
    let count_shed = tower::util::MapResponseLayer::new(move |res: axum::response::Response| {
        if res.headers().contains_key(SHED_HEADER) {
            shed_tx.send_modify(|n| *n += 1);
        }
        res
    });
    let app = Router::new()
        .route("/", get(handler))
        .layer(stack)
        .layer(count_shed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        url: format!("http://{addr}/"),
        entered,
        shed,
        gate,
    }
}

fn plain() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What one client got over its waves.
#[derive(Debug, Default)]
struct Tally {
    good: usize,
    /// Shed answers the client got (a 503 or 429 with the marker).
    shed: usize,
    /// Anything else: errors, other statuses.
    other: Vec<String>,
}

/// Sends WAVES waves of 2 × CAPACITY concurrent GETs through `client`.
async fn waves<S, B>(server: &mut Server, client: S) -> Tally
where
    B: Send + 'static,
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    S::Future: Future<Output = Result<S::Response, S::Error>> + Send,
{
    let mut tally = Tally::default();
    for _ in 0..WAVES {
        let entered = *server.entered.borrow();
        let shed = *server.shed.borrow();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..2 * CAPACITY {
            let req = http::Request::get(server.url.as_str())
                .body(Empty::new())
                .unwrap();
            calls.spawn(client.clone().oneshot(req));
        }
        // The server admits CAPACITY (held at the gate) and sheds the rest.
        let admitted_and_shed = async {
            server
                .entered
                .wait_for(|n| *n >= entered + CAPACITY)
                .await
                .unwrap();
            server
                .shed
                .wait_for(|n| *n >= shed + CAPACITY)
                .await
                .unwrap();
        };
        tokio::time::timeout(WAVE_LIMIT, admitted_and_shed)
            .await
            .expect("the server admits its capacity and sheds the rest");
        server.gate.send_replace(true);
        let answers = tokio::time::timeout(WAVE_LIMIT, calls.join_all())
            .await
            .expect("every call of a wave ends");
        server.gate.send_replace(false);
        for answer in answers {
            match answer.map_err(Into::into) {
                Ok(res) if res.status() == StatusCode::OK => tally.good += 1,
                Ok(res) if res.headers().contains_key(SHED_HEADER) => {
                    assert_eq!(res.headers()["retry-after"], "1", "a shed answer says when");
                    tally.shed += 1;
                }
                Ok(res) => tally.other.push(res.status().to_string()),
                Err(e) => tally.other.push(e.to_string()),
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stack_and_a_shedding_server_do_not_collapse_together() {
    let mut server = serve().await;

    // A plain hyper client: what is shed stays shed, and says so.
    let baseline = waves(&mut server, plain()).await;
    assert_eq!(baseline.good, WAVES * CAPACITY, "{baseline:?}");
    assert_eq!(baseline.shed, WAVES * CAPACITY, "{baseline:?}");
    assert!(baseline.other.is_empty(), "{baseline:?}");

    // The default client stack: shed answers are throttling, retried after
    // their Retry-After, and the breaker never counts them.
    let layer = ClientStack::new().build().unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let stack = ServiceBuilder::new().layer(layer).service(plain());
    let paired = waves(&mut server, stack).await;
    assert!(paired.other.is_empty(), "{paired:?}");
    assert!(
        paired.good >= baseline.good,
        "the pair got {} good answers, a plain client {}",
        paired.good,
        baseline.good
    );
    let (_, breaker) = breakers.entries().pop().expect("the host's breaker");
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, State::Closed, "{snapshot:?}");
    assert_eq!(snapshot.consecutive_trips, 0, "{snapshot:?}");
    assert_eq!(
        snapshot.failures, 0,
        "shed answers are not failures: {snapshot:?}"
    );

    // The control: judged by status alone, the same answers count against
    // the host (as they did before the marker).
    let layer = ClientStack::new()
        .classifier(HttpClassifier::new().ignore_shed_marker())
        .build()
        .unwrap();
    let breakers = layer.breakers().unwrap().clone();
    let stack = ServiceBuilder::new().layer(layer).service(plain());
    let control = waves(&mut server, stack).await;
    let (_, breaker) = breakers.entries().pop().expect("the host's breaker");
    println!(
        "plain {baseline:?}\nclient stack {paired:?}\nwithout the marker {control:?}, {:?}",
        breaker.snapshot()
    );
    assert!(
        breaker.snapshot().failures >= 1 || breaker.state() != State::Closed,
        "without the marker, shed answers count as failures: {:?} {control:?}",
        breaker.snapshot()
    );
}
