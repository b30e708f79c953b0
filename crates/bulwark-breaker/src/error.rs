//! Errors of the circuit breaker.
//!
//! The tower layer returns [`BoxError`](bulwark_core::BoxError); an open
//! breaker's rejection in it is a [`CircuitOpen`]. Find it anywhere in the
//! chain with [`bulwark::error::find`](bulwark_core::error::find).

use std::error::Error;
use std::fmt;

pub use bulwark_core::error::CircuitOpen;
pub use bulwark_core::error::ConfigError;

/// How a call guarded by [`Breaker::call`](crate::Breaker::call) (without
/// tower) can fail.
#[derive(Debug)]
pub enum CallError<E> {
    /// The breaker refused the call; it was not made.
    Open(CircuitOpen),
    /// The call was made and failed.
    Inner(E),
}

impl<E> CallError<E> {
    /// The inner error, if the call was made.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            CallError::Open(_) => None,
        }
    }

    /// Whether the breaker refused the call.
    pub fn is_open(&self) -> bool {
        matches!(self, CallError::Open(_))
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Open(open) => open.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: Error + 'static> Error for CallError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CallError::Open(open) => Some(open),
            CallError::Inner(e) => Some(e),
        }
    }
}
