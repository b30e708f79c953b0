//! The breaker's states and the record of its transitions.

use bulwark_core::clock::Instant;
use std::fmt;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass and their outcomes are recorded; a trip policy may open the
    /// breaker.
    Closed,
    /// Calls are rejected at once with [`CircuitOpen`](crate::error::CircuitOpen)
    /// until the open duration has elapsed.
    Open,
    /// A limited number of probe calls pass; enough successes close the
    /// breaker, a failure opens it again.
    HalfOpen,
    /// Opened by an operator: every call is rejected until a
    /// [`reset`](crate::Breaker::reset) or another manual transition.
    ForcedOpen,
    /// Forced closed by an operator: every call passes and nothing is
    /// recorded.
    ForcedClosed,
    /// Every call passes; outcomes are recorded (rates stay visible in the
    /// snapshot) but the breaker never trips.
    MetricsOnly,
}

impl State {
    pub(crate) const fn to_bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::ForcedClosed => 4,
            State::MetricsOnly => 5,
        }
    }

    pub(crate) const fn from_bits(bits: u64) -> State {
        match bits & 0b111 {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::ForcedClosed,
            _ => State::MetricsOnly,
        }
    }

    /// The lowercase name used in events, logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// Whether calls can be rejected in this state.
    pub const fn is_rejecting(self) -> bool {
        matches!(self, State::Open | State::HalfOpen | State::ForcedOpen)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TransitionReason {
    /// This many failures in a row.
    ConsecutiveFailures(u32),
    /// The failure rate over the window reached the threshold.
    FailureRate(f64),
    /// The slow-call rate over the window reached the threshold.
    SlowCallRate(f64),
    /// The open duration elapsed: probes may go through.
    OpenElapsed,
    /// This many probes succeeded.
    ProbesSucceeded(u32),
    /// A probe failed.
    ProbeFailed,
    /// A probe was slower than the slow-call threshold.
    ProbeSlow,
    /// An operator forced it (force open, disable, metrics only, reset).
    Manual,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            TransitionReason::FailureRate(r) => write!(f, "failure rate {:.1}%", r * 100.0),
            TransitionReason::SlowCallRate(r) => write!(f, "slow-call rate {:.1}%", r * 100.0),
            TransitionReason::OpenElapsed => f.write_str("open duration elapsed"),
            TransitionReason::ProbesSucceeded(n) => write!(f, "{n} probes succeeded"),
            TransitionReason::ProbeFailed => f.write_str("probe failed"),
            TransitionReason::ProbeSlow => f.write_str("probe was slow"),
            TransitionReason::Manual => f.write_str("manual"),
        }
    }
}

/// One change of state, kept in the breaker's bounded history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: TransitionReason,
    /// When (tokio's clock).
    pub at: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        for s in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::ForcedClosed,
            State::MetricsOnly,
        ] {
            assert_eq!(State::from_bits(s.to_bits()), s);
            assert_eq!(State::from_bits(s.to_bits() | (42 << 3)), s);
        }
        assert_eq!(
            TransitionReason::FailureRate(0.5).to_string(),
            "failure rate 50.0%"
        );
    }
}
