//! How long a request may take: a fixed limit or one chosen per request.
//!
//! A [`TimeoutPolicy`] picks the limit for each request. A [`Duration`] is a
//! fixed limit; any `Fn(&Req) -> Option<Duration>` picks one per request
//! (`None`: no limit for this request), for example by operation or from a
//! request extension:
//!
//! ```
//! use bulwark::timeout::TimeoutPolicy;
//! use std::time::Duration;
//!
//! let by_path = |path: &&str| -> Option<Duration> {
//!     match *path {
//!         "/health" => Some(Duration::from_secs(1)),
//!         p if p.starts_with("/reports") => Some(Duration::from_secs(120)),
//!         "/stream" => None,
//!         _ => Some(Duration::from_secs(10)),
//!     }
//! };
//! assert_eq!(by_path.timeout(&"/health"), Some(Duration::from_secs(1)));
//! assert_eq!(by_path.timeout(&"/reports/q3"), Some(Duration::from_secs(120)));
//! assert_eq!(Duration::from_secs(3).timeout(&"/anything"), Some(Duration::from_secs(3)));
//! ```

use std::time::Duration;

/// Chooses the time limit of each request.
///
/// Implemented for [`Duration`] (the same limit for every request) and for
/// every `Fn(&Req) -> Option<Duration>`.
pub trait TimeoutPolicy<Req> {
    /// The limit for `req`, or `None` for no limit.
    fn timeout(&self, req: &Req) -> Option<Duration>;
}

impl<Req> TimeoutPolicy<Req> for Duration {
    #[inline]
    fn timeout(&self, _: &Req) -> Option<Duration> {
        Some(*self)
    }
}

impl<Req, F> TimeoutPolicy<Req> for F
where
    F: Fn(&Req) -> Option<Duration>,
{
    #[inline]
    fn timeout(&self, req: &Req) -> Option<Duration> {
        self(req)
    }
}
