//! Where the fallback response comes from: a value, a closure of the error, a
//! backup service, or the last good response for the same key.
//!
//! A [`Source`] prepares, for each call, a [`Recover`] that the response
//! future keeps: it is told about a success (stale-if-error remembers it) or
//! asked for a replacement after a failure. What each source keeps per call
//! is what it needs, and no more:
//!
//! | source                                   | kept per call            | on success           |
//! |------------------------------------------|--------------------------|----------------------|
//! | [`Value`]                                | a clone of the value     | nothing              |
//! | [`FromFn`]                               | a clone of the closure   | nothing              |
//! | [`Backup`]                               | clones of request, service | nothing            |
//! | [`Stale`]                                | the key, an `Arc`        | remembers a clone    |
//!
//! Values and closures are cloned into each call: keep them cheap to clone
//! (small values, `Arc`s, closures capturing little), and the success path
//! allocates nothing.

use crate::error::NoStaleResponse;
use bulwark_core::clock::Instant;
use bulwark_core::BoxError;
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, Ready};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// Makes a [`Recover`] for each call.
pub trait Source<Req, Res> {
    /// What the response future keeps to recover.
    type Recover: Recover<Res>;

    /// Prepares to recover the call about to be made with `req`.
    fn prepare(&mut self, req: &Req) -> Self::Recover;
}

/// Recovers one call.
pub trait Recover<Res> {
    /// The fallback's future.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// The primary call succeeded with `response`.
    #[inline]
    fn succeeded(self, response: &Res)
    where
        Self: Sized,
    {
        let _ = response;
    }

    /// The primary call failed with `error`: produce the fallback.
    fn recover(self, error: &BoxError) -> Self::Future;
}

/// A fixed value (cloned into each call).
#[derive(Debug, Clone, Copy)]
pub struct Value<T>(pub(crate) T);

impl<Req, T: Clone> Source<Req, T> for Value<T> {
    type Recover = Value<T>;

    #[inline]
    fn prepare(&mut self, _: &Req) -> Value<T> {
        Value(self.0.clone())
    }
}

impl<T> Recover<T> for Value<T> {
    type Future = Ready<Result<T, BoxError>>;

    #[inline]
    fn recover(self, _: &BoxError) -> Self::Future {
        std::future::ready(Ok(self.0))
    }
}

/// A closure of the error: `Fn(&BoxError) -> Result<Res, BoxError>`.
#[derive(Clone, Copy)]
pub struct FromFn<F>(pub(crate) F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn(..)")
    }
}

impl<Req, Res, F> Source<Req, Res> for FromFn<F>
where
    F: Fn(&BoxError) -> Result<Res, BoxError> + Clone,
{
    type Recover = FromFn<F>;

    #[inline]
    fn prepare(&mut self, _: &Req) -> FromFn<F> {
        FromFn(self.0.clone())
    }
}

impl<Res, F> Recover<Res> for FromFn<F>
where
    F: Fn(&BoxError) -> Result<Res, BoxError>,
{
    type Future = Ready<Result<Res, BoxError>>;

    #[inline]
    fn recover(self, error: &BoxError) -> Self::Future {
        std::future::ready((self.0)(error))
    }
}

/// A backup service, called with a copy of the request.
///
/// Needs `Req: Clone` (the request is cloned before the primary call) and a
/// cheaply cloneable backup service (cloned into each call, as tower's
/// `Retry` clones its service). The backup is made ready before it is
/// called.
#[derive(Debug, Clone)]
pub struct Backup<S>(pub(crate) S);

/// The per-call part of [`Backup`].
#[derive(Debug)]
pub struct BackupCall<S, Req> {
    service: S,
    request: Req,
}

impl<Req, S> Source<Req, S::Response> for Backup<S>
where
    Req: Clone,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Recover = BackupCall<S, Req>;

    #[inline]
    fn prepare(&mut self, req: &Req) -> Self::Recover {
        BackupCall {
            service: self.0.clone(),
            request: req.clone(),
        }
    }
}

impl<Req, S> Recover<S::Response> for BackupCall<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Future = BackupFuture<S, Req>;

    fn recover(self, _: &BoxError) -> Self::Future {
        BackupFuture {
            state: BackupState::Ready {
                service: self.service,
                request: Some(self.request),
            },
        }
    }
}

pin_project! {
    /// The future of a [`Backup`] fallback: waits for the backup to be ready,
    /// then calls it.
    pub struct BackupFuture<S: Service<Req>, Req> {
        #[pin]
        state: BackupState<S, Req>,
    }
}

pin_project! {
    #[project = BackupProj]
    enum BackupState<S: Service<Req>, Req> {
        Ready { service: S, request: Option<Req> },
        Calling { #[pin] future: S::Future },
    }
}

impl<S: Service<Req>, Req> fmt::Debug for BackupFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupFuture").finish_non_exhaustive()
    }
}

impl<S, Req> Future for BackupFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                BackupProj::Ready { service, request } => {
                    match service.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(Ok(())) => {}
                    }
                    let future = service.call(request.take().expect("called once"));
                    self.as_mut()
                        .project()
                        .state
                        .set(BackupState::Calling { future });
                }
                BackupProj::Calling { future } => return future.poll(cx).map_err(Into::into),
            }
        }
    }
}

/// The last good response for the request's key, if it is younger than a
/// maximum age (stale-if-error).
///
/// Remembers at most `max_keys` keys: when full, expired entries are
/// forgotten first, then the oldest one (a scan of the map, only when a new
/// key arrives with the map full). Each success stores a clone of the
/// response under a short lock.
pub struct Stale<K, F, Res> {
    key: F,
    cache: Arc<StaleCache<K, Res>>,
}

pub(crate) struct StaleCache<K, Res> {
    map: Mutex<HashMap<K, (Instant, Res)>>,
    max_age: Duration,
    max_keys: usize,
}

impl<K, F, Res> Stale<K, F, Res> {
    pub(crate) fn new(key: F, max_age: Duration, max_keys: usize) -> Self {
        Stale {
            key,
            cache: Arc::new(StaleCache {
                map: Mutex::new(HashMap::new()),
                max_age,
                max_keys: max_keys.max(1),
            }),
        }
    }
}

impl<K, F: Clone, Res> Clone for Stale<K, F, Res> {
    fn clone(&self) -> Self {
        Stale {
            key: self.key.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<K, F, Res> fmt::Debug for Stale<K, F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stale")
            .field("max_age", &self.cache.max_age)
            .field("max_keys", &self.cache.max_keys)
            .finish()
    }
}

/// The per-call part of [`Stale`].
pub struct StaleCall<K, Res> {
    key: K,
    cache: Arc<StaleCache<K, Res>>,
}

impl<K, Res> fmt::Debug for StaleCall<K, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleCall").finish_non_exhaustive()
    }
}

impl<Req, K, F, Res> Source<Req, Res> for Stale<K, F, Res>
where
    F: Fn(&Req) -> K,
    K: Hash + Eq,
    Res: Clone,
{
    type Recover = StaleCall<K, Res>;

    fn prepare(&mut self, req: &Req) -> Self::Recover {
        StaleCall {
            key: (self.key)(req),
            cache: self.cache.clone(),
        }
    }
}

impl<K: Hash + Eq, Res: Clone> Recover<Res> for StaleCall<K, Res> {
    type Future = Ready<Result<Res, BoxError>>;

    fn succeeded(self, response: &Res) {
        let now = Instant::now();
        let cache = &self.cache;
        let mut map = cache.map.lock();
        if !map.contains_key(&self.key) && map.len() >= cache.max_keys {
            map.retain(|_, (at, _)| now.saturating_duration_since(*at) <= cache.max_age);
            if map.len() >= cache.max_keys {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k as *const K);
                if let Some(oldest) = oldest {
                    // Find the key again by address to remove it.
                    map.retain(|k, _| !std::ptr::eq(k, oldest));
                }
            }
        }
        map.insert(self.key, (now, response.clone()));
    }

    fn recover(self, _: &BoxError) -> Self::Future {
        let map = self.cache.map.lock();
        let result = match map.get(&self.key) {
            Some((at, res)) => {
                let age = at.elapsed();
                if age <= self.cache.max_age {
                    Ok(res.clone())
                } else {
                    Err(NoStaleResponse::new(Some(age), self.cache.max_age).into())
                }
            }
            None => Err(NoStaleResponse::new(None, self.cache.max_age).into()),
        };
        std::future::ready(result)
    }
}
