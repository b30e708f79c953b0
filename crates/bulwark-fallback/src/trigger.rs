//! When the fallback is used: on classified failures, or only on chosen error
//! types found anywhere in the error's `source()` chain.
//!
//! ```
//! use bulwark::fallback::trigger::{Classified, OnError, Trigger};
//! use bulwark::error::CircuitOpen;
//! use bulwark::{BoxError, DefaultClassifier};
//!
//! let open: Result<(), BoxError> = Err(Box::new(CircuitOpen::new(None)));
//! let other: Result<(), BoxError> = Err("boom".into());
//!
//! // The default: failures, throttling and local rejections.
//! let classified = Classified::new(DefaultClassifier);
//! assert!(classified.triggers(&open).is_some() && classified.triggers(&other).is_some());
//!
//! // Only when the breaker is open.
//! let only_open = OnError::<CircuitOpen>::new();
//! assert!(only_open.triggers(&open).is_some());
//! assert!(only_open.triggers(&other).is_none());
//! ```

use bulwark_core::error::find;
use bulwark_core::{BoxError, Classify, Outcome};
use std::fmt;
use std::marker::PhantomData;

/// Decides whether a result calls for the fallback.
pub trait Trigger<Res> {
    /// `Some(outcome)` when `result` should be replaced by the fallback.
    fn triggers(&self, result: &Result<Res, BoxError>) -> Option<Outcome>;
}

/// Triggers on what a classifier calls [`Outcome::Failure`],
/// [`Outcome::Throttled`] or [`Outcome::Rejected`]; never on
/// [`Outcome::Success`] or [`Outcome::Ignored`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Classified<C>(C);

impl<C> Classified<C> {
    /// Triggers on `classifier`'s failures.
    pub const fn new(classifier: C) -> Self {
        Classified(classifier)
    }
}

impl<Res, C: Classify<Res>> Trigger<Res> for Classified<C> {
    #[inline]
    fn triggers(&self, result: &Result<Res, BoxError>) -> Option<Outcome> {
        match self.0.classify(result) {
            Outcome::Success | Outcome::Ignored => None,
            outcome => Some(outcome),
        }
    }
}

/// Triggers only on errors with an `E` anywhere in their `source()` chain.
pub struct OnError<E>(PhantomData<fn() -> E>);

impl<E> OnError<E> {
    /// Triggers on `E`.
    pub const fn new() -> Self {
        OnError(PhantomData)
    }
}

impl<E> Default for OnError<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Clone for OnError<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for OnError<E> {}

impl<E> fmt::Debug for OnError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnError<{}>", std::any::type_name::<E>())
    }
}

impl<Res, E: std::error::Error + 'static> Trigger<Res> for OnError<E> {
    #[inline]
    fn triggers(&self, result: &Result<Res, BoxError>) -> Option<Outcome> {
        match result {
            Ok(_) => None,
            Err(e) => find::<E>(&**e).map(|_| Outcome::of_error(e)),
        }
    }
}

/// Triggers when either trigger does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Or<A, B>(A, B);

impl<A, B> Or<A, B> {
    /// `a` or `b`.
    pub const fn new(a: A, b: B) -> Self {
        Or(a, b)
    }
}

impl<Res, A: Trigger<Res>, B: Trigger<Res>> Trigger<Res> for Or<A, B> {
    #[inline]
    fn triggers(&self, result: &Result<Res, BoxError>) -> Option<Outcome> {
        self.0.triggers(result).or_else(|| self.1.triggers(result))
    }
}

/// Triggers when a predicate over the result says so.
#[derive(Clone, Copy)]
pub struct When<F>(F);

impl<F> When<F> {
    /// Triggers when `predicate` returns `true`.
    pub const fn new(predicate: F) -> Self {
        When(predicate)
    }
}

impl<F> fmt::Debug for When<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("When(..)")
    }
}

impl<Res, F: Fn(&Result<Res, BoxError>) -> bool> Trigger<Res> for When<F> {
    #[inline]
    fn triggers(&self, result: &Result<Res, BoxError>) -> Option<Outcome> {
        if (self.0)(result) {
            Some(match result {
                Ok(_) => Outcome::Failure,
                Err(e) => Outcome::of_error(e),
            })
        } else {
            None
        }
    }
}
