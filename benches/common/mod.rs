//! Shared by the benches (and, by path, `examples/bench_e2e.rs`): the workload, an allocation
//! counter, the side-by-side timer that turns two measurements taken in one run into the ratio
//! a target is stated in, and RSS from /proc.
#![allow(dead_code)]

pub mod process;
pub mod workload;

use eventmatchd::catalog::Catalog;
use eventmatchd::engine::{Engine, RecordSource};
use eventmatchd::policyset::PolicySet;
use std::sync::Arc;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts allocations; the system allocator (the daemon's) does the work. A bench that wants
/// allocations per event declares `#[global_allocator] static ALLOC: Counting = Counting;`.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations made by `f` (all threads; benches call it single-threaded).
pub fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = allocations();
    let out = f();
    (out, allocations() - before)
}

/// Nanoseconds per element of `f`, which processes `elements` elements per call: the median
/// of `rounds` timed calls after one warm-up call.
pub fn ns_per_element(elements: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / elements as f64
        })
        .collect();
    median(&mut samples)
}

pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Runs the measurements of a comparison interleaved (A B C A B C ...) so that a slow phase
/// of a shared machine hits all of them alike; returns each one's median ns per element.
/// Each timed call follows an untimed one of the same function, so no measurement pays for
/// the cache the previous one evicted. `elements[i]` is what one call of `fs[i]` processes.
pub fn interleaved(elements: &[usize], rounds: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (i, f) in fs.iter_mut().enumerate() {
            f();
            let t = Instant::now();
            f();
            samples[i].push(t.elapsed().as_nanos() as f64 / elements[i] as f64);
        }
    }
    samples.iter_mut().map(|s| median(s)).collect()
}

/// One line of the summary a bench prints after criterion's output: the value, the target,
/// and whether it holds. Collected in `target/bench-summary.txt` by scripts/bench-summary.sh.
pub fn report(name: &str, value: String, target: &str, met: bool) {
    println!(
        "SUMMARY {name}: {value} (target {target}) {}",
        if met { "MET" } else { "MISSED" }
    );
}

/// Resident set size of a process (this one for `None`), from /proc (Linux), in bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_string(),
        |p| format!("/proc/{p}/status"),
    );
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// This process's CPU time so far, user and system, in seconds (from /proc; 0 where it is
/// not readable). Clock ticks of 10 ms: for spans of seconds.
pub fn cpu_secs() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name (field 2) may hold spaces; fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| -> f64 {
        rest.split_whitespace()
            .nth(n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    // utime and stime are fields 14 and 15, the 12th and 13th after the parenthesis.
    (field(11), field(12))
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Criterion settings for a noisy 2-core machine: short warm-up, enough samples, bounded
/// time, so `cargo bench` stays in minutes.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

/// Whether criterion runs in profiling mode (`--profile-time N`, e.g. under a profiler): the
/// benches then skip their summaries so the profile shows only the code measured.
pub fn profiling() -> bool {
    std::env::args().any(|a| a == "--profile-time")
}

/// Where the benches' event records "come from" (only dead letters would show it).
pub fn source() -> RecordSource<'static> {
    RecordSource {
        topic: "authentik.events",
        partition: 0,
        offset: 0,
        key: None,
        timestamp: chrono::DateTime::UNIX_EPOCH,
    }
}

/// An engine with an empty notification index on a prebuilt policy set (holding up to two
/// million notifications).
pub fn engine(set: Arc<PolicySet>) -> Engine {
    let e = Engine::new(Catalog::default(), 2_000_000);
    e.replace_policy_set(set);
    e
}
