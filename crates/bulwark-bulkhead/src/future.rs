//! The [`ResponseFuture`] of the [`Bulkhead`](crate::Bulkhead) service.

use crate::error::BulkheadFull;
use crate::limiter::Permit;
use bulwark_core::error::is_rejection;
use bulwark_core::BoxError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// The response future of [`Bulkhead`](crate::Bulkhead).
    ///
    /// It holds the call's permit and gives it back when the inner future
    /// completes, or when it is dropped. A rejected call is an immediately
    /// ready [`BulkheadFull`] error.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            response: F,
            permit: Option<Permit>,
        },
        Rejected {
            error: Option<BulkheadFull>,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn called(response: F, permit: Permit) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                response,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(error: BulkheadFull) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { response, permit } => {
                let result = match response.poll(cx) {
                    Poll::Ready(result) => result.map_err(Into::into),
                    Poll::Pending => return Poll::Pending,
                };
                if let Some(permit) = permit.take() {
                    // A rejection from further in says nothing about the
                    // upstream: no sample.
                    let dropped = match &result {
                        Ok(_) => Some(false),
                        Err(e) if is_rejection(&**e) => None,
                        Err(_) => Some(true),
                    };
                    permit.complete(dropped);
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
