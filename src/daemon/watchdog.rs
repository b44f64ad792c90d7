//! The watchdog: is work waiting that nobody makes progress on?
//!
//! The pipeline and the control owner each record a heartbeat whenever they finish a unit of
//! work. Independently of them (so that it sees a wedged pipeline, which stops calling `recv()`
//! and with it librdkafka's statistics), a task reads every few seconds the topic ends and the
//! groups' committed offsets, and publishes the lag from them. When this instance holds
//! partitions with lag and its heartbeat is older than `watchdog.deadline_secs`, it is stalled:
//! `/healthz` answers 503 (a liveness probe restarts it) and `/readyz` is not ready, until
//! progress resumes.
//!
//! The same readings watch each group as a whole: when its committed offsets have not moved
//! for `watchdog.group_deadline_secs` while work waits, and this instance holds none of its
//! partitions, nobody is making progress and this instance may be the reason (a broker can
//! hand a member an empty assignment after the group's leader died mid-rebalance: tansu 0.6
//! does). It then asks its consumer to leave and join the group again
//! (`eventmatchd_group_rejoins_total`), at most once per deadline, and is not ready meanwhile.
//! While any member makes progress the committed offsets move, so idle extra members (more
//! instances than partitions) are left alone. Nor does a member rejoin while a rebalance it
//! takes part in is pending (its partitions revoked, no assignment yet) for less than the
//! session timeout plus the deadline: the coordinator legitimately waits that long for a member
//! that died without leaving (kill -9), and rejoining would not shorten the wait.

use crate::kafka::{self, ReaderContext};
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One component's progress, written by its task and read by the watchdog. Atomics and a
/// short-held mutex: the writer touches them once per batch, the reader every few seconds.
#[derive(Debug, Default)]
pub struct Beat {
    /// Unix ms of the last finished unit of work (or of start).
    last_ms: AtomicI64,
    /// The partitions this component holds now (set by the rebalance callbacks).
    held: Mutex<Vec<i32>>,
    /// At least one assignment has been received (an empty one included).
    joined: AtomicBool,
    /// Partitions revoked and no assignment since: a rebalance is pending.
    rebalancing: AtomicBool,
    stalled: AtomicBool,
    /// The group makes no progress with work waiting and this instance holds none of it.
    orphaned: AtomicBool,
    /// Wakes the consumer's task to leave and join its group again.
    pub rejoin: tokio::sync::Notify,
    /// Counts this instance's assignment changes: a rebalance restarts the group clock.
    epoch: std::sync::atomic::AtomicU64,
}

impl Beat {
    pub fn new() -> Arc<Beat> {
        let b = Beat::default();
        b.last_ms.store(now_ms(), Ordering::Relaxed);
        Arc::new(b)
    }

    /// A unit of work finished (a batch acknowledged, a command emitted).
    pub fn progress(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn assigned(&self, parts: Vec<i32>) {
        if let Ok(mut h) = self.held.lock() {
            *h = parts;
        }
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.joined.store(true, Ordering::Relaxed);
        self.rebalancing.store(false, Ordering::Relaxed);
        // A new assignment starts the clock again: catching up after a takeover is progress.
        self.progress();
    }

    pub fn revoked(&self) {
        if let Ok(mut h) = self.held.lock() {
            h.clear();
        }
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.rebalancing.store(true, Ordering::Relaxed);
    }

    pub fn held(&self) -> Vec<i32> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    pub fn orphaned(&self) -> bool {
        self.orphaned.load(Ordering::Relaxed)
    }

    fn age(&self) -> Duration {
        Duration::from_millis((now_ms() - self.last_ms.load(Ordering::Relaxed)).max(0) as u64)
    }
}

/// Whether a component is stalled: it holds partitions with work waiting and has made no
/// progress for longer than the deadline. Pure, for the tests.
pub fn is_stalled(lag_of_held: i64, age: Duration, deadline: Duration) -> bool {
    lag_of_held > 0 && age > deadline
}

/// Whether this instance should rejoin a group: it holds none of its partitions, work waits,
/// and the group's committed offsets have not moved for longer than the deadline (plus the
/// session timeout while a rebalance is pending: the coordinator may be waiting for a dead
/// member's session to end). Pure, for the tests.
pub fn should_rejoin(
    holds_none: bool,
    group_lag: i64,
    unchanged: Duration,
    deadline: Duration,
    pending_rebalance: Option<Duration>,
) -> bool {
    let deadline = deadline + pending_rebalance.unwrap_or_default();
    holds_none && group_lag > 0 && unchanged > deadline
}

/// What the watchdog watches.
pub struct Watched {
    pub name: &'static str,
    pub beat: Arc<Beat>,
    pub group: String,
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// Lag per partition of a group on a topic: end offset minus committed offset (the start of
/// the partition when nothing is committed).
/// Lag per partition and the sum of the committed offsets.
fn group_lag(
    probe: &BaseConsumer<ReaderContext>,
    offsets: &BaseConsumer,
    topic: &str,
    parts: &[i32],
) -> Option<(HashMap<i32, i64>, i64)> {
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition(topic, p);
    }
    let committed = offsets
        .committed_offsets(tpl, Duration::from_secs(5))
        .ok()?;
    let mut lag = HashMap::new();
    let mut committed_sum = 0;
    for e in committed.elements() {
        let (low, high) = probe
            .fetch_watermarks(topic, e.partition(), Duration::from_secs(5))
            .ok()?;
        let from = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        committed_sum += from;
        lag.insert(e.partition(), (high - from).max(0));
    }
    Some((lag, committed_sum))
}

/// Runs until shutdown: publishes group lag and the stalled flags.
pub async fn run(
    settings: crate::config::Settings,
    watched: Vec<Watched>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let deadline = Duration::from_secs(settings.watchdog.deadline_secs);
    let group_deadline = Duration::from_secs(settings.watchdog.group_deadline_secs);
    let session_timeout = settings.kafka.session_timeout();
    // Per watched group: the committed sum and this instance's assignment epoch last seen,
    // since when neither changed, and the last rejoin. A rebalance this instance takes part in
    // restarts the clock: the group is busy handing partitions over, not stuck.
    let start = std::time::Instant::now();
    let mut groups: Vec<(i64, u64, std::time::Instant, Option<std::time::Instant>)> =
        watched.iter().map(|_| (-1, 0, start, None)).collect();
    let every = Duration::from_secs(settings.watchdog.interval_secs);
    let probe: BaseConsumer<ReaderContext> =
        match kafka::reader_config(&settings, "watchdog").create_with_context(ReaderContext) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "watchdog: cannot create its consumer; not watching");
                return;
            }
        };
    // One client per group to read its committed offsets (never subscribed: it does not join).
    let mut offsets: Vec<BaseConsumer> = Vec::new();
    for w in &watched {
        match kafka::reader_config(&settings, "watchdog-offsets")
            .set("group.id", &w.group)
            .create()
        {
            Ok(c) => offsets.push(c),
            Err(e) => {
                tracing::error!(error = %e, "watchdog: cannot create its consumer; not watching");
                return;
            }
        }
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        for ((w, off), state) in watched.iter().zip(&offsets).zip(groups.iter_mut()) {
            let Some((lag, committed)) =
                tokio::task::block_in_place(|| group_lag(&probe, off, &w.topic, &w.partitions))
            else {
                // The broker is not answering: nothing is known to be waiting.
                continue;
            };
            for (p, l) in &lag {
                metrics
                    .group_lag
                    .with_label_values(&[&w.group, &w.topic, &p.to_string()])
                    .set(*l);
            }
            let held = w.beat.held();
            let waiting: i64 = held.iter().filter_map(|p| lag.get(p)).sum();
            let age = w.beat.age();
            metrics
                .progress_age
                .with_label_values(&[w.name])
                .set(if held.is_empty() {
                    0.0
                } else {
                    age.as_secs_f64()
                });
            let stalled = is_stalled(waiting, age, deadline);
            if stalled != w.beat.stalled.swap(stalled, Ordering::Relaxed) {
                if stalled {
                    tracing::error!(
                        component = w.name,
                        waiting,
                        seconds = age.as_secs(),
                        "no progress while work is waiting: stalled (/healthz answers 503)"
                    );
                } else {
                    tracing::info!(component = w.name, "progress again: no longer stalled");
                }
            }
            metrics
                .stalled
                .with_label_values(&[w.name])
                .set(i64::from(stalled));

            let now = std::time::Instant::now();
            let epoch = w.beat.epoch.load(Ordering::Relaxed);
            if committed != state.0 || epoch != state.1 {
                *state = (committed, epoch, now, state.3);
            }
            let total: i64 = lag.values().sum();
            let pending = w
                .beat
                .rebalancing
                .load(Ordering::Relaxed)
                .then_some(session_timeout);
            let orphaned = w.beat.joined()
                && should_rejoin(
                    held.is_empty(),
                    total,
                    now - state.2,
                    group_deadline,
                    pending,
                );
            w.beat.orphaned.store(orphaned, Ordering::Relaxed);
            let rejoined_lately = state.3.is_some_and(|t| now - t < group_deadline);
            if orphaned && !rejoined_lately {
                tracing::warn!(
                    component = w.name,
                    group = %w.group,
                    waiting = total,
                    seconds = (now - state.2).as_secs(),
                    "the group makes no progress while work waits, and this instance holds none of its partitions: rejoining the group"
                );
                metrics.group_rejoins.with_label_values(&[w.name]).inc();
                w.beat.rejoin.notify_one();
                state.3 = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_needs_waiting_work_and_an_old_beat() {
        let d = Duration::from_secs(60);
        assert!(is_stalled(5, Duration::from_secs(61), d));
        assert!(
            !is_stalled(0, Duration::from_secs(600), d),
            "idle is healthy"
        );
        assert!(!is_stalled(5, Duration::from_secs(59), d));
    }

    #[test]
    fn rejoin_only_when_nobody_progresses_and_this_instance_holds_nothing() {
        let d = Duration::from_secs(30);
        let long = Duration::from_secs(31);
        assert!(should_rejoin(true, 10, long, d, None));
        assert!(
            !should_rejoin(false, 10, long, d, None),
            "holding partitions: the stall check's job"
        );
        assert!(
            !should_rejoin(true, 0, long, d, None),
            "nothing waits: an idle member"
        );
        assert!(
            !should_rejoin(true, 10, Duration::from_secs(5), d, None),
            "someone made progress lately"
        );
        // A pending rebalance: the coordinator may wait out a dead member's 45 s session.
        let session = Some(Duration::from_secs(45));
        assert!(!should_rejoin(true, 10, long, d, session));
        assert!(!should_rejoin(
            true,
            10,
            Duration::from_secs(74),
            d,
            session
        ));
        assert!(should_rejoin(true, 10, Duration::from_secs(76), d, session));
    }

    #[test]
    fn an_assignment_restarts_the_clock() {
        let b = Beat::new();
        b.last_ms.store(0, Ordering::Relaxed);
        assert!(b.age() > Duration::from_secs(1000));
        assert!(!b.joined());
        b.assigned(vec![0, 2]);
        assert!(b.age() < Duration::from_secs(5));
        assert_eq!(b.held(), vec![0, 2]);
        assert!(!b.rebalancing.load(Ordering::Relaxed));
        b.revoked();
        assert!(b.held().is_empty());
        assert!(b.joined());
        assert!(
            b.rebalancing.load(Ordering::Relaxed),
            "revoked, not yet assigned"
        );
        b.assigned(vec![]);
        assert!(
            !b.rebalancing.load(Ordering::Relaxed),
            "an empty assignment ends the rebalance: the watchdog's normal deadline applies"
        );
    }
}
