//! How a request is copied for another attempt.
//!
//! An attempt consumes its request, so before sending one that may have to be
//! repeated, retry asks a [`Replay`] hook for a copy. Requests that are
//! `Clone` use [`CloneReplay`] (the default). Requests that are not (an HTTP
//! request with a streaming body) supply their own hook, which returns a
//! replayable copy (for example one whose body was buffered up to a limit)
//! or `None` to say that this request cannot be retried. A request without a
//! copy is sent once; if its outcome would have been retried, the layer
//! reports [`GiveUpReason::NotReplayable`](crate::event::GiveUpReason::NotReplayable).
//!
//! A copy is made only when another attempt is possible: with
//! `max_attempts(1)` the hook is never called.
//!
//! ```
//! use bulwark::retry::replay::{CloneReplay, NoReplay, Replay};
//!
//! assert_eq!(CloneReplay.replay(&"hello"), Some("hello"));
//! assert_eq!(NoReplay.replay(&"hello"), None);
//!
//! /// Not `Clone`: a body that may be streamed.
//! struct Upload { bytes: Option<Vec<u8>> }
//! // Replay only bodies that were buffered.
//! let hook = |u: &Upload| u.bytes.clone().map(|b| Upload { bytes: Some(b) });
//! assert!(hook.replay(&Upload { bytes: Some(vec![1]) }).is_some());
//! assert!(hook.replay(&Upload { bytes: None }).is_none());
//! ```

/// Makes a copy of a request for another attempt, or says it cannot.
///
/// Implemented for [`CloneReplay`], [`NoReplay`] and every
/// `Fn(&Req) -> Option<Req>`.
pub trait Replay<Req> {
    /// A copy of `request` to send if the attempt about to be made must be
    /// repeated, or `None` when the request cannot be sent twice.
    fn replay(&self, request: &Req) -> Option<Req>;
}

/// Copies requests with `Clone` (the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneReplay;

impl<Req: Clone> Replay<Req> for CloneReplay {
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Never copies: every request is sent once. Makes the retry layer usable
/// (for its events and budget accounting) with requests that are not `Clone`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoReplay;

impl<Req> Replay<Req> for NoReplay {
    #[inline]
    fn replay(&self, _: &Req) -> Option<Req> {
        None
    }
}

impl<Req, F> Replay<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        self(request)
    }
}
