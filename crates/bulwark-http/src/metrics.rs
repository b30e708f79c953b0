//! Metrics judged at the end of the response body (feature `metrics`):
//! [`BodyMetricsLayer`], bulwark-observe's `MetricsLayer` with the
//! end-of-body verdicts of [`verdict`](crate::verdict).

use crate::parts::ResponseBody;
use crate::verdict::{ClassifyBody, ClassifyEnd, VerdictSink, VerdictWrap};
use bulwark_core::clock::Instant;
use bulwark_core::{BoxError, Outcome};
use bulwark_observe::metrics::{CallRecorder, MetricsLayer};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// A [`MetricsLayer`] that judges each call when its response body ends,
/// with the end-of-body verdicts of the client stack's breaker (one
/// mechanism; see [`verdict`](crate::verdict)): a body that completes is
/// judged by its end (gRPC: the trailers' `grpc-status`), one that fails
/// mid-way is a failure, one the caller drops after starting to read it is
/// `ignored` (or as [`cancelled_as`](Self::cancelled_as) says). Durations
/// then cover the whole response. Takes an HTTP or gRPC classifier
/// (`HttpClassifier`, `GrpcClassifier`).
///
/// ```
/// use bulwark::http::metrics::BodyMetricsLayer;
/// use bulwark::http::GrpcClassifier;
/// use bulwark::observe::metrics::MetricsLayer;
///
/// // A tonic server: a stream that ends UNAVAILABLE in its trailers
/// // counts as a failure, a stream the client cancels as ignored.
/// let layer = BodyMetricsLayer::new(MetricsLayer::new("grpc-server").classifier(GrpcClassifier::new()));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct BodyMetricsLayer<C> {
    recorder: CallRecorder,
    classifier: C,
    durations: bool,
    cancelled: Option<Outcome>,
}

impl<C> BodyMetricsLayer<C> {
    /// Judges the calls of `layer` (its name, classifier and durations
    /// setting) at the end of their bodies.
    pub fn new(layer: MetricsLayer<C>) -> Self {
        let (recorder, classifier, durations) = layer.into_parts();
        BodyMetricsLayer {
            recorder,
            classifier,
            durations,
            cancelled: None,
        }
    }

    /// What a body the caller drops mid-way counts as (`None`, the
    /// default: `ignored`).
    pub fn cancelled_as(mut self, outcome: Option<Outcome>) -> Self {
        self.cancelled = outcome;
        self
    }
}

impl<C> fmt::Debug for BodyMetricsLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyMetricsLayer")
            .field("name", &self.recorder.name())
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

impl<S, C: Clone> Layer<S> for BodyMetricsLayer<C> {
    type Service = BodyMetrics<S, C>;

    fn layer(&self, inner: S) -> BodyMetrics<S, C> {
        BodyMetrics {
            inner,
            metrics: self.recorder.clone(),
            classifier: self.classifier.clone(),
            durations: self.durations,
            cancelled: self.cancelled,
        }
    }
}

/// The service of a [`BodyMetricsLayer`].
#[derive(Clone)]
pub struct BodyMetrics<S, C> {
    inner: S,
    metrics: CallRecorder,
    classifier: C,
    durations: bool,
    cancelled: Option<Outcome>,
}

impl<S, C> BodyMetrics<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, C> fmt::Debug for BodyMetrics<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyMetrics")
            .field("name", &self.metrics.name())
            .field("inner", &self.inner)
            .finish()
    }
}

/// Where a [`BodyMetrics`] call's verdict goes: its counters, and when
/// it started.
pub struct CallVerdict {
    metrics: CallRecorder,
    start: Option<Instant>,
}

impl fmt::Debug for CallVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallVerdict")
            .field("name", &self.metrics.name())
            .finish_non_exhaustive()
    }
}

impl VerdictSink for CallVerdict {
    fn record(self, outcome: Outcome, _trailers: Option<&http::HeaderMap>) {
        self.metrics.record(outcome, self.start);
    }

    /// Counted as `ignored`: neither a success nor a failure.
    fn cancel(self) {
        self.metrics.record(Outcome::Ignored, self.start);
    }
}

impl<S, C, Req, Res> Service<Req> for BodyMetrics<S, C>
where
    S: Service<Req, Response = Res>,
    S::Error: Into<BoxError>,
    C: ClassifyBody<Res>,
    Res: ResponseBody<VerdictWrap<<C as ClassifyEnd>::End, CallVerdict>>,
{
    type Response = Res::Output;
    type Error = BoxError;
    type Future = BodyResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        BodyResponseFuture {
            inner: self.inner.call(req),
            pending: Some((
                self.classifier.clone(),
                CallVerdict {
                    metrics: self.metrics.clone(),
                    start: self.durations.then(Instant::now),
                },
            )),
            cancelled: self.cancelled,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`BodyMetrics`].
    pub struct BodyResponseFuture<F, C> {
        #[pin]
        inner: F,
        pending: Option<(C, CallVerdict)>,
        cancelled: Option<Outcome>,
    }
}

impl<F, C> fmt::Debug for BodyResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, Res, E> Future for BodyResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: ClassifyBody<Res>,
    Res: ResponseBody<VerdictWrap<<C as ClassifyEnd>::End, CallVerdict>>,
{
    type Output = Result<Res::Output, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        let Some((classifier, sink)) = this.pending.take() else {
            return Poll::Ready(Err("metrics future polled after completion".into()));
        };
        Poll::Ready(match classifier.verdict_at_head(&result) {
            None if result.is_ok() => result.map(|res| {
                res.wrap_body(VerdictWrap::pending(
                    classifier.end_judge(),
                    sink,
                    *this.cancelled,
                ))
            }),
            head => {
                sink.record(head.unwrap_or(Outcome::Failure), None);
                result.map(|res| res.wrap_body(VerdictWrap::<<C as ClassifyEnd>::End, _>::judged()))
            }
        })
    }
}
