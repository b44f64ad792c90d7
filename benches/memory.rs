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
    let Some(base) = rss_bytes(None) else {
        println!("memory: /proc/self/status is not readable here (not Linux?); skipped");
        return;
    };
    let set = Arc::new(policy_set(POLICIES));
    if std::env::var("MEMORY_ONLY").as_deref() == Ok("restore") {
        // The catch-up alone, looped for ~10 s, for `perf record`.
        let records = records(&set);
        let t = std::time::Instant::now();
        let mut rounds = 0;
        // `MEMORY_ROUNDS=n`: exactly n rounds (for callgrind's repeatable instruction counts).
        let wanted: Option<usize> = std::env::var("MEMORY_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok());
        while wanted.map_or(t.elapsed().as_secs() < 10, |n| rounds < n) {
            let fresh = Engine::new(Catalog::default(), 2_000_000);
            for (k, v) in &records {
                fresh.restore_notification(Some(k.as_bytes()), Some(v));
            }
            rounds += 1;
        }
        println!(
            "restore only: {:.2} µs per record into an empty index",
            t.elapsed().as_secs_f64() * 1e6 / (rounds * records.len()) as f64
        );
        return;
    }
    let engine = common::engine(set.clone());
    let with_policies = rss_bytes(None).unwrap_or(base);

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
    let full = rss_bytes(None).unwrap_or(base);
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
    drop(engine);

    // Catch-up cost of the index at start (records read back from the notification topic into
    // an empty index) and of reading back records the index already holds (an instance sees
    // its own output on the topic): not a target, but what a restart costs.
    let producer = common::engine(set.clone());
    let records = records_of(&producer);
    let restore = |engine: &Engine| {
        let t = std::time::Instant::now();
        for (k, v) in &records {
            engine.restore_notification(Some(k.as_bytes()), Some(v));
        }
        t.elapsed().as_secs_f64() * 1e6 / records.len() as f64
    };
    let fresh = Engine::new(Catalog::default(), 2_000_000);
    let into_empty = restore(&fresh);
    let held_as_restored = restore(&fresh);
    let own_output = restore(&producer);
    println!(
        "restore summary: {} notification records read back: {into_empty:.2} µs each into an empty \
         index (start-up catch-up), {held_as_restored:.2} µs each again, {own_output:.2} µs each \
         by the instance that produced them",
        records.len()
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

/// 100,000 notification records as an engine produces them (every event fires a rule).
fn records_of(producer: &Engine) -> Vec<(String, Vec<u8>)> {
    let src = common::source();
    let mut gen = EventGen::new(POLICIES, 1.0, 7);
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    while records.len() < 100_000 {
        let out = producer.process_event(&gen.bytes(), &src);
        for r in out.records {
            if let (Some(k), Some(v)) = (r.key, r.value) {
                records.push((k, v));
            }
        }
    }
    records
}

fn records(set: &Arc<eventmatchd::policyset::PolicySet>) -> Vec<(String, Vec<u8>)> {
    records_of(&common::engine(set.clone()))
}
