//! For the end-to-end benches (`examples/bench_e2e.rs`, `examples/bench_api.rs`): the daemon as
//! a child process, stopped like an operator would stop it, and percentiles of a sample.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The daemon, running; dropped: SIGTERM (so it commits and leaves its groups), then SIGKILL if
/// it has not exited within 30 s.
pub struct DaemonProcess(pub Child);

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

/// The `p` quantile (0..=1) of a sorted sample, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
