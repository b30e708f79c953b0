//! [`ResponseFuture`]: one call through [`Retry`](crate::Retry), all its
//! attempts included.

use crate::policy::Pushback;
use crate::replay::Replay;
use crate::service::{CallState, Shared};
use bulwark_core::backoff::Delays;
use bulwark_core::clock::Instant;
use bulwark_core::{BoxError, Classify};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::time::Sleep;
use tower_service::Service;

pin_project! {
    /// The future of [`Retry`](crate::Retry): runs attempts until one is not
    /// retried, then returns its result as it was.
    pub struct ResponseFuture<S, Req, C, P, R>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        // The copy of the request for the next attempt.
        request: Option<Req>,
        shared: Arc<Shared<C, P, R>>,
        attempts: u32,
        delays: Option<Delays>,
        started: Option<Instant>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // Waiting out the delay before the next attempt.
        Waiting { #[pin] sleep: Sleep },
        // Waiting for the service to be ready for the next attempt.
        Ready,
    }
}

impl<S, Req, C, P, R> ResponseFuture<S, Req, C, P, R>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        request: Option<Req>,
        shared: Arc<Shared<C, P, R>>,
        started: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            service,
            request,
            shared,
            attempts: 1,
            delays: None,
            started,
        }
    }
}

impl<S, Req, C, P, R> Future for ResponseFuture<S, Req, C, P, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    P: Pushback<S::Response>,
    R: Replay<Req>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    let shared = &**this.shared;
                    let outcome = shared.classifier.classify(&result);
                    shared.budget.record(outcome);
                    let call = CallState {
                        attempts: *this.attempts,
                        has_copy: this.request.is_some(),
                        delays: this.delays,
                        started: *this.started,
                    };
                    match shared.decide(&result, outcome, call) {
                        None => return Poll::Ready(result),
                        Some(delay) if delay.is_zero() => this.state.set(State::Ready),
                        Some(delay) => this.state.set(State::Waiting {
                            sleep: tokio::time::sleep(delay),
                        }),
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    // Readiness is polled again before every attempt.
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let request = this
                        .request
                        .take()
                        .expect("a retry is only scheduled with a copy of the request");
                    *this.attempts += 1;
                    if *this.attempts < this.shared.config.max_attempts {
                        *this.request = this.shared.replay.replay(&request);
                    }
                    let future = this.service.call(request);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

impl<S, Req, C, P, R> fmt::Debug for ResponseFuture<S, Req, C, P, R>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting",
            State::Ready => "ready",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
            .finish()
    }
}
