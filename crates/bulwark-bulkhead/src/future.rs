//! The [`ResponseFuture`] of the [`Bulkhead`](crate::Bulkhead) service.

use crate::adaptive::SampleKind;
use crate::error::BulkheadFull;
use crate::limiter::Permit;
use bulwark_core::{BoxError, Classify, DefaultClassifier, Outcome};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// The response future of [`Bulkhead`](crate::Bulkhead).
    ///
    /// It holds the call's permit and gives it back when the inner future
    /// completes, or when it is dropped. A rejected call is an immediately
    /// ready [`BulkheadFull`] error. Under an adaptive limit, the classifier
    /// `C` tells the limit what the call's result means (see
    /// [`adaptive`](crate::adaptive)).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C = DefaultClassifier> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Called {
            #[pin]
            response: F,
            permit: Option<Permit>,
            classifier: C,
        },
        Rejected {
            error: Option<BulkheadFull>,
        },
    }
}

impl<F> ResponseFuture<F, DefaultClassifier> {
    #[inline]
    pub(crate) fn called(response: F, permit: Permit) -> Self {
        Self::classified(response, permit, DefaultClassifier)
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn classified(response: F, permit: Permit, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                response,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(error: BulkheadFull) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

/// What an outcome tells an adaptive limit: only failures are congestion,
/// and only successes and failures measure the upstream.
#[inline]
fn sample_kind(outcome: Outcome) -> Option<SampleKind> {
    match outcome {
        Outcome::Success => Some(SampleKind::Success),
        Outcome::Failure => Some(SampleKind::Dropped),
        Outcome::Throttled | Outcome::Rejected | Outcome::Ignored => None,
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
            KindProj::Called {
                response,
                permit,
                classifier,
            } => {
                let result = match response.poll(cx) {
                    Poll::Ready(result) => result.map_err(Into::into),
                    Poll::Pending => return Poll::Pending,
                };
                if let Some(permit) = permit.take() {
                    // Static limits take no sample: classify only when timed.
                    let kind = if permit.is_timed() {
                        sample_kind(classifier.classify(&result))
                    } else {
                        None
                    };
                    permit.complete(kind);
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => match error.take() {
                Some(error) => Poll::Ready(Err(Box::new(error))),
                // Polled again after it completed: a caller's bug; say so
                // rather than panic.
                None => Poll::Ready(Err(Box::new(BulkheadFull::at_capacity()))),
            },
        }
    }
}
