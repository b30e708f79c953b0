//! Ready stacks: the baselines every simulation should include, and
//! Bulwark's recommended stacks.
//!
//! The baselines use the settings the independent harness used for every
//! peer (3 attempts, exponential backoff from 100 ms, a 500 ms attempt
//! timeout, 100 in flight), so their numbers compare with its table:
//!
//! - [`none()`]: the upstream as it is. Its goodput is the upstream's own
//!   success rate within the caller's deadline, and its amplification is
//!   exactly 1.
//! - [`tower()`]: tower 0.5's own layers in the same order: retry (a policy
//!   retrying every error, with `TpsBudget` at 20% + 10/s over 10 s and
//!   tower's exponential backoff), timeout, load shedding over a
//!   concurrency limit.

use crate::run::{Stack, StackContext};
use crate::upstream::{SimRequest, SimResponse, UpstreamError};
use bulwark_core::error::find;
use bulwark_core::{BoxError, Outcome};
use bulwark_retry::policy::PushbackHint;
use bulwark_retry::replay::Replay;
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tower::retry::backoff::{
    Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff,
};
use tower::retry::budget::{Budget, TpsBudget};
use tower::ServiceBuilder;

/// No resilience: the upstream as it is.
pub fn none() -> Stack {
    Stack::new("no resilience", |upstream, _| upstream)
}

/// tower 0.5's own layers (see the [module docs](self)).
pub fn tower() -> Stack {
    Stack::new("tower", |upstream, ctx: &mut StackContext| {
        let rng = SeededRng(Arc::new(Mutex::new(fastrand::Rng::with_seed(ctx.seed()))));
        let backoff = ExponentialBackoffMaker::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            1.0,
            rng,
        )
        .expect("a valid backoff");
        let policy = TowerPolicy {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            backoff: backoff.clone(),
            current: None,
            attempts: 1,
        };
        ServiceBuilder::new()
            .retry(policy)
            .timeout(Duration::from_millis(500))
            .load_shed()
            .concurrency_limit(100)
            .service(upstream)
    })
}

/// A random source for tower's backoff jitter, seeded so runs repeat.
#[derive(Clone)]
struct SeededRng(Arc<Mutex<fastrand::Rng>>);

impl tower::util::rng::Rng for SeededRng {
    fn next_u64(&mut self) -> u64 {
        self.0.lock().u64(..)
    }
}

/// Retries every error, as a typical tower user writes it.
#[derive(Clone)]
struct TowerPolicy {
    budget: Arc<TpsBudget>,
    backoff: ExponentialBackoffMaker<SeededRng>,
    current: Option<ExponentialBackoff<SeededRng>>,
    attempts: u32,
}

impl<E> tower::retry::Policy<SimRequest, SimResponse, E> for TowerPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _: &mut SimRequest,
        result: &mut Result<SimResponse, E>,
    ) -> Option<Self::Future> {
        if result.is_ok() || self.attempts >= 3 || !self.budget.withdraw() {
            return None;
        }
        self.attempts += 1;
        let sleep = self
            .current
            .get_or_insert_with(|| self.backoff.make_backoff())
            .next_backoff();
        Some(Box::pin(sleep))
    }

    fn clone_request(&mut self, req: &SimRequest) -> Option<SimRequest> {
        if self.attempts == 1 {
            // On the service's policy, once per request (the future gets a
            // clone of it): count the request.
            self.budget.deposit();
        }
        req.idempotent.then_some(*req)
    }
}

/// The outcome of a simulated answer: rate-limited answers are
/// [`Throttled`](Outcome::Throttled), other errors as
/// [`Outcome::of_error`] says.
pub fn classify(result: &Result<SimResponse, BoxError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(e) if find::<UpstreamError>(&**e).is_some_and(UpstreamError::is_rate_limited) => {
            Outcome::Throttled
        }
        Err(e) => Outcome::of_error(e),
    }
}

/// The pushback of a simulated answer: the rate-limited answer's
/// retry-after.
pub fn pushback(result: &Result<SimResponse, BoxError>) -> PushbackHint {
    match result {
        Err(e) => find::<UpstreamError>(&**e)
            .and_then(UpstreamError::retry_after)
            .map_or(PushbackHint::None, PushbackHint::After),
        Ok(_) => PushbackHint::None,
    }
}

/// Copies only idempotent requests for retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdempotentOnly;

impl Replay<SimRequest> for IdempotentOnly {
    fn replay(&self, request: &SimRequest) -> Option<SimRequest> {
        request.idempotent.then_some(*request)
    }
}

/// Bulwark's layers stacked by hand in the README's order with the settings
/// every peer got (3 attempts, 500 ms attempt timeout, bulkhead of 100) and
/// every other setting at its default: what a new user writes from the
/// quick start.
pub fn bulwark_layers() -> Stack {
    Stack::new("bulwark layers", |upstream, ctx: &mut StackContext| {
        let breaker = bulwark_breaker::Breaker::builder()
            .name("sim")
            .seed(ctx.seed())
            .build()
            .expect("the default breaker is valid");
        ctx.watch_breaker("breaker", &breaker);
        ServiceBuilder::new()
            .layer(
                bulwark_retry::RetryLayer::new()
                    .classifier(classify)
                    .pushback(pushback)
                    .replay(IdempotentOnly)
                    .seed(ctx.seed()),
            )
            .layer(bulwark_breaker::CircuitBreakerLayer::new(breaker).classifier(classify))
            .layer(bulwark_timeout::TimeoutLayer::new(Duration::from_millis(
                500,
            )))
            .layer(bulwark_bulkhead::BulkheadLayer::new(100))
            .service(upstream)
    })
}

/// Bulwark's HTTP [`ClientStack`](bulwark_http::ClientStack) with its
/// defaults and the caller's deadline as its total timeout, over the
/// simulated upstream speaking HTTP.
pub fn bulwark_http() -> Stack {
    Stack::http("bulwark http", |upstream, ctx: &mut StackContext| {
        let layer = bulwark_http::ClientStack::new()
            .total_timeout(ctx.scenario().deadline)
            .seed(ctx.seed())
            .build()
            .expect("the default client stack is valid");
        if let Some(breakers) = layer.breakers() {
            ctx.watch_keyed_breakers("breaker (worst host)", breakers);
        }
        ServiceBuilder::new().layer(layer).service(upstream)
    })
}

/// Bulwark's recommended client stack ([`bulwark::stack::ClientStack`](bulwark_stack::ClientStack)) with
/// its defaults, told the one thing a user must tell it: the caller's
/// deadline, as its total timeout. Retries only idempotent requests, keys
/// its breakers by host, and reads the rate-limited answers' retry-after.
pub fn bulwark() -> Stack {
    recommended("bulwark", false)
}

/// [`bulwark()`] with its bulkhead's limit moved by
/// [`Gradient2`](bulwark_bulkhead::adaptive::Gradient2) (from 20, at most
/// 100) instead of fixed at 100: how an adaptive limit compares with the
/// recommended fixed one, scenario by scenario.
pub fn bulwark_adaptive() -> Stack {
    recommended("bulwark, adaptive", true)
}

/// The recommended stack told what [`bulwark()`] tells it, its bulkhead
/// fixed or `adaptive`.
fn recommended(name: &'static str, adaptive: bool) -> Stack {
    Stack::new(name, move |upstream, ctx: &mut StackContext| {
        let mut stack = bulwark_stack::ClientStack::new()
            .name("sim")
            .total_timeout(ctx.scenario().deadline)
            .classifier(classify)
            .pushback(pushback)
            .replay(IdempotentOnly)
            .seed(ctx.seed())
            .breaker_per_key(|req: &SimRequest| req.host, 1024);
        if adaptive {
            stack = stack.bulkhead(|b| {
                b.max_concurrent(100)
                    .adaptive(bulwark_bulkhead::adaptive::Gradient2::default())
            });
        }
        let layer = stack.build().expect("the stack is valid");
        if let (false, Some(breakers)) = (adaptive, layer.breaker()) {
            ctx.watch_keyed_breakers("breaker (worst host)", breakers.breakers());
        }
        ServiceBuilder::new().layer(layer).service(upstream)
    })
}

/// The baselines and Bulwark's recommended stacks, in report order: what
/// `cargo run --example simulate` runs.
pub fn recommended_with_baselines() -> Vec<Stack> {
    vec![none(), tower(), bulwark_layers(), bulwark(), bulwark_http()]
}

/// Bulwark's HTTP [`ServerStack`](bulwark_http::ServerStack) with its
/// defaults, run by the upstream's own server in front of it; the callers
/// have no resilience of their own, so what it changes is the server's
/// protection alone.
pub fn server() -> Stack {
    Stack::http("server stack", |upstream, _: &mut StackContext| {
        let layer = bulwark_http::ServerStack::new()
            .build()
            .expect("the default server stack is valid");
        ServiceBuilder::new().layer(layer).service(upstream)
    })
}

/// [`server()`] with its bulkhead's limit moved by
/// [`Gradient2`](bulwark_bulkhead::adaptive::Gradient2) from 16 (at most
/// 512) instead of fixed at 512.
pub fn server_adaptive() -> Stack {
    Stack::http(
        "server stack, adaptive",
        |upstream, _: &mut StackContext| {
            let layer = bulwark_http::ServerStack::new()
                .bulkhead(|b| b.adaptive(bulwark_bulkhead::adaptive::Gradient2::new(16)))
                .build()
                .expect("a valid server stack");
            ServiceBuilder::new().layer(layer).service(upstream)
        },
    )
}

/// The server stacks and the baseline they are judged against: what
/// `cargo run --example simulate -- --servers` runs.
pub fn servers_with_baseline() -> Vec<Stack> {
    vec![none(), server(), server_adaptive()]
}

/// The adaptive limits next to the fixed ones they would replace, client
/// and server, and the baseline: what `cargo run --example simulate --
/// --adaptive` runs.
pub fn adaptive_with_baselines() -> Vec<Stack> {
    vec![
        none(),
        bulwark(),
        bulwark_adaptive(),
        server(),
        server_adaptive(),
    ]
}
