//! The [`ResponseFuture`] of the [`AdaptiveThrottle`](crate::AdaptiveThrottle)
//! service.

use crate::error::ThrottledLocally;
use crate::state::{Ended, State};
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pin_project! {
    /// The response future of [`AdaptiveThrottle`](crate::AdaptiveThrottle).
    ///
    /// A call that was sent counts when it ends (as the classifier `C`
    /// says), or as a request not accepted when the future is dropped first.
    /// A shed call is an immediately ready [`ThrottledLocally`] error.
    pub struct ResponseFuture<F, C = DefaultClassifier> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Sent {
            #[pin]
            response: F,
            tracker: Option<Tracker>,
            classifier: C,
        },
        Shed {
            error: Option<ThrottledLocally>,
        },
    }
}

/// Counts a sent call once: when it ends, or on drop as not accepted.
pub(crate) struct Tracker {
    state: Option<Arc<State>>,
}

impl Tracker {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Tracker { state: Some(state) }
    }

    fn end(mut self, ended: Ended) {
        if let Some(state) = self.state.take() {
            state.end(ended);
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // Given up on before it ended (a timeout further out): the upstream
        // did not accept it in time.
        if let Some(state) = self.state.take() {
            state.end(Ended::NotAccepted);
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn sent(response: F, tracker: Tracker, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Sent {
                response,
                tracker: Some(tracker),
                classifier,
            },
        }
    }

    pub(crate) fn shed(error: ThrottledLocally) -> Self {
        ResponseFuture {
            kind: Kind::Shed { error: Some(error) },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Sent { .. } => "sent",
            Kind::Shed { .. } => "shed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

/// What an outcome means to the counts.
fn ended(outcome: Outcome) -> Ended {
    match outcome {
        // An `Ignored` answer (a 404, an invalid argument) is the upstream
        // working: it accepted the request.
        Outcome::Success | Outcome::Ignored => Ended::Accepted,
        Outcome::Failure | Outcome::Throttled => Ended::NotAccepted,
        Outcome::Rejected => Ended::Uncounted,
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Sent {
                response,
                tracker,
                classifier,
            } => {
                let result = match response.poll(cx) {
                    Poll::Ready(result) => result.map_err(Into::into),
                    Poll::Pending => return Poll::Pending,
                };
                if let Some(tracker) = tracker.take() {
                    tracker.end(ended(classifier.classify(&result)));
                }
                Poll::Ready(result)
            }
            KindProj::Shed { error } => {
                // Polled again after it completed (a caller's bug): the same
                // answer rather than a panic.
                let error = error.take().unwrap_or_else(|| ThrottledLocally::new(1.0));
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
