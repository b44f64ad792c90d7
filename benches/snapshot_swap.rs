//! Snapshot swap (BENCHMARKS.md §3): with 10,000 policies, the time to apply one PATCH (clone
//! the maps, rebuild the matcher, publish with `ArcSwap::store`), and the throughput of an
//! event reader while another thread applies PATCHes back to back, against the same reader
//! with the writer idle, in alternating windows of one run.

mod common;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

use common::workload::{policy_set, EventGen};
use criterion::Throughput;
use eventmatchd::control::CommandSource;
use eventmatchd::engine::Engine;
use serde_json::json;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
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

/// Events per second one reader thread processes during `window`, evaluating each event
/// against the snapshot current at that moment (one `load` per event: the worst case; the
/// daemon loads once per batch).
fn reader_rate(engine: &Engine, events: &[Vec<u8>], window: Duration) -> f64 {
    let src = common::source();
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
    let engine = Arc::new(common::engine(Arc::new(policy_set(POLICIES))));
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

    // `SWAP_PATCHES=n`: exactly n PATCHes and nothing else (for `valgrind --tool=callgrind
    // --toggle-collect='*apply_command_at*'`, whose instruction counts repeat where times do not).
    if let Some(n) = std::env::var("SWAP_PATCHES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        for i in 1..=n {
            let out = engine.apply_command(
                &patch(i),
                CommandSource {
                    partition: 0,
                    offset: i as i64,
                },
            );
            assert_eq!(out.status, 200, "the PATCH must succeed");
        }
        return;
    }
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

    // Reader throughput: alternate 1 s windows with the writer idle, publishing back to back
    // (the worst case: the other core does nothing but rebuild sets), and publishing 10
    // versions a second (an operator scripting changes fast).
    const IDLE: u8 = 0;
    const BACK_TO_BACK: u8 = 1;
    const PACED: u8 = 2;
    // Control: the other core busy with unrelated work (integer hashing, no memory traffic),
    // to tell the cost of a swap from the cost of a busy neighbour on this (virtual) machine.
    const SPIN: u8 = 3;
    let mode = Arc::new(AtomicU8::new(IDLE));
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let writer = {
        let (engine, mode, stop, swaps) =
            (engine.clone(), mode.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            let mut n: u64 = 10_000;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let m = mode.load(Ordering::Relaxed);
                if m == SPIN {
                    let mut x: u64 = n;
                    for _ in 0..100_000 {
                        x = x.rotate_left(5).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1;
                    }
                    black_box(x);
                    continue;
                }
                if m == IDLE || (m == PACED && Instant::now() < next) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                next = Instant::now() + Duration::from_millis(100);
                n += 1;
                engine.apply_command(
                    &patch(n),
                    CommandSource {
                        partition: 0,
                        offset: 0,
                    },
                );
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let window = Duration::from_millis(1000);
    // `SWAP_CYCLES=n` (default 9): how many times the four windows alternate. The slowdowns
    // are medians of each cycle's own ratio to its idle window: this machine's speed drifts by
    // more than the effect between minutes (stop 24 saw the idle rate alone range from 483 k
    // to 744 k), and a ratio of adjacent windows cancels most of that drift.
    let cycles: usize = std::env::var("SWAP_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
        .max(1);
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut swapped = [0u64; 4];
    reader_rate(&engine, &events, Duration::from_millis(300));
    for _ in 0..cycles {
        for m in [IDLE, BACK_TO_BACK, PACED, SPIN] {
            mode.store(m, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
            let before = swaps.load(Ordering::Relaxed);
            rates[m as usize].push(reader_rate(&engine, &events, window));
            swapped[m as usize] += swaps.load(Ordering::Relaxed) - before;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    // Each cycle's slowdown against its own idle window; the median, and the spread.
    let slowdowns = |m: u8| -> (f64, f64, f64) {
        let mut s: Vec<f64> = rates[m as usize]
            .iter()
            .zip(&rates[IDLE as usize])
            .map(|(r, idle)| 1.0 - r / idle)
            .collect();
        let lo = s.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (common::median(&mut s), lo, hi)
    };
    let paired = [BACK_TO_BACK, PACED, SPIN].map(slowdowns);
    let [idle, busy, paced, spin] = rates.map(|mut r| common::median(&mut r));
    let per_sec = |m: u8| swapped[m as usize] as f64 / cycles as f64;
    println!(
        "\nsnapshot swap summary ({POLICIES} policies): one PATCH applied and published in \
         {apply_ms:.2} ms (median of 30); reader {:.0} k events/s with the writer idle, {:.0} k \
         events/s while it published back to back ({:.0} versions/s), {:.0} k events/s at {:.0} \
         versions/s; control: {:.0} k events/s with the other core busy on unrelated work \
         ({:.1}% slower than idle)",
        idle / 1e3,
        busy / 1e3,
        per_sec(BACK_TO_BACK),
        paced / 1e3,
        per_sec(PACED),
        spin / 1e3,
        (1.0 - spin / idle) * 100.0,
    );
    println!(
        "paired slowdowns over {cycles} cycles (median, min..max): back to back {:.1}% \
         ({:.1}..{:.1}), paced {:.1}% ({:.1}..{:.1}), control {:.1}% ({:.1}..{:.1})",
        paired[0].0 * 100.0,
        paired[0].1 * 100.0,
        paired[0].2 * 100.0,
        paired[1].0 * 100.0,
        paired[1].1 * 100.0,
        paired[1].2 * 100.0,
        paired[2].0 * 100.0,
        paired[2].1 * 100.0,
        paired[2].2 * 100.0,
    );
    for (what, (slowdown, ..)) in [("back-to-back swaps", paired[0]), ("10 swaps/s", paired[1])] {
        common::report(
            &format!("reader slowdown during {what} of a 10,000-policy set (paired)"),
            format!("{:.1}%", slowdown * 100.0),
            "<= 10%",
            slowdown <= 0.10,
        );
    }
    c.final_summary();
}
