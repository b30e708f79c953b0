//! [`BudgetPolicy`]: a retry budget decided elsewhere (e.g. fleet-wide).

use crate::budget::RetryBudget;
use bulwark_core::Outcome;
use std::sync::Arc;

/// A retry budget whose decisions are made by your own code, behind the
/// same [`RetryBudget`] handle the retry and hedge layers take: for a
/// budget shared by the instances of a service (`bulwark-fleet`'s
/// `SharedRetryBudget`), or any other policy.
///
/// Every method is on the request path: answer from memory, without I/O.
///
/// ```
/// use bulwark::retry::budget::{BudgetPolicy, RetryBudget};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// At most one retry per ten requests, ever.
/// #[derive(Default)]
/// struct OnePerTen { requests: AtomicU64, retries: AtomicU64 }
///
/// impl BudgetPolicy for OnePerTen {
///     fn deposit(&self) { self.requests.fetch_add(1, Ordering::Relaxed); }
///     fn withdraw(&self) -> bool {
///         let allowed = self.requests.load(Ordering::Relaxed) / 10;
///         self.retries
///             .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| (r < allowed).then(|| r + 1))
///             .is_ok()
///     }
///     fn available(&self) -> u64 {
///         (self.requests.load(Ordering::Relaxed) / 10).saturating_sub(self.retries.load(Ordering::Relaxed))
///     }
/// }
///
/// let budget = RetryBudget::from_policy(OnePerTen::default());
/// for _ in 0..10 { budget.deposit(); }
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// ```
pub trait BudgetPolicy: Send + Sync + 'static {
    /// A new request (not a retry) was made.
    fn deposit(&self);

    /// Takes one retry (or hedge); `false` when none is left.
    fn withdraw(&self) -> bool;

    /// Whether [`withdraw`](Self::withdraw) would succeed now, without
    /// taking anything (default: [`available`](Self::available) > 0).
    fn would_allow(&self) -> bool {
        self.available() > 0
    }

    /// How an attempt ended (default: ignored).
    fn record(&self, outcome: Outcome) {
        let _ = outcome;
    }

    /// How many retries it would allow now.
    fn available(&self) -> u64;
}

impl RetryBudget {
    /// A budget decided by `policy`; see [`BudgetPolicy`].
    pub fn from_policy(policy: impl BudgetPolicy) -> Self {
        Self::from_policy_arc(Arc::new(policy))
    }
}
