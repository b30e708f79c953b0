//! Timeouts that cover the whole response: the head and the body.
//!
//! A caller waits for the whole response, but a `Timeout` future ends when
//! the response head arrives: a server that sends its head at once and then
//! its body one byte a second outlives every timeout. A
//! [`ResponseTimeoutLayer`] bounds the head as the timeout crate's
//! [`Timeout`] does (one clock read per call; the head's timer inline and
//! registered only when the head is not ready at once), then carries the deadline that is left into the body
//! ([`TimeoutBody`]): a body still incomplete at the deadline fails with a
//! [`ResponseElapsed`] that says which limit ran out ([`Scope`]: the total
//! timeout or one attempt's) and when ([`Phase`]: before the head, while
//! receiving the body, or a body that stalled).
//!
//! | limit | covers | error |
//! |---|---|---|
//! | the deadline (`limit` from the call) | head and body | [`Phase::Head`] from the response future, [`Phase::Body`] from the body |
//! | the idle limit ([`idle`](ResponseTimeoutLayer::idle), off by default) | the wait for each frame of the body | [`Phase::Idle`] from the body |
//!
//! Every [`ResponseElapsed`] has the timeout crate's
//! [`Elapsed`] as its `source()`, so whatever already
//! maps a timeout (the [`ErrorMapping`](crate::ErrorMapping)'s 504, the
//! `tonic::Status` mapping's `DEADLINE_EXCEEDED`, a
//! `find::<Elapsed>`) treats a body that ran out of time as a timeout too.
//! The body's error is a `BoxError`; find the cause with
//! [`find`](bulwark_core::error::find):
//!
//! ```
//! use bulwark::error::find;
//! use bulwark::http::response_timeout::{Phase, ResponseElapsed, ResponseTimeoutLayer, Scope};
//! use http_body_util::BodyExt;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! # use std::{pin::Pin, task::{Context, Poll}};
//! # /// A body that never ends.
//! # struct Forever;
//! # impl http_body::Body for Forever {
//! #     type Data = bytes::Bytes;
//! #     type Error = std::io::Error;
//! #     fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>)
//! #         -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> { Poll::Pending }
//! # }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), bulwark::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(ResponseTimeoutLayer::total(Some(Duration::from_secs(2))))
//!     .service_fn(|_req: http::Request<()>| async {
//!         // The head at once, then a body that never ends.
//!         Ok::<_, std::io::Error>(http::Response::new(Forever))
//!     });
//! let res = svc.oneshot(http::Request::new(())).await?; // the head: in time
//! let err = res.into_body().collect().await.unwrap_err();
//! let elapsed = find::<ResponseElapsed>(&*err).unwrap();
//! assert_eq!((elapsed.scope(), elapsed.phase()), (Scope::Total, Phase::Body));
//! assert_eq!(err.to_string(), "total timeout of 2s ran out while receiving the response body");
//! # Ok(())
//! # }
//! ```
//!
//! The [`ClientStack`](crate::ClientStack) puts one outside retry (the
//! total timeout) and one inside the breaker (the attempt timeout, with the
//! idle limit if set): a body that drips past the attempt timeout, or
//! stalls, is a failure the breaker counts.
//!
//! [`Timeout`]: bulwark_timeout::Timeout
//! [`Elapsed`]: bulwark_timeout::Elapsed

use crate::parts::{ResponseBody, WrapBody};
use bulwark_core::clock::Instant;
use bulwark_core::BoxError;
use bulwark_core::{Listener, Listeners};
use bulwark_timeout::error::Limit;
use bulwark_timeout::{Elapsed, TimeoutEvent};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

/// Which limit ran out: the whole call's or one attempt's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The total timeout (retries included).
    Total,
    /// One attempt's timeout.
    Attempt,
}

impl Scope {
    /// The lowercase name used in messages and labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Total => "total",
            Scope::Attempt => "attempt",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the response head arrived (the response future failed).
    Head,
    /// After the head, before the body's end (the body failed).
    Body,
    /// The body went longer than the idle limit without a frame.
    Idle,
}

impl Phase {
    /// The lowercase name used in messages and labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Head => "head",
            Phase::Body => "body",
            Phase::Idle => "idle",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`ResponseTimeoutLayer`]'s limit ran out: which one, when, and how
/// long it was. Its `source()` is the timeout crate's
/// [`Elapsed`] (see the [module docs](self)).
///
/// ```
/// use bulwark::error::find;
/// use bulwark::http::response_timeout::{Phase, ResponseElapsed, Scope};
/// use std::time::Duration;
///
/// let e = ResponseElapsed::new(Scope::Attempt, Phase::Idle, Duration::from_millis(200));
/// assert_eq!(e.to_string(), "response body stalled: no frame for 200ms (attempt idle limit)");
/// assert!(find::<bulwark::timeout::Elapsed>(&e).is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseElapsed {
    scope: Scope,
    phase: Phase,
    elapsed: Elapsed,
}

impl ResponseElapsed {
    /// The `scope` limit of length `limit` ran out in `phase`.
    pub const fn new(scope: Scope, phase: Phase, limit: Duration) -> Self {
        ResponseElapsed {
            scope,
            phase,
            elapsed: Elapsed::new(Limit::Request, limit),
        }
    }

    /// Which limit ran out.
    pub const fn scope(&self) -> Scope {
        self.scope
    }

    /// When it ran out.
    pub const fn phase(&self) -> Phase {
        self.phase
    }

    /// How long the limit was (the idle limit for [`Phase::Idle`]): the
    /// same as the timeout crate's
    /// [`Elapsed::duration`](bulwark_timeout::Elapsed::duration), its
    /// `source()`.
    pub const fn duration(&self) -> Duration {
        self.elapsed.duration()
    }

    /// Whether it ran out after the head: the body failed.
    pub const fn in_body(&self) -> bool {
        !matches!(self.phase, Phase::Head)
    }
}

impl fmt::Display for ResponseElapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scope, limit) = (self.scope, self.duration());
        match self.phase {
            Phase::Head => write!(
                f,
                "{scope} timeout of {limit:?} ran out before the response head"
            ),
            Phase::Body => write!(
                f,
                "{scope} timeout of {limit:?} ran out while receiving the response body"
            ),
            Phase::Idle => write!(
                f,
                "response body stalled: no frame for {limit:?} ({scope} idle limit)"
            ),
        }
    }
}

impl Error for ResponseElapsed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.elapsed)
    }
}

/// Bounds the head and the body of each response; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct ResponseTimeoutLayer {
    scope: Scope,
    limit: Option<Duration>,
    idle: Option<Duration>,
    listeners: Listeners<TimeoutEvent>,
}

impl ResponseTimeoutLayer {
    /// A limit of `scope` (`None`: no deadline, only the idle limit if set;
    /// the response type is the same either way).
    pub const fn new(scope: Scope, limit: Option<Duration>) -> Self {
        ResponseTimeoutLayer {
            scope,
            limit,
            idle: None,
            listeners: Listeners::new(),
        }
    }

    /// Registers a listener told of every limit that runs out, in the head
    /// or in the body, as the timeout crate's
    /// [`TimeoutLayer::on_event`](bulwark_timeout::TimeoutLayer::on_event)
    /// (a registry's `timeout_listener`, for instance).
    pub fn on_event(mut self, listener: impl Listener<TimeoutEvent>) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// A total timeout ([`Scope::Total`]).
    pub const fn total(limit: Option<Duration>) -> Self {
        Self::new(Scope::Total, limit)
    }

    /// An attempt timeout ([`Scope::Attempt`]).
    pub const fn attempt(limit: Option<Duration>) -> Self {
        Self::new(Scope::Attempt, limit)
    }

    /// Also fails a body that waits longer than `idle` for its next frame
    /// (`None`: no idle limit, the default).
    pub const fn idle(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// The deadline's length (`None`: none).
    pub const fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// The idle limit (`None`: none).
    pub const fn idle_limit(&self) -> Option<Duration> {
        self.idle
    }
}

impl<S> Layer<S> for ResponseTimeoutLayer {
    type Service = ResponseTimeout<S>;

    fn layer(&self, inner: S) -> ResponseTimeout<S> {
        ResponseTimeout {
            inner,
            scope: self.scope,
            limit: self.limit,
            idle: self.idle,
            listeners: self.listeners.clone(),
        }
    }
}

/// The service of a [`ResponseTimeoutLayer`]: the head is bounded as by the
/// timeout crate's [`Timeout`](bulwark_timeout::Timeout) (one clock read per call, a timer only when
/// the head is not ready at once), the body by a [`TimeoutBody`] given the
/// same deadline.
#[derive(Debug, Clone)]
pub struct ResponseTimeout<S> {
    inner: S,
    scope: Scope,
    limit: Option<Duration>,
    idle: Option<Duration>,
    listeners: Listeners<TimeoutEvent>,
}

impl<S> ResponseTimeout<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for ResponseTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Response: ResponseBody<BodyTimer>,
{
    type Response = <S::Response as ResponseBody<BodyTimer>>::Output;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // A limit too long for a deadline to be represented never fires.
        let deadline = self.limit.and_then(|l| Instant::now().checked_add(l));
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: None,
            timer: BodyTimer {
                deadline,
                limit: self.limit.unwrap_or(Duration::MAX),
                idle: self.idle,
                scope: self.scope,
                listeners: self.listeners.clone(),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ResponseTimeout`]: the head raced against
    /// the deadline (the timer inline, registered on the first poll that
    /// finds the head not ready).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        timer: BodyTimer,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timer", &self.timer)
            .finish_non_exhaustive()
    }
}

impl<F, Res, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    Res: ResponseBody<BodyTimer>,
{
    type Output = Result<Res::Output, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The head first: one that is ready when the limit is reached still
        // counts.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(match result {
                Ok(res) => Ok(res.wrap_body(this.timer.clone())),
                Err(e) => Err(e.into()),
            });
        }
        let timer = &*this.timer;
        let Some(deadline) = timer.deadline else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => {
                tracing::debug!(limit = ?timer.limit, scope = timer.scope.as_str(), "response head timed out");
                let error = ResponseElapsed::new(timer.scope, Phase::Head, timer.limit);
                timer
                    .listeners
                    .emit(|| TimeoutEvent::Elapsed(error.elapsed.clone()));
                Poll::Ready(Err(Box::new(error)))
            }
            _ => Poll::Pending,
        }
    }
}

/// What a [`TimeoutBody`] is given at the head: the deadline left, the
/// idle limit and which limit they are. Made by [`ResponseTimeout`].
#[derive(Debug, Clone)]
pub struct BodyTimer {
    deadline: Option<Instant>,
    limit: Duration,
    idle: Option<Duration>,
    scope: Scope,
    listeners: Listeners<TimeoutEvent>,
}

impl WrapBody for BodyTimer {
    type Body<B> = TimeoutBody<B>;

    #[inline]
    fn wrap<B>(self, body: B) -> TimeoutBody<B> {
        TimeoutBody {
            inner: body,
            sleep: None,
            timer: self,
            armed: Armed::No,
            failed: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    No,
    Deadline,
    Idle,
}

pin_project! {
    /// A response body bounded by the deadline left from the head and, if
    /// set, an idle limit per frame; see the [module docs](self).
    ///
    /// Frames pass through unchanged; the body's errors become `BoxError`s.
    /// No timer is made until the body first has to wait, so a body that
    /// is ready at once costs no timer and no allocation; a body that waits
    /// gets one boxed timer, reset (not remade) for each idle wait. Boxed,
    /// the timer keeps the body small (it is moved through every layer
    /// with the response) and `Unpin` when the inner body is. After it
    /// fails with a [`ResponseElapsed`] the body ends.
    pub struct TimeoutBody<B> {
        #[pin]
        inner: B,
        sleep: Option<Pin<Box<Sleep>>>,
        timer: BodyTimer,
        armed: Armed,
        failed: bool,
    }
}

impl<B> TimeoutBody<B> {
    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, without its limits.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for TimeoutBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutBody")
            .field("timer", &self.timer)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // The idle limit counts from this frame: re-armed at the
                // next wait.
                if *this.armed == Armed::Idle {
                    *this.armed = Armed::No;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if *this.armed == Armed::No {
            let timer = &*this.timer;
            let idle_at = timer.idle.and_then(|d| Instant::now().checked_add(d));
            let (at, armed) = match (timer.deadline, idle_at) {
                (Some(d), Some(i)) if i < d => (i, Armed::Idle),
                (Some(d), _) => (d, Armed::Deadline),
                (None, Some(i)) => (i, Armed::Idle),
                (None, None) => return Poll::Pending,
            };
            match this.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(at),
                None => *this.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            *this.armed = armed;
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                *this.failed = true;
                let timer = &*this.timer;
                let error = match this.armed {
                    Armed::Idle => ResponseElapsed::new(
                        timer.scope,
                        Phase::Idle,
                        timer.idle.unwrap_or_default(),
                    ),
                    _ => ResponseElapsed::new(timer.scope, Phase::Body, timer.limit),
                };
                timer
                    .listeners
                    .emit(|| TimeoutEvent::Elapsed(error.elapsed.clone()));
                return Poll::Ready(Some(Err(Box::new(error))));
            }
        }
        Poll::Pending
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_core::error::find;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::task::ready;
    use tower::{service_fn, ServiceExt};

    /// A body that sends a frame every `every`, `n` frames in all.
    struct Drip {
        every: Duration,
        left: usize,
        sleep: Pin<Box<Sleep>>,
    }

    fn drip(every: Duration, n: usize) -> Drip {
        Drip {
            every,
            left: n,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }

    impl Body for Drip {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            ready!(self.sleep.as_mut().poll(cx));
            self.left -= 1;
            let next = Instant::now() + self.every;
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    async fn collect_through(
        layer: ResponseTimeoutLayer,
        head_after: Duration,
        every: Duration,
        n: usize,
    ) -> (Result<usize, BoxError>, Duration) {
        let svc = layer.layer(service_fn(move |_: ()| async move {
            tokio::time::sleep(head_after).await;
            Ok::<_, std::io::Error>(http::Response::new(drip(every, n)))
        }));
        let start = Instant::now();
        let result = match svc.oneshot(()).await {
            Ok(res) => res.into_body().collect().await.map(|c| c.to_bytes().len()),
            Err(e) => Err(e),
        };
        (result, start.elapsed())
    }

    fn elapsed_of(e: &BoxError) -> &ResponseElapsed {
        find::<ResponseElapsed>(&**e).expect("a ResponseElapsed")
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_deadline_covers_head_and_body() {
        let ms = Duration::from_millis;
        // Head in 100 ms, 5 frames 100 ms apart: 600 ms, within 1 s.
        let (r, t) = collect_through(
            ResponseTimeoutLayer::total(Some(ms(1000))),
            ms(100),
            ms(100),
            5,
        )
        .await;
        assert_eq!((r.unwrap(), t), (5, ms(600)));
        // 20 frames: the body runs out at 1 s exactly, after 9 frames.
        let (r, t) = collect_through(
            ResponseTimeoutLayer::attempt(Some(ms(1000))),
            ms(100),
            ms(100),
            20,
        )
        .await;
        let e = r.unwrap_err();
        assert_eq!(t, ms(1000));
        assert_eq!(
            (elapsed_of(&e).scope(), elapsed_of(&e).phase()),
            (Scope::Attempt, Phase::Body)
        );
        assert_eq!(elapsed_of(&e).duration(), ms(1000));
        assert!(find::<Elapsed>(&*e).is_some(), "the source is an Elapsed");
        // The head too late: the head's error says so.
        let (r, t) = collect_through(
            ResponseTimeoutLayer::total(Some(ms(1000))),
            ms(5000),
            ms(1),
            1,
        )
        .await;
        let e = r.unwrap_err();
        assert_eq!(t, ms(1000));
        assert_eq!(elapsed_of(&e).phase(), Phase::Head);
        assert_eq!(
            e.to_string(),
            "total timeout of 1s ran out before the response head"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_idle_limit_bounds_each_wait_not_the_stream() {
        let ms = Duration::from_millis;
        // No deadline; frames 100 ms apart under a 150 ms idle limit: a
        // 5 s stream goes through.
        let layer = ResponseTimeoutLayer::total(None).idle(Some(ms(150)));
        let (r, t) = collect_through(layer.clone(), ms(0), ms(100), 50).await;
        assert_eq!((r.unwrap(), t), (50, ms(5000)));
        // Frames 200 ms apart: the first wait stalls.
        let (r, t) = collect_through(layer, ms(0), ms(200), 50).await;
        let e = r.unwrap_err();
        assert_eq!(t, ms(150));
        assert_eq!(elapsed_of(&e).phase(), Phase::Idle);
        assert_eq!(elapsed_of(&e).duration(), ms(150));
        // With a deadline sooner than the idle limit, the deadline fires.
        let layer = ResponseTimeoutLayer::total(Some(ms(120))).idle(Some(ms(150)));
        let (r, t) = collect_through(layer, ms(0), ms(200), 50).await;
        assert_eq!(t, ms(120));
        assert_eq!(elapsed_of(&r.unwrap_err()).phase(), Phase::Body);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn no_limit_is_a_pass_through_and_other_errors_are_kept() {
        let (r, _) = collect_through(
            ResponseTimeoutLayer::total(None),
            Duration::ZERO,
            Duration::from_secs(60),
            2,
        )
        .await;
        assert_eq!(r.unwrap(), 2);
        // An inner service's own timeout (another limit) is not relabelled.
        let svc = ResponseTimeoutLayer::total(Some(Duration::from_secs(5))).layer(service_fn(
            |_: ()| async {
                Err::<http::Response<http_body_util::Empty<Bytes>>, BoxError>(Box::new(
                    Elapsed::new(Limit::Request, Duration::from_secs(1)),
                ))
            },
        ));
        let e = svc.oneshot(()).await.unwrap_err();
        assert!(e.is::<Elapsed>() && find::<ResponseElapsed>(&*e).is_none());
    }
}
