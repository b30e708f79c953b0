//! Changing a live breaker's thresholds without losing its state.

use super::{Breaker, Inner};
use crate::config::{BreakerBuilder, WindowKind};
use crate::window::{CountWindow, TimeWindow, Window};
use bulwark_core::error::ConfigError;
use std::sync::Arc;

impl Breaker {
    /// Applies the thresholds of `builder` to this breaker in place, keeping
    /// its state: an open breaker stays open until its current open
    /// duration ends, counts and history are kept, and every handle and
    /// layer sharing it sees the new settings at once. This is what a
    /// configuration reload calls.
    ///
    /// Taken from `builder`: the failure rate, slow-call rate, consecutive
    /// failures, minimum calls, open duration (from the next trip on),
    /// permitted probes, successes to close, the history length and the
    /// window's size. Changing the window's size (or length, or buckets)
    /// starts the window afresh, since old counts cannot be re-bucketed; the
    /// state is still kept. Not taken: the name and the listeners (they
    /// belong to the instance).
    ///
    /// # Errors
    ///
    /// The builder's own validation errors, and two changes a live breaker
    /// cannot make because every call reads them without a lock: switching
    /// between a count and a time window (`window`), and adding, removing or
    /// changing the slow-call duration (`slow_call_duration`). Build a new
    /// breaker for those. On error nothing is changed.
    ///
    /// ```
    /// use bulwark::breaker::{Breaker, State};
    ///
    /// let breaker = Breaker::builder().consecutive_failures(5).build().unwrap();
    /// breaker.call_sync(|| Err::<(), _>("boom")).unwrap_err();
    /// breaker
    ///     .reconfigure(&Breaker::builder().consecutive_failures(2))
    ///     .unwrap();
    /// // The failure recorded before the change still counts.
    /// breaker.call_sync(|| Err::<(), _>("boom")).unwrap_err();
    /// assert_eq!(breaker.state(), State::Open);
    /// ```
    pub fn reconfigure(&self, builder: &BreakerBuilder) -> Result<(), ConfigError> {
        builder.validate()?;
        let new = &builder.config;
        let s = &*self.shared;
        let old_slow = s.hot.slow_threshold;
        if old_slow != new.slow_call.map(|(d, _)| d) {
            return Err(ConfigError::new(
                "circuit breaker",
                "slow_call_duration",
                "cannot be added, removed or changed on a live breaker; build a new one",
            ));
        }
        let mut inner = s.inner.lock();
        let same_kind = matches!(
            (inner.config.window, new.window),
            (WindowKind::Count { .. }, WindowKind::Count { .. })
                | (WindowKind::Time { .. }, WindowKind::Time { .. })
        );
        if !same_kind {
            return Err(ConfigError::new(
                "circuit breaker",
                "window",
                "cannot switch between a count and a time window on a live breaker; build a new one",
            ));
        }
        if inner.config.window != new.window {
            inner.window = match new.window {
                WindowKind::Count { size } => Window::Count(CountWindow::new(size as usize)),
                WindowKind::Time { length, buckets } => {
                    Window::Time(TimeWindow::new(length, buckets))
                }
            };
        }
        if inner.config.open != new.open {
            let delays = new.open.delays(inner.random.fork());
            inner.open_delays = delays;
        }
        resize_history(&mut inner, new.history);
        let mut config = new.clone();
        config.seed = inner.config.seed;
        inner.config = Arc::new(config);
        inner.publish(s);
        Ok(())
    }
}

fn resize_history(inner: &mut Inner, len: usize) {
    // The buffer grows as transitions come: only the oldest need dropping.
    if let Some(history) = &mut inner.history {
        while history.len() > len {
            history.pop_front();
        }
        history.shrink_to(len);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Breaker, State};
    use std::time::Duration;

    fn fail(b: &Breaker) {
        let _ = b.call_sync(|| Err::<(), _>("boom"));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn keeps_counts_and_open_state() {
        let b = Breaker::builder()
            .count_window(10)
            .minimum_calls(4)
            .failure_rate(0.9)
            .open_for(Duration::from_secs(30))
            .build()
            .unwrap();
        for _ in 0..3 {
            fail(&b);
        }
        b.call_sync(|| Ok::<_, &str>(())).unwrap();
        assert_eq!(b.state(), State::Closed);
        // 3 of 4 failed: 75% trips at the new threshold on the next failure.
        b.reconfigure(
            &Breaker::builder()
                .count_window(10)
                .minimum_calls(4)
                .failure_rate(0.5)
                .open_for(Duration::from_secs(30)),
        )
        .unwrap();
        assert_eq!(b.snapshot().calls, 4);
        fail(&b);
        assert_eq!(b.state(), State::Open);

        // Reconfiguring an open breaker leaves it open with its probe time.
        tokio::time::advance(Duration::from_secs(10)).await;
        b.reconfigure(
            &Breaker::builder()
                .count_window(10)
                .minimum_calls(4)
                .open_for(Duration::from_secs(5)),
        )
        .unwrap();
        let snap = b.snapshot();
        assert_eq!(snap.state, State::Open);
        assert_eq!(snap.next_probe_in, Some(Duration::from_secs(20)));
        assert_eq!(snap.history.len(), 1);
    }

    #[test]
    fn rejects_what_a_live_breaker_cannot_change() {
        let b = Breaker::builder().count_window(100).build().unwrap();
        let err = b
            .reconfigure(&Breaker::builder().time_window(Duration::from_secs(10), 10))
            .unwrap_err();
        assert_eq!(err.field(), "window");
        let err = b
            .reconfigure(&Breaker::builder().slow_calls(Duration::from_secs(1), 0.5))
            .unwrap_err();
        assert_eq!(err.field(), "slow_call_duration");
        let err = b
            .reconfigure(&Breaker::builder().failure_rate(2.0))
            .unwrap_err();
        assert_eq!(err.field(), "failure_rate");
    }

    #[test]
    fn a_new_window_size_starts_afresh_and_keeps_the_state() {
        let b = Breaker::builder()
            .count_window(10)
            .minimum_calls(5)
            .build()
            .unwrap();
        b.force_open();
        b.reconfigure(&Breaker::builder().count_window(20).minimum_calls(5))
            .unwrap();
        assert_eq!(b.state(), State::ForcedOpen);
        b.reset();
        for _ in 0..25 {
            b.call_sync(|| Ok::<_, &str>(())).unwrap();
        }
        assert_eq!(b.snapshot().calls, 20);
    }
}
