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
        let records = records(&set, 100_000);
        let t = std::time::Instant::now();
        let mut rounds = 0;
        // `MEMORY_ROUNDS=n`: exactly n rounds (for callgrind's repeatable instruction counts).
        let wanted: Option<usize> = std::env::var("MEMORY_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok());
        while wanted.map_or(t.elapsed().as_secs() < 10, |n| rounds < n) {
            let fresh = Engine::new(Catalog::default(), 2_000_000);
            restore_all(&fresh, &records, with_header());
            rounds += 1;
        }
        println!(
            "restore only: {:.2} µs per record into an empty index",
            t.elapsed().as_secs_f64() * 1e6 / (rounds * records.len()) as f64
        );
        return;
    }
    if std::env::var("MEMORY_ONLY").as_deref() == Ok("catchup") {
        // One catch-up of a million records into the empty index of a process that has held
        // nothing yet, as at a daemon's start (the records are made by an engine dropped
        // first). `MEMORY_HEADER=0` as above. Run it as a process per case, alternately:
        // `scripts/bench-catchup.sh`.
        let header = with_header();
        let records = records(&set, NOTIFICATIONS);
        let fresh = Engine::new(Catalog::default(), 2_000_000);
        let (user, sys) = common::cpu_secs();
        let t = std::time::Instant::now();
        restore_all(&fresh, &records, header);
        let (user2, sys2) = common::cpu_secs();
        let elapsed = t.elapsed().as_secs_f64();
        let (user, sys) = (user2 - user, sys2 - sys);
        let with = if header { "with" } else { "without" };
        // Checked on user CPU: the system time is the first touch of a fresh heap's pages,
        // which on the VMs measured here ranged from 0.1 to 3.8 s for the same run.
        common::report(
            &format!(
                "catch-up of {} notification records {with} the rendered header (one core, user CPU)",
                records.len()
            ),
            format!("{user:.2} s ({elapsed:.2} s elapsed, {sys:.2} s system)"),
            "<= 3 s",
            user <= 3.0,
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
    // an empty index; issue 12 target 5), and of reading back records the index already holds
    // (an instance sees its own output on the topic). A million records, as the target says:
    // a bigger index is slower per record than a small one.
    let producer = common::engine(set.clone());
    let records = records_of(&producer, NOTIFICATIONS);
    // Per record: elapsed microseconds, and user and system CPU microseconds.
    let restore = |engine: &Engine, header: bool| {
        let (user, sys) = common::cpu_secs();
        let t = std::time::Instant::now();
        restore_all(engine, &records, header);
        let per = |secs: f64| secs * 1e6 / records.len() as f64;
        let (user2, sys2) = common::cpu_secs();
        (
            per(t.elapsed().as_secs_f64()),
            per(user2 - user),
            per(sys2 - sys),
        )
    };
    // Side by side: the records as eventmatchd writes them (with the rendered header), and the
    // same records without it (written by an older version or another tool), each into an
    // empty index. The first one in a process pays the page faults of a fresh heap, as a
    // starting daemon does: it is the header's, so the elapsed ratio is the conservative one.
    let fresh = Engine::new(Catalog::default(), 2_000_000);
    let (into_empty, user, sys) = restore(&fresh, true);
    let (held_as_restored, ..) = restore(&fresh, true);
    let (bare, bare_user, _) = restore(&Engine::new(Catalog::default(), 2_000_000), false);
    let (own_output, ..) = restore(&producer, true);
    println!(
        "restore summary: {} notification records read back: {into_empty:.2} µs each into an empty \
         index (start-up catch-up: {user:.2} µs user CPU, {sys:.2} µs system; without the \
         rendered header {bare:.2} µs, {bare_user:.2} µs user, {:.2}x the user CPU), \
         {held_as_restored:.2} µs each again, {own_output:.2} µs each by the instance that \
         produced them",
        records.len(),
        bare_user / user
    );
    // Issue 12 target 5 is reported by `MEMORY_ONLY=catchup` (`scripts/bench-catchup.sh`), in
    // a process of its own: here the heap still holds the free lists of the million
    // notifications dropped above, which a starting daemon's does not, and glibc's allocator
    // spends its time searching them.
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

/// Key, value and the rendered header.
type Record = (String, Vec<u8>, Option<String>);

/// `MEMORY_HEADER=0`: the records are read back without the rendered header (as an older
/// version's or another tool's would be), so each event is parsed and rendered to compare.
fn with_header() -> bool {
    std::env::var("MEMORY_HEADER").as_deref() != Ok("0")
}

/// Reads `records` back into `engine`, with or without their rendered headers.
fn restore_all(engine: &Engine, records: &[Record], header: bool) {
    for (k, v, h) in records {
        let h = h.as_ref().filter(|_| header).map(|h| h.as_bytes());
        engine.restore_notification(Some(k.as_bytes()), Some(v), h);
    }
}

/// `n` notification records as an engine produces them (every event fires a rule).
fn records_of(producer: &Engine, n: usize) -> Vec<Record> {
    let src = common::source();
    let mut gen = EventGen::new(POLICIES, 1.0, 7);
    let mut records: Vec<Record> = Vec::with_capacity(n + 1);
    while records.len() < n {
        let out = producer.process_event(&gen.bytes(), &src);
        for r in out.records {
            if let (Some(k), Some(v)) = (r.key, r.value) {
                records.push((k, v, r.rendered.map(|r| r.header().as_str().to_string())));
            }
        }
    }
    records
}

/// `n` records made by an engine that holds almost none of them (it evicts each notification
/// as the next comes), so that making them leaves no heap of freed notifications behind:
/// glibc's allocator would then spend the catch-up searching that heap's free lists, which a
/// starting daemon's fresh heap does not have.
fn records(set: &Arc<eventmatchd::policyset::PolicySet>, n: usize) -> Vec<Record> {
    let producer = Engine::new(Catalog::default(), 1);
    producer.replace_policy_set(set.clone());
    records_of(&producer, n)
}
