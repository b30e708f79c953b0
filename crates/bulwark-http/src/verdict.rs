//! End-of-body verdicts: one mechanism for HTTP and gRPC.
//!
//! A response head says how a call started, not how it ended: an HTTP body
//! can break off (a reset, a bad chunk, a body deadline), a gRPC stream
//! says its `grpc-status` in the trailers. A [`VerdictBody`] carries a
//! pending verdict from the head to the end of the body and hands it to a
//! [`VerdictSink`] (the breaker's permit, a metrics recorder) once it is
//! known. What the verdict is comes from the classifier ([`ClassifyBody`]
//! at the head, its [`ClassifyEnd::End`] at the end):
//!
//! | how the body ends | verdict |
//! |---|---|
//! | the head already decided ([`ClassifyBody::verdict_at_head`] is `Some`: a `5xx`, a trailers-only gRPC error, an `Err`) | the head's, at once |
//! | its end, with or without trailers | [`JudgeEnd::classify_end`]: HTTP success; gRPC the trailers' `grpc-status` |
//! | a frame fails (reset, broken connection, bad chunk, body deadline) | a failure |
//! | dropped before the caller polled it (it read the head only) | as its end without trailers (HTTP: success) |
//! | dropped after the caller started reading, before the end | neither: [`VerdictSink::cancel`] (the breaker gives a half-open probe slot back); or the outcome set with [`VerdictBody::cancelled_as`] |
//!
//! The second-to-last row keeps a caller that reads only the status from
//! skewing a breaker: if such answers counted for nothing, the breaker
//! would see only the failures (judged at the head) and trip on any.
//!
//! The per-host breaker of the [`ClientStack`](crate::ClientStack)
//! ([`BodyBreakerLayer`](crate::breaker::body::BodyBreakerLayer), for
//! HTTP and gRPC alike) and the `bulwark-observe` metrics layer for HTTP
//! use it.
//!
//! ```
//! use bulwark::Outcome;
//! use bulwark::http::verdict::{HttpEnd, VerdictBody, VerdictSink};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use std::sync::{Arc, Mutex};
//!
//! /// Keeps the verdict.
//! struct Keep(Arc<Mutex<Option<Outcome>>>);
//! impl VerdictSink for Keep {
//!     fn record(self, outcome: Outcome, _trailers: Option<&http::HeaderMap>) {
//!         *self.0.lock().unwrap() = Some(outcome);
//!     }
//!     fn cancel(self) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let seen = Arc::new(Mutex::new(None));
//! let body = VerdictBody::new(Full::new(Bytes::from("done")), HttpEnd, Keep(seen.clone()));
//! assert!(body.is_pending());
//! body.collect().await.unwrap();
//! assert_eq!(*seen.lock().unwrap(), Some(Outcome::Success));
//! # }
//! ```

use crate::classify::{GrpcClassifier, GrpcEnd, HttpClassifier};
use crate::parts::{ResponseParts, WrapBody};
use bulwark_core::{BoxError, Classify, Outcome};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The end-of-body half of a classifier: what judges a body that ended.
/// See the [module docs](self).
pub trait ClassifyEnd: Clone {
    /// What a pending body keeps to judge its end: small, since it travels
    /// with the body through every layer ([`HttpEnd`], zero bytes;
    /// [`GrpcEnd`], eight).
    type End: JudgeEnd;

    /// The judge of this classifier's bodies' ends.
    fn end_judge(&self) -> Self::End;
}

/// Judges a body that ended (with its trailers, if any).
pub trait JudgeEnd {
    /// The verdict on a body that ended with `trailers` (`None`: without).
    fn classify_end(&self, trailers: Option<&HeaderMap>) -> Outcome;
}

/// The end of an HTTP body whose head was a success: a success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpEnd;

impl JudgeEnd for HttpEnd {
    #[inline]
    fn classify_end(&self, _trailers: Option<&HeaderMap>) -> Outcome {
        Outcome::Success
    }
}

impl JudgeEnd for GrpcEnd {
    /// The trailers' `grpc-status` ([`GrpcClassifier::classify_trailers`]).
    #[inline]
    fn classify_end(&self, trailers: Option<&HeaderMap>) -> Outcome {
        self.classify_trailers(trailers)
    }
}

/// A classifier that may leave its verdict to the end of the body.
///
/// ```
/// use bulwark::{BoxError, Outcome};
/// use bulwark::http::verdict::ClassifyBody;
/// use bulwark::http::{GrpcClassifier, HttpClassifier};
///
/// let res = |s: u16| Ok::<_, BoxError>(http::Response::builder().status(s).body(()).unwrap());
/// // A 5xx is a failure whatever its body; a 2xx waits for its body's end.
/// assert_eq!(HttpClassifier::new().verdict_at_head(&res(503)), Some(Outcome::Failure));
/// assert_eq!(HttpClassifier::new().verdict_at_head(&res(200)), None);
/// // A gRPC answer without grpc-status in its head waits for the trailers.
/// assert_eq!(GrpcClassifier::new().verdict_at_head(&res(200)), None);
/// ```
pub trait ClassifyBody<Res>: ClassifyEnd {
    /// The verdict on `result` if the head decides it, `None` to wait for
    /// the end of the body (only for an `Ok`).
    fn verdict_at_head(&self, result: &Result<Res, BoxError>) -> Option<Outcome>;
}

impl ClassifyEnd for HttpClassifier {
    /// A body that ends is a success (its head was one: other heads are
    /// judged at once).
    type End = HttpEnd;

    #[inline]
    fn end_judge(&self) -> HttpEnd {
        HttpEnd
    }
}

impl<Res: ResponseParts> ClassifyBody<Res> for HttpClassifier {
    /// A successful status waits for the body; every other answer (and an
    /// `Err`) is judged at once.
    #[inline]
    fn verdict_at_head(&self, result: &Result<Res, BoxError>) -> Option<Outcome> {
        match self.classify(result) {
            Outcome::Success if result.is_ok() => None,
            outcome => Some(outcome),
        }
    }
}

impl ClassifyEnd for GrpcClassifier {
    /// The trailers' `grpc-status` ([`GrpcClassifier::classify_trailers`]).
    type End = GrpcEnd;

    #[inline]
    fn end_judge(&self) -> GrpcEnd {
        self.end()
    }
}

impl<Res: ResponseParts> ClassifyBody<Res> for GrpcClassifier {
    /// A 2xx head without `grpc-status` waits for the trailers
    /// ([`GrpcClassifier::needs_trailers`]); any other answer is judged at
    /// once.
    #[inline]
    fn verdict_at_head(&self, result: &Result<Res, BoxError>) -> Option<Outcome> {
        match result {
            Ok(res) if self.needs_trailers(res) => None,
            Ok(res) => Some(GrpcClassifier::classify_head(self, res)),
            Err(e) => Some(self.classify_error(e)),
        }
    }
}

/// Where a verdict goes once it is known: a breaker's permit, a metrics
/// recorder. Dropping a sink without calling either method must be safe
/// (it counts for nothing).
pub trait VerdictSink {
    /// Records `outcome`; `trailers` are the body's (for pushback such as
    /// `grpc-retry-pushback-ms`), if it ended with them.
    fn record(self, outcome: Outcome, trailers: Option<&HeaderMap>);

    /// The caller dropped the body before its end: neither a success nor a
    /// failure.
    fn cancel(self);
}

/// The verdict a body still owes: how to judge its end, and where to send
/// it.
struct Pending<C, V> {
    classifier: C,
    sink: V,
    cancelled: Option<Outcome>,
    polled: bool,
}

impl<C: JudgeEnd, V: VerdictSink> Pending<C, V> {
    fn end(self, trailers: Option<&HeaderMap>) {
        let outcome = self.classifier.classify_end(trailers);
        self.sink.record(outcome, trailers);
    }

    fn dropped(self) {
        if !self.polled {
            // The caller read the head and did not want the body.
            self.end(None);
        } else {
            match self.cancelled {
                Some(outcome) => self.sink.record(outcome, None),
                None => self.sink.cancel(),
            }
        }
    }
}

pin_project! {
    /// A response body that sends the call's verdict to a [`VerdictSink`]
    /// when the body ends; see the [module docs](self).
    ///
    /// Frames, errors and size hints pass through unchanged. A body whose
    /// verdict was taken at the head is a plain pass-through.
    pub struct VerdictBody<B, C, V>
    where
        C: JudgeEnd,
        V: VerdictSink,
    {
        #[pin]
        inner: B,
        pending: Option<Pending<C, V>>,
    }

    impl<B, C, V> PinnedDrop for VerdictBody<B, C, V>
    where
        C: JudgeEnd,
        V: VerdictSink,
    {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.dropped();
            }
        }
    }
}

impl<B, C: JudgeEnd, V: VerdictSink> VerdictBody<B, C, V> {
    /// `inner`, whose end `classifier` judges (a [`JudgeEnd`], such as
    /// [`HttpEnd`] or `GrpcClassifier::new().end()`), the verdict going to
    /// `sink`.
    pub fn new(inner: B, classifier: C, sink: V) -> Self {
        VerdictBody {
            inner,
            pending: Some(Pending {
                classifier,
                sink,
                cancelled: None,
                polled: false,
            }),
        }
    }

    /// `inner`, whose verdict was already taken: a pass-through.
    pub fn judged(inner: B) -> Self {
        VerdictBody {
            inner,
            pending: None,
        }
    }

    /// Records `outcome` if the caller drops the body after starting to
    /// read it, before its end (`None`, the default: neither, the sink's
    /// [`cancel`](VerdictSink::cancel)).
    pub fn cancelled_as(mut self, outcome: Option<Outcome>) -> Self {
        if let Some(p) = &mut self.pending {
            p.cancelled = outcome;
        }
        self
    }

    /// Whether the verdict is still to be taken (the head did not decide
    /// it, and the body has not ended).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, C: JudgeEnd, V: VerdictSink> fmt::Debug for VerdictBody<B, C, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictBody")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl<B, C, V> Body for VerdictBody<B, C, V>
where
    B: Body,
    C: JudgeEnd,
    V: VerdictSink,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let Some(pending) = this.pending.as_mut() else {
            return this.inner.poll_frame(cx);
        };
        pending.polled = true;
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    if let Some(p) = this.pending.take() {
                        p.end(Some(trailers));
                    }
                } else if this.inner.is_end_stream() {
                    // Nothing follows: a consumer may stop here.
                    if let Some(p) = this.pending.take() {
                        p.end(None);
                    }
                }
            }
            Some(Err(_)) => {
                // The body broke: the server did not finish its answer.
                if let Some(p) = this.pending.take() {
                    p.sink.record(Outcome::Failure, None);
                }
            }
            None => {
                if let Some(p) = this.pending.take() {
                    p.end(None);
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a response's body in a [`VerdictBody`]: pending, or already
/// judged. Used by the layers that take verdicts, through
/// [`ResponseBody`](crate::parts::ResponseBody).
#[derive(Debug)]
pub struct VerdictWrap<C, V> {
    pending: Option<(C, V, Option<Outcome>)>,
}

impl<C, V> VerdictWrap<C, V> {
    /// The verdict is taken at the end of the body, by `classifier`, for
    /// `sink`; a body dropped mid-way records `cancelled` (see
    /// [`VerdictBody::cancelled_as`]).
    pub const fn pending(classifier: C, sink: V, cancelled: Option<Outcome>) -> Self {
        VerdictWrap {
            pending: Some((classifier, sink, cancelled)),
        }
    }

    /// The verdict was taken at the head.
    pub const fn judged() -> Self {
        VerdictWrap { pending: None }
    }
}

impl<C: JudgeEnd, V: VerdictSink> WrapBody for VerdictWrap<C, V> {
    type Body<B> = VerdictBody<B, C, V>;

    #[inline]
    fn wrap<B>(self, body: B) -> VerdictBody<B, C, V> {
        match self.pending {
            Some((classifier, sink, cancelled)) => {
                VerdictBody::new(body, classifier, sink).cancelled_as(cancelled)
            }
            None => VerdictBody::judged(body),
        }
    }

    /// A body that cannot be watched is judged as one that ended.
    fn unwatched(self) {
        if let Some((classifier, sink, _)) = self.pending {
            sink.record(classifier.classify_end(None), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<&'static str>>>);

    impl VerdictSink for Log {
        fn record(self, outcome: Outcome, _: Option<&HeaderMap>) {
            self.0.lock().unwrap().push(outcome.as_str());
        }
        fn cancel(self) {
            self.0.lock().unwrap().push("cancelled");
        }
    }

    /// Two frames, then an error.
    struct Breaks(u8);

    impl Body for Breaks {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0 += 1;
            Poll::Ready(Some(if self.0 <= 2 {
                Ok(Frame::data(Bytes::from_static(b"x")))
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            }))
        }
    }

    fn body<B>(inner: B, log: &Log) -> VerdictBody<B, HttpEnd, Log> {
        VerdictBody::new(inner, HttpEnd, log.clone())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_end_gives_its_verdict_once() {
        let log = Log::default();
        body(Full::new(Bytes::from("a")), &log)
            .collect()
            .await
            .unwrap();
        assert!(body(Breaks(0), &log).collect().await.is_err());
        // Dropped unread: as its end; dropped mid-way: cancelled.
        drop(body(Breaks(0), &log));
        let mut b = body(Breaks(0), &log);
        b.frame().await.unwrap().unwrap();
        drop(b);
        // ... or as configured.
        let mut b = body(Breaks(0), &log).cancelled_as(Some(Outcome::Failure));
        b.frame().await.unwrap().unwrap();
        drop(b);
        // Judged at the head: nothing more.
        VerdictBody::<_, HttpEnd, Log>::judged(Breaks(0))
            .collect()
            .await
            .unwrap_err();
        assert_eq!(
            *log.0.lock().unwrap(),
            ["success", "failure", "success", "cancelled", "failure"]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn grpc_trailers_decide() {
        let log = Log::default();
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "14".parse().unwrap());
        let inner = Full::new(Bytes::from("m")).with_trailers(async { Some(Ok(t)) });
        VerdictBody::new(inner, GrpcClassifier::new().end(), log.clone())
            .collect()
            .await
            .unwrap();
        assert_eq!(*log.0.lock().unwrap(), ["failure"]);
    }
}
