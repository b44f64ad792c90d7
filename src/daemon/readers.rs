//! The two logs every instance reads in full, from the beginning, by assignment (never as a
//! group member):
//!
//! * the **control topic**, applied command by command to build the policy set. Notification
//!   commands (seen PATCH, DELETE, `mark_all_seen`) are not applied here: their effects are
//!   records on the notification topic, which the control owner applies and emits once (see
//!   [`crate::effects`]); here they are only queued for it.
//! * the **notification topic**, materialized into the notification index, so every instance
//!   knows every notification any instance produced (for seen updates and so that an event
//!   reprocessed after a rebalance never re-emits, unseen, a notification that exists).
//!
//! Each reader publishes how far it has read ([`Progress`]), which start-up and rebalances
//! wait on.

use crate::control::{self, CommandSource};
use crate::engine::{Engine, OutRecord};
use crate::kafka::ReaderContext;
use crate::metrics::Metrics;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these mutexes stays valid if a holder panicked; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default, Clone, Copy)]
struct PartitionProgress {
    /// The next offset the reader will apply.
    next: i64,
    /// `next` when the reader last reached the end of the partition (librdkafka's
    /// end-of-partition event, which comes from the fetch response).
    eof_at: Option<i64>,
}

/// How far a reader has read, per partition.
///
/// "Caught up to an end" needs two facts: the position is at or past the end the broker
/// reported (ListOffsets), and the reader has seen the end of the partition at that
/// position. The second alone could miss records written just before the wait began; the
/// first alone is not enough on brokers whose ListOffsets answer lags behind multi-record
/// batches (tansu 0.6 does), and it cannot see an empty partition's real start either.
#[derive(Default)]
pub struct Progress {
    /// Written by one reader task, read by waiters; a mutex held for a map insert or lookup.
    parts: Mutex<HashMap<i32, PartitionProgress>>,
}

/// What a wait needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The reader has applied everything before the target offset.
    Applied,
    /// The reader has applied everything before the target and is at the partition's end.
    CaughtUp,
}

impl Progress {
    pub fn advance(&self, partition: i32, next_offset: i64) {
        lock(&self.parts).entry(partition).or_default().next = next_offset;
    }

    /// The reader reached the end of a partition at `position` (the consumer's position).
    pub fn mark_eof(&self, partition: i32, position: Option<i64>) {
        let mut parts = lock(&self.parts);
        let p = parts.entry(partition).or_default();
        if let Some(pos) = position {
            p.next = p.next.max(pos);
        }
        p.eof_at = Some(p.next);
    }

    pub fn next(&self, partition: i32) -> i64 {
        lock(&self.parts)
            .get(&partition)
            .map(|p| p.next)
            .unwrap_or(0)
    }

    /// Whether every partition is past its target (and, for [`Reach::CaughtUp`], at its end).
    pub fn reached(&self, targets: &HashMap<i32, i64>, reach: Reach) -> bool {
        let parts = lock(&self.parts);
        targets.iter().all(|(p, t)| {
            let pp = parts.get(p).copied().unwrap_or_default();
            let past = pp.next >= *t;
            match reach {
                Reach::Applied => past,
                Reach::CaughtUp => past && pp.eof_at == Some(pp.next),
            }
        })
    }

    /// Waits until [`Progress::reached`]; false if shutdown came first.
    pub async fn wait_for(
        &self,
        targets: &HashMap<i32, i64>,
        reach: Reach,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            if self.reached(targets, reach) {
                return true;
            }
            if *shutdown.borrow() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// What the control owner emits for one command.
#[derive(Debug)]
pub enum Pending {
    /// A policy-set command already applied by the reader; its records are ready.
    Ready(Vec<OutRecord>),
    /// A notification command, applied by the owner when it emits it.
    Deferred(Vec<u8>),
}

/// Commands read but whose side effects the control group has not yet committed, by
/// (partition, offset). The reader adds, the owner takes; non-owners prune below the group's
/// committed offsets. A mutex: one writer, one reader, touched once per control command.
#[derive(Default)]
pub struct Outbox {
    entries: Mutex<BTreeMap<(i32, i64), Pending>>,
    /// Per partition, offsets below this are known emitted and are not kept.
    floor: Mutex<HashMap<i32, i64>>,
}

impl Outbox {
    pub fn set_floor(&self, partition: i32, offset: i64) {
        let mut floor = lock(&self.floor);
        let f = floor.entry(partition).or_insert(0);
        if offset > *f {
            *f = offset;
        }
        drop(floor);
        lock(&self.entries).retain(|(p, o), _| *p != partition || *o >= offset);
    }

    pub fn floor(&self, partition: i32) -> i64 {
        lock(&self.floor).get(&partition).copied().unwrap_or(0)
    }

    pub fn put(&self, partition: i32, offset: i64, p: Pending) {
        if offset >= self.floor(partition) {
            lock(&self.entries).insert((partition, offset), p);
        }
    }

    pub fn take(&self, partition: i32, offset: i64) -> Option<Pending> {
        lock(&self.entries).remove(&(partition, offset))
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies one control record as the reader does; returns what the owner will emit.
pub fn read_control_record(
    engine: &Engine,
    metrics: &Metrics,
    payload: &[u8],
    source: CommandSource,
) -> Pending {
    if control::is_notification_command(payload) {
        return Pending::Deferred(payload.to_vec());
    }
    let outcome = engine.apply_command(payload, source);
    metrics
        .control_commands
        .with_label_values(&[
            outcome.resource,
            &outcome.method,
            &outcome.status.to_string(),
        ])
        .inc();
    if outcome.changed {
        publish_policy_gauges(engine, metrics);
    }
    Pending::Ready(outcome.records)
}

pub fn publish_policy_gauges(engine: &Engine, metrics: &Metrics) {
    let snap = engine.snapshot();
    metrics.policy_set_version.set(snap.version() as i64);
    metrics
        .policy_set_size
        .with_label_values(&["policies"])
        .set(snap.policies().len() as i64);
    metrics
        .policy_set_size
        .with_label_values(&["rules"])
        .set(snap.rules().len() as i64);
    metrics
        .policy_set_size
        .with_label_values(&["bindings"])
        .set(snap.bindings().len() as i64);
    metrics.policy_queries_invalid.set(
        snap.policies()
            .values()
            .filter(|p| p.query_raises())
            .count() as i64,
    );
}

/// The consumer's current position in a partition of its assignment.
pub fn position(consumer: &StreamConsumer<ReaderContext>, partition: i32) -> Option<i64> {
    let tpl = consumer.position().ok()?;
    tpl.elements()
        .iter()
        .find(|e| e.partition() == partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
}

/// Assigns every partition of `topic` from the beginning.
pub fn assign_all(
    consumer: &StreamConsumer<ReaderContext>,
    topic: &str,
    parts: &[i32],
) -> rdkafka::error::KafkaResult<()> {
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)
}

/// Reads the control topic forever (until shutdown), applying commands.
pub async fn run_control_reader(
    consumer: StreamConsumer<ReaderContext>,
    engine: Arc<Engine>,
    metrics: Metrics,
    progress: Arc<Progress>,
    outbox: Arc<Outbox>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.changed() => return,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                let pos = position(&consumer, p);
                tracing::trace!(partition = p, position = ?pos, applied = progress.next(p), "control topic: end of partition");
                progress.mark_eof(p, pos);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "control topic read error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (partition, offset) = (msg.partition(), msg.offset());
        let payload = msg.payload().unwrap_or_default();
        let below_floor = offset < outbox.floor(partition);
        if below_floor && control::is_notification_command(payload) {
            // Already emitted by an earlier owner: its effects are on the notification topic.
        } else {
            let pending = read_control_record(
                &engine,
                &metrics,
                payload,
                CommandSource { partition, offset },
            );
            if !below_floor {
                outbox.put(partition, offset, pending);
            }
        }
        if let Some(ts) = msg.timestamp().to_millis() {
            let now = chrono::Utc::now().timestamp_millis();
            metrics
                .control_apply_latency
                .observe(((now - ts).max(0) as f64) / 1000.0);
        }
        progress.advance(partition, offset + 1);
    }
}

/// Reads the notification topic forever (until shutdown) into the index.
pub async fn run_notification_tail(
    consumer: StreamConsumer<ReaderContext>,
    engine: Arc<Engine>,
    metrics: Metrics,
    progress: Arc<Progress>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.changed() => return,
        };
        match msg {
            Ok(m) => {
                tracing::trace!(
                    key = %String::from_utf8_lossy(m.key().unwrap_or_default()),
                    partition = m.partition(),
                    offset = m.offset(),
                    "notification read back"
                );
                let rendered = crate::kafka::header(&m, crate::notify::HEADER_RENDERED);
                if !engine.restore_notification(m.key(), m.payload(), rendered) {
                    tracing::debug!(
                        partition = m.partition(),
                        offset = m.offset(),
                        "skipped a record that is not a notification"
                    );
                }
                metrics.notifications_held.set(engine.index().len() as i64);
                progress.advance(m.partition(), m.offset() + 1);
            }
            Err(KafkaError::PartitionEOF(p)) => progress.mark_eof(p, position(&consumer, p)),
            Err(e) => {
                tracing::warn!(error = %e, "notification topic read error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_compares_positions_per_partition() {
        let p = Progress::default();
        let targets: HashMap<i32, i64> = [(0, 3), (1, 0)].into_iter().collect();
        assert!(!p.reached(&targets, Reach::Applied));
        p.advance(0, 2);
        assert!(!p.reached(&targets, Reach::Applied));
        p.advance(0, 3);
        assert!(
            p.reached(&targets, Reach::Applied),
            "target 0 needs nothing read"
        );
    }

    #[test]
    fn caught_up_also_needs_the_end_of_each_partition() {
        let p = Progress::default();
        // The broker said the end is 2, but the partition really holds 5 records.
        let targets: HashMap<i32, i64> = [(0, 2), (1, 0)].into_iter().collect();
        p.advance(0, 2);
        assert!(!p.reached(&targets, Reach::CaughtUp), "no end seen yet");
        p.advance(0, 5);
        p.mark_eof(0, Some(5));
        assert!(
            !p.reached(&targets, Reach::CaughtUp),
            "partition 1 has not reported its end"
        );
        p.mark_eof(1, Some(7));
        assert!(p.reached(&targets, Reach::CaughtUp));
        assert_eq!(p.next(1), 7, "an empty partition starts at its position");
        p.advance(0, 6);
        assert!(
            !p.reached(&targets, Reach::CaughtUp),
            "a new record moves past the end seen"
        );
    }

    #[test]
    fn outbox_keeps_only_entries_at_or_above_the_floor() {
        let o = Outbox::default();
        o.put(0, 1, Pending::Ready(vec![]));
        o.put(0, 2, Pending::Deferred(b"x".to_vec()));
        o.set_floor(0, 2);
        assert!(o.take(0, 1).is_none());
        assert!(matches!(o.take(0, 2), Some(Pending::Deferred(_))));
        o.put(0, 1, Pending::Ready(vec![]));
        assert!(o.is_empty(), "below the floor is not kept");
        o.set_floor(0, 1);
        assert_eq!(o.floor(0), 2, "the floor never moves back");
    }
}
