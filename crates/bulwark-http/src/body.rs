//! Replayable request bodies: retry a streaming upload, up to a cap.
//!
//! A request whose body is a stream can only be retried if what was sent is
//! still at hand. [`ReplayBody`] wraps a body and keeps the data it sends, up
//! to a cap (64 KiB by default); a clone of it (the copy the retry layer keeps
//! for the next attempt) sends the same bytes again, then goes on reading
//! the source if the first attempt did not read it all.
//!
//! Beyond the cap the kept data is dropped: the request is sent once and not
//! retried. [`ReplayGuardLayer`], placed just inside the retry layer, marks
//! the answer of such a request ([`NotReplayed`] in the response extensions,
//! or a [`BodyNotReplayable`] error wrapping the transport error) so that
//! [`ServerPushback`](crate::pushback::ServerPushback) stops the retry, and
//! logs the fact (`tracing` target `bulwark::http`, and the
//! [`ReplayEvent`] listeners). The caller still gets the first attempt's
//! answer.
//!
//! A body can also go over the cap *after* the answer arrived (the server
//! answered before the upload ended, and the upload went on). Retry made
//! its copy before the attempt was sent, so neither the mark nor the
//! [`Replay`](bulwark_retry::Replay) hook can stop the next attempt: the
//! guard does, by not sending the copy. That attempt fails at once with
//! [`BodyNotReplayable`] (which stops retrying); the transport, the server
//! and the breaker never see it. The caller then gets that error rather
//! than the first answer, which the retry layer has already dropped:
//! keeping it would take a retry layer that checks its copy again before
//! each attempt and holds the previous answer through the backoff.
//!
//! ```
//! use bulwark::http::body::ReplayBody;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello")));
//! let copy = body.clone();
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
//! // The copy sends the same bytes again.
//! assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello");
//! # }
//! ```

use bulwark_core::event::{Listener, Listeners};
use bulwark_core::BoxError;
use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The default cap on the data a [`ReplayBody`] keeps: 64 KiB.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// Marks a response whose request body went over the replay cap: the
/// request was sent once and must not be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotReplayed;

/// The request body went over the replay cap, so the request cannot be sent
/// again. Wraps the error of the one attempt (its `source()`), or is the
/// error of a copy polled after the data was dropped.
#[derive(Debug)]
pub struct BodyNotReplayable {
    limit: usize,
    source: Option<BoxError>,
}

impl BodyNotReplayable {
    /// The cap that was exceeded.
    pub const fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for BodyNotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body over the {} byte replay limit was sent once",
            self.limit
        )?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BodyNotReplayable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

struct Shared<B> {
    source: B,
    /// Data frames read from the source, while under the cap.
    chunks: Vec<Bytes>,
    /// Frames read from the source so far (kept or not).
    read: usize,
    kept_bytes: usize,
    limit: usize,
    overflowed: bool,
    done: bool,
    trailers: Option<HeaderMap>,
}

/// A body that can be sent again; see the [module docs](self).
///
/// Cloning is cheap (an `Arc`): every clone replays the data from the start.
/// The source must be `Unpin` (hyper's `Incoming`, axum's and tonic's bodies,
/// `Full`, `BoxBody` are).
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// The next frame this handle sends.
    pos: usize,
    trailers_sent: bool,
}

impl<B> ReplayBody<B> {
    /// Wraps `source`, keeping up to [`DEFAULT_REPLAY_LIMIT`] bytes.
    pub fn new(source: B) -> Self {
        Self::with_limit(source, DEFAULT_REPLAY_LIMIT)
    }

    /// Wraps `source`, keeping up to `limit` bytes.
    pub fn with_limit(source: B, limit: usize) -> Self {
        ReplayBody {
            shared: Arc::new(Mutex::new(Shared {
                source,
                chunks: Vec::new(),
                read: 0,
                kept_bytes: 0,
                limit,
                overflowed: false,
                done: false,
                trailers: None,
            })),
            pos: 0,
            trailers_sent: false,
        }
    }

    /// Whether the data went over the cap (so the body cannot be replayed).
    pub fn is_over_limit(&self) -> bool {
        self.shared.lock().overflowed
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.shared.lock().limit
    }
}

impl<B> Clone for ReplayBody<B> {
    fn clone(&self) -> Self {
        ReplayBody {
            shared: self.shared.clone(),
            pos: 0,
            trailers_sent: false,
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("ReplayBody")
            .field("limit", &s.limit)
            .field("kept_bytes", &s.kept_bytes)
            .field("over_limit", &s.overflowed)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut s = this.shared.lock();
        if this.pos < s.read {
            // Replaying what an earlier attempt sent.
            if s.overflowed {
                let limit = s.limit;
                return Poll::Ready(Some(Err(Box::new(BodyNotReplayable {
                    limit,
                    source: None,
                }))));
            }
            let chunk = s.chunks[this.pos].clone();
            this.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if s.done {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = s.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut s.source).poll_frame(cx)) {
            None => {
                s.done = true;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    s.read += 1;
                    this.pos = s.read;
                    if !s.overflowed {
                        if s.kept_bytes + bytes.len() <= s.limit {
                            s.kept_bytes += bytes.len();
                            s.chunks.push(bytes.clone());
                        } else {
                            s.overflowed = true;
                            s.chunks = Vec::new();
                            tracing::info!(
                                target: "bulwark::http",
                                limit = s.limit,
                                "request body over the replay limit: sent once, not retried"
                            );
                        }
                    }
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        s.trailers = Some(t.clone());
                        s.done = true;
                        this.trailers_sent = true;
                        Poll::Ready(Some(Ok(Frame::trailers(t))))
                    } else {
                        // A frame of a kind we do not know: skip it.
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.shared.lock();
        s.done && self.pos >= s.read && (self.trailers_sent || s.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let s = self.shared.lock();
        if self.pos == 0 && s.read == 0 {
            return s.source.size_hint();
        }
        if s.done && !s.overflowed {
            let left: usize = s.chunks[self.pos.min(s.chunks.len())..]
                .iter()
                .map(Bytes::len)
                .sum();
            return SizeHint::with_exact(left as u64);
        }
        SizeHint::default()
    }
}

/// What the replay guard tells its listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayEvent {
    /// A request body went over the replay cap: the request was sent once
    /// and its answer will not be retried.
    SentOnce {
        /// The cap that was exceeded.
        limit: usize,
    },
}

/// Marks the answers of requests whose [`ReplayBody`] went over its cap, so
/// retry does not try to send them again; see the [module docs](self).
///
/// Place it just inside the retry layer (the client stack does).
#[derive(Clone, Debug, Default)]
pub struct ReplayGuardLayer {
    listeners: Listeners<ReplayEvent>,
}

impl ReplayGuardLayer {
    /// A guard with no listener.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `listener` when a request is sent once for being over the cap.
    pub fn on_event(mut self, listener: impl Listener<ReplayEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }
}

impl<S> Layer<S> for ReplayGuardLayer {
    type Service = ReplayGuard<S>;

    fn layer(&self, inner: S) -> ReplayGuard<S> {
        ReplayGuard {
            inner,
            listeners: self.listeners.clone(),
        }
    }
}

/// The service of [`ReplayGuardLayer`].
#[derive(Clone, Debug)]
pub struct ReplayGuard<S> {
    inner: S,
    listeners: Listeners<ReplayEvent>,
}

impl<S, B, ResB> Service<http::Request<ReplayBody<B>>> for ReplayGuard<S>
where
    S: Service<http::Request<ReplayBody<B>>, Response = http::Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<ResB>;
    type Error = BoxError;
    type Future = GuardFuture<S::Future, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<ReplayBody<B>>) -> Self::Future {
        let shared = req.body().shared.clone();
        // A copy of a body that went over the cap after the copy was made
        // (the server answered before the upload ended): it cannot be sent
        // again, so it is not sent at all.
        let inner = if req.body().pos == 0 && shared.lock().overflowed {
            None
        } else {
            Some(self.inner.call(req))
        };
        GuardFuture {
            inner,
            shared,
            listeners: self.listeners.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`ReplayGuard`].
    pub struct GuardFuture<F, B> {
        // `None`: the copy was refused before it was sent.
        #[pin]
        inner: Option<F>,
        shared: Arc<Mutex<Shared<B>>>,
        listeners: Listeners<ReplayEvent>,
    }
}

impl<F, B> fmt::Debug for GuardFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardFuture").finish_non_exhaustive()
    }
}

impl<F, B, ResB, E> Future for GuardFuture<F, B>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let limit = this.shared.lock().limit;
            return Poll::Ready(Err(Box::new(BodyNotReplayable {
                limit,
                source: None,
            })));
        };
        let result = ready!(inner.poll(cx)).map_err(Into::into);
        let (over, limit) = {
            let s = this.shared.lock();
            (s.overflowed, s.limit)
        };
        if !over {
            return Poll::Ready(result);
        }
        this.listeners.emit(|| ReplayEvent::SentOnce { limit });
        Poll::Ready(match result {
            Ok(mut res) => {
                res.extensions_mut().insert(NotReplayed);
                Ok(res)
            }
            Err(e) => Err(Box::new(BodyNotReplayable {
                limit,
                source: Some(e),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A streaming body of `n` chunks of `size` bytes.
    struct Chunks(std::vec::IntoIter<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.next().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(n: usize, size: usize) -> Chunks {
        Chunks(
            (0..n)
                .map(|i| Bytes::from(vec![i as u8; size]))
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }

    #[tokio::test]
    async fn replays_under_the_limit() {
        let body = ReplayBody::with_limit(chunks(4, 10), 100);
        let copy = body.clone();
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 40);
        let again = copy.clone();
        assert_eq!(copy.collect().await.unwrap().to_bytes().len(), 40);
        assert_eq!(again.collect().await.unwrap().to_bytes().len(), 40);
    }

    #[tokio::test]
    async fn over_the_limit_is_sent_once() {
        let body = ReplayBody::with_limit(chunks(4, 10), 25);
        let copy = body.clone();
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 40);
        assert!(copy.is_over_limit());
        let err = copy.collect().await.unwrap_err();
        assert!(bulwark_core::error::is_caused_by::<BodyNotReplayable>(
            &*err
        ));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_copy_over_the_cap_after_the_answer_is_not_sent() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::{service_fn, ServiceExt};
        let sent = Arc::new(AtomicUsize::new(0));
        let count = sent.clone();
        // The server answers at once; the upload goes on after the answer.
        let svc = ReplayGuardLayer::new().layer(service_fn(
            move |req: http::Request<ReplayBody<Chunks>>| {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(req.into_body().collect());
                async { Ok::<_, BoxError>(http::Response::new(())) }
            },
        ));
        let body = ReplayBody::with_limit(chunks(4, 10), 25);
        let copy = body.clone(); // what retry keeps for the next attempt
        let res = svc.clone().oneshot(http::Request::new(body)).await.unwrap();
        assert!(
            res.extensions().get::<NotReplayed>().is_none(),
            "not over yet"
        );
        tokio::task::yield_now().await; // the upload ends, over the cap
        assert!(copy.is_over_limit());
        let err = svc.oneshot(http::Request::new(copy)).await.unwrap_err();
        assert!(err.is::<BodyNotReplayable>());
        assert_eq!(sent.load(Ordering::SeqCst), 1, "the copy was not sent");
    }

    #[tokio::test]
    async fn copy_continues_a_partly_read_source() {
        let mut body = ReplayBody::with_limit(chunks(3, 5), 100);
        let copy = body.clone();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 5);
        drop(body); // the server answered early
        assert_eq!(copy.collect().await.unwrap().to_bytes().len(), 15);
    }
}
