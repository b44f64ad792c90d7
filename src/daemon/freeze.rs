//! Knowing that this process was frozen (SIGSTOP, a paused VM or container, a host that did
//! not schedule it) long enough for the group coordinator to give its partitions away.
//!
//! A frozen member finds out that it lost its partitions only when its heartbeat is answered
//! after it wakes, and the rebalance callback that says so runs in the next `recv()`. A fetch
//! is not checked against group membership, so in between the woken member can read a record
//! its successor has already handled, and act on it with a stale idea of what it owns. For the
//! control owner that means answering a command twice. Its loop asks [`FreezeClock::suspect`]
//! before acting on a record and, while it is true, keeps polling (so the callbacks run)
//! without acting.
//!
//! A ticker thread notes the time every [`TICK`]; a tick that comes much later than it should
//! marks a freeze that has just ended. The clock is monotonic, and a monotonic clock keeps
//! running while the process is stopped, so the gap is the length of the freeze.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the ticker notes the time.
pub const TICK: Duration = Duration::from_millis(100);

/// No freeze seen yet.
const NEVER: u64 = u64::MAX;

/// See the module documentation.
#[derive(Debug)]
pub struct FreezeClock {
    base: Instant,
    /// When the ticker last ran, in milliseconds since `base`. Written by the ticker only;
    /// relaxed atomics are enough: readers want a recent value, not an ordering with other
    /// memory.
    last_tick: AtomicU64,
    /// When the last freeze longer than `gap` ended (`NEVER`: none yet), milliseconds since `base`.
    resumed: AtomicU64,
    /// A gap between ticks at least this long is a freeze.
    gap: Duration,
    /// For how long after a freeze ended this process stays suspect.
    window: Duration,
    /// Counts the freezes seen (`eventmatchd_freezes_total`).
    freezes: prometheus::IntCounter,
}

impl FreezeClock {
    /// Starts the ticker. `gap` is the shortest pause that counts (one that could have cost the
    /// group membership); `window` is how long after it ends the process should wait before
    /// trusting what it owns (time for a heartbeat round trip and the callback it causes).
    /// The ticker thread ends when the last `Arc` is dropped. Each freeze counts in `freezes`.
    pub fn start(
        gap: Duration,
        window: Duration,
        freezes: prometheus::IntCounter,
    ) -> Arc<FreezeClock> {
        let clock = Arc::new(FreezeClock::new(gap, window, freezes));
        let weak: Weak<FreezeClock> = Arc::downgrade(&clock);
        let spawned = std::thread::Builder::new()
            .name("freeze-clock".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(clock) => clock.tick(),
                    None => return,
                }
            });
        if let Err(e) = spawned {
            // Without the ticker every check finds the last tick old and says "suspect":
            // safe (nothing is answered twice) but nothing is answered either. Say so loudly.
            tracing::error!(error = %e, "cannot start the freeze clock thread");
        }
        clock
    }

    fn new(gap: Duration, window: Duration, freezes: prometheus::IntCounter) -> FreezeClock {
        FreezeClock {
            base: Instant::now(),
            last_tick: AtomicU64::new(0),
            resumed: AtomicU64::new(NEVER),
            gap,
            window,
            freezes,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn tick(&self) {
        let now = self.now_ms();
        let last = self.last_tick.swap(now, Ordering::Relaxed);
        if now.saturating_sub(last) >= ms(self.gap) {
            self.resumed.store(now, Ordering::Relaxed);
            self.freezes.inc();
            tracing::warn!(
                frozen_ms = now.saturating_sub(last),
                "this process did not run for longer than half the group session timeout; \
                 not acting on control commands until the group has had time to say who owns them"
            );
        }
    }

    /// Whether this process was frozen for at least `gap` within the last `window`, or is
    /// just waking from such a freeze (the ticker has not run yet).
    pub fn suspect(&self) -> bool {
        suspect(
            self.now_ms(),
            self.last_tick.load(Ordering::Relaxed),
            self.resumed.load(Ordering::Relaxed),
            ms(self.gap),
            ms(self.window),
        )
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

/// The decision, apart from the clock: the two orders in which a woken process can look are
/// both covered. If the ticker has not run since the freeze, its last tick is old; if it has,
/// it recorded when the freeze ended.
fn suspect(now: u64, last_tick: u64, resumed: u64, gap: u64, window: u64) -> bool {
    let ticker_late = now.saturating_sub(last_tick) >= gap;
    let recently_resumed = resumed != NEVER && now.saturating_sub(resumed) < window;
    ticker_late || recently_resumed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> prometheus::IntCounter {
        prometheus::IntCounter::new("freezes", "test").expect("valid")
    }

    #[test]
    fn a_late_ticker_or_a_recent_resume_is_suspect_and_nothing_else() {
        let (gap, window) = (3_000, 2_000);
        // Running normally: ticks 100 ms apart, no freeze.
        assert!(!suspect(10_000, 9_900, NEVER, gap, window));
        // Woken before the ticker: its last tick is 7 s old.
        assert!(suspect(17_000, 10_000, NEVER, gap, window));
        // The ticker ran first and recorded the end of the freeze.
        assert!(suspect(17_100, 17_050, 17_050, gap, window));
        // Long enough after it: trusted again.
        assert!(!suspect(19_100, 19_050, 17_050, gap, window));
        // A short stall (under the gap) is not a freeze.
        assert!(!suspect(12_500, 10_000, NEVER, gap, window));
    }

    #[test]
    fn the_ticker_keeps_a_running_process_unsuspected() {
        let freezes = counter();
        let clock = FreezeClock::start(
            Duration::from_millis(3_000),
            Duration::from_millis(500),
            freezes.clone(),
        );
        std::thread::sleep(TICK * 3);
        assert!(!clock.suspect());
        assert_eq!(freezes.get(), 0);
        assert!(
            clock.last_tick.load(Ordering::Relaxed) > 0,
            "the ticker ran"
        );
    }

    #[test]
    fn a_gap_between_ticks_marks_a_freeze_for_the_window() {
        // No ticker thread: this test is the ticker. Its first tick comes 5 s after the clock
        // started, as if the process had been stopped in between.
        let freezes = counter();
        let mut clock = FreezeClock::new(
            Duration::from_millis(200),
            Duration::from_millis(60_000),
            freezes.clone(),
        );
        let Some(earlier) = Instant::now().checked_sub(Duration::from_secs(5)) else {
            return; // a monotonic clock younger than 5 s: nothing to pretend with
        };
        clock.base = earlier;
        assert!(clock.suspect(), "woken, ticker not yet run");
        clock.tick();
        assert_ne!(clock.resumed.load(Ordering::Relaxed), NEVER);
        assert!(clock.suspect(), "within the window after the freeze");
        assert_eq!(freezes.get(), 1, "counted once");
        clock.tick();
        assert_eq!(freezes.get(), 1, "the next tick is on time");
    }
}
