//! Memory (BENCHMARKS.md §5): resident set size of the engine holding 10,000 policies, then
//! 1,000,000 notifications created the way the daemon creates them (matching events through
//! `Engine::process_event`, each notification holding its ~700-byte event). Not a criterion
//! bench: it measures bytes, once.

mod common;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

use common::workload::{policy_set, EventGen};
use common::{mib, rss_bytes};
use eventmatchd::catalog::Catalog;
use eventmatchd::engine::Engine;
use std::sync::Arc;

const POLICIES: usize = 10_000;
const NOTIFICATIONS: usize = 1_000_000;

fn main() {
    if common::profiling() {
        return;
    }
    let Some(base) = rss_bytes() else {
        println!("memory: /proc/self/status is not readable here (not Linux?); skipped");
        return;
    };
    let engine = Engine::new(Catalog::default(), 2_000_000);
    engine.replace_policy_set(Arc::new(policy_set(POLICIES)));
    let with_policies = rss_bytes().unwrap_or(base);

    // Every event fires a rule (one or two notifications each).
    let mut gen = EventGen::new(POLICIES, 1.0, 99);
    let src = common::source();
    let mut event_bytes = 0usize;
    let mut events = 0usize;
    while engine.index().len() < NOTIFICATIONS {
        let e = gen.bytes();
        event_bytes += e.len();
        events += 1;
        engine.process_event(&e, &src);
    }
    let held = engine.index().len();
    let full = rss_bytes().unwrap_or(base);
    let policies_mib = mib(with_policies - base);
    let total_mib = mib(full - base);
    let per_notification = (full - with_policies) as f64 / held as f64;
    println!(
        "memory summary: {POLICIES} policies: {policies_mib:.1} MiB; plus {held} notifications \
         (from {events} events of {:.0} bytes on average): {total_mib:.1} MiB in all, \
         {per_notification:.0} bytes per notification; process RSS {:.1} MiB",
        event_bytes as f64 / events as f64,
        mib(full)
    );
    common::report(
        "RSS of 10,000 policies",
        format!("{policies_mib:.1} MiB"),
        "<= 100 MiB",
        policies_mib <= 100.0,
    );
    common::report(
        "RSS of 10,000 policies + 1,000,000 notifications",
        format!("{total_mib:.1} MiB"),
        "<= 1024 MiB",
        total_mib <= 1024.0,
    );
}
