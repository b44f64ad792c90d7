//! Snapshot swap (BENCHMARKS.md §3): with 10,000 policies, the time to apply one PATCH (clone
//! the maps, rebuild the matcher, publish with `ArcSwap::store`), and the throughput of an
//! event reader while another thread applies PATCHes back to back, against the same reader
//! with the writer idle, in alternating windows of one run.

mod common;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

use common::workload::{policy_set, EventGen};
use criterion::Throughput;
use eventmatchd::catalog::Catalog;
use eventmatchd::control::CommandSource;
use eventmatchd::engine::{Engine, RecordSource};
use serde_json::json;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLICIES: usize = 10_000;
/// The policy the PATCHes rename; any policy of the set would do.
const PATCHED: &str = "a0000000-0000-4000-8000-000000000007";

fn patch(n: u64) -> Vec<u8> {
    json!({"id": format!("patch-{n}"), "method": "PATCH",
           "path": format!("/policies/event_matcher/{PATCHED}/"),
           "body": {"name": format!("specific 7, revision {n}")}})
    .to_string()
    .into_bytes()
}

fn source() -> RecordSource<'static> {
    RecordSource {
        topic: "authentik.events",
        partition: 0,
        offset: 0,
        key: None,
        timestamp: chrono::DateTime::UNIX_EPOCH,
    }
}

/// Events per second one reader thread processes during `window`, evaluating each event
/// against the snapshot current at that moment (one `load` per event: the worst case; the
/// daemon loads once per batch).
fn reader_rate(engine: &Engine, events: &[Vec<u8>], window: Duration) -> f64 {
    let src = source();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        for e in events.iter().take(256) {
            black_box(engine.process_event(e, &src));
        }
        n += 256;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let engine = Arc::new(Engine::new(Catalog::default(), 10_000_000));
    engine.replace_policy_set(Arc::new(policy_set(POLICIES)));
    // Quiet events (nothing fires), so the reader measures evaluation against the snapshot,
    // not the growth of the notification index.
    let mut gen = EventGen::new(POLICIES, 0.0, 11);
    let events: Vec<Vec<u8>> = (0..256).map(|_| gen.bytes()).collect();
    let check = engine.apply_command(
        &patch(0),
        CommandSource {
            partition: 0,
            offset: 0,
        },
    );
    assert_eq!(check.status, 200, "the PATCH must succeed");

    let mut c = common::criterion();
    {
        let mut g = c.benchmark_group("snapshot_swap");
        g.throughput(Throughput::Elements(1));
        let mut n = 1;
        g.bench_function("patch_apply_10k_policies", |b| {
            b.iter(|| {
                n += 1;
                let out = engine.apply_command(
                    &patch(n),
                    CommandSource {
                        partition: 0,
                        offset: n as i64,
                    },
                );
                black_box(out.version)
            })
        });
        g.finish();
    }
    if common::profiling() {
        return;
    }

    // Apply time, side by side with nothing else: median of 30.
    let mut times: Vec<f64> = (0..30)
        .map(|i| {
            let t = Instant::now();
            engine.apply_command(
                &patch(1000 + i),
                CommandSource {
                    partition: 0,
                    offset: 0,
                },
            );
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let apply_ms = common::median(&mut times);

    // Reader throughput: alternate 1 s windows with the writer idle and busy.
    let busy = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let writer = {
        let (engine, busy, stop, swaps) =
            (engine.clone(), busy.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            let mut n = 10_000;
            while !stop.load(Ordering::Relaxed) {
                if busy.load(Ordering::Relaxed) {
                    n += 1;
                    engine.apply_command(
                        &patch(n),
                        CommandSource {
                            partition: 0,
                            offset: 0,
                        },
                    );
                    swaps.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let window = Duration::from_millis(1000);
    let (mut idle, mut swapping) = (Vec::new(), Vec::new());
    reader_rate(&engine, &events, Duration::from_millis(300));
    let mut swaps_during = 0;
    for _ in 0..5 {
        busy.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        idle.push(reader_rate(&engine, &events, window));
        busy.store(true, Ordering::Relaxed);
        let before = swaps.load(Ordering::Relaxed);
        swapping.push(reader_rate(&engine, &events, window));
        swaps_during += swaps.load(Ordering::Relaxed) - before;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let (idle, swapping) = (common::median(&mut idle), common::median(&mut swapping));
    let slowdown = 1.0 - swapping / idle;
    println!(
        "\nsnapshot swap summary ({POLICIES} policies): one PATCH applied and published in \
         {apply_ms:.2} ms (median of 30); reader {:.0} k events/s with the writer idle, {:.0} k \
         events/s while it published {:.0} versions/s; slowdown {:.1}%",
        idle / 1e3,
        swapping / 1e3,
        swaps_during as f64 / 5.0,
        slowdown * 100.0
    );
    common::report(
        "reader slowdown during back-to-back swaps of a 10,000-policy set",
        format!("{:.1}%", slowdown * 100.0),
        "<= 10%",
        slowdown <= 0.10,
    );
    c.final_summary();
}
