//! The event pipeline: consume events in the consumer group, evaluate them, produce their
//! outputs, and store each input offset only after everything it caused is acknowledged
//! (at-least-once; auto-commit on, automatic offset store off).
//!
//! Records are handled in batches: whatever the consumer has ready (up to
//! [`MAX_BATCH`]) is evaluated, its outputs are produced together, and the batch's offsets are
//! stored once all are acknowledged. librdkafka runs rebalance callbacks inside `recv()`,
//! which is called only while a batch is being collected, never while it is evaluated or its
//! outputs are in flight: the revoke callback commits synchronously what earlier batches
//! stored, and records of a revoked partition already collected into the batch are dropped
//! before evaluation (their offsets were never stored, so the next owner processes them).
//! Collecting stops at a rebalance.
//!
//! What remains: an instance that stops polling for longer than `max.poll.interval.ms` or
//! its session (paused, partitioned) loses its partitions without a callback while its batch
//! is in flight, and may deliver it after the new owner's records. Notification states carry
//! a version and readers never take an older one (see [`crate::index`]); the control owner
//! re-emits the current state over such a late write.
//!
//! After an assignment, the batch waits until the notification tail has read the notification
//! topic up to its current end: a partition taken over from another instance may replay events
//! whose notifications that instance already produced, and they must be known (with their
//! `seen` flags) before the events are evaluated again.

use crate::config::Settings;
use crate::engine::{Engine, OutRecord, OutTopic, RecordSource};
use crate::kafka::{self, Output};
use crate::metrics::Metrics;
use crate::readers::{Progress, Reach};
use crate::watchdog::Beat;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Most records evaluated before their outputs are awaited.
pub const MAX_BATCH: usize = 5_000;

pub struct PipelineContext {
    metrics: Metrics,
    /// Set on every assignment: the next batch waits for the notification tail first.
    assigned: AtomicBool,
    /// Partitions revoked since the batch being collected began; its records of them are
    /// dropped. Written by the callback inside `recv()`, read by the same task after it.
    revoked: std::sync::Mutex<Vec<i32>>,
    /// Progress and held partitions, for the watchdog and `/readyz`.
    pub beat: Arc<Beat>,
    group: String,
}

impl ClientContext for PipelineContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (id, p) in &t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" bucket; lag -1 means unknown.
                if *id >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &id.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        kafka::note_commit(&self.metrics, &self.group, "event", &result, offsets);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(tpl.elements().iter().map(|e| e.partition()));
            }
            self.beat.revoked();
            // Nothing is in flight (see the module doc): commit everything stored, now.
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!(
                    partitions = tpl.count(),
                    "partitions revoked; offsets committed"
                ),
                Err(e) => tracing::debug!(error = %e, "commit on revoke (nothing stored is fine)"),
            }
            for e in tpl.elements() {
                let _ = self
                    .metrics
                    .consumer_lag
                    .remove_label_values(&[e.topic(), &e.partition().to_string()]);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "event partitions assigned");
                self.beat
                    .assigned(tpl.elements().iter().map(|e| e.partition()).collect());
                self.assigned.store(true, Ordering::SeqCst);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

pub fn consumer(
    settings: &Settings,
    metrics: Metrics,
    beat: Arc<Beat>,
) -> Result<StreamConsumer<PipelineContext>, rdkafka::error::KafkaError> {
    kafka::group_config(
        settings,
        &settings.kafka.group_id,
        &settings.kafka.instance_id,
    )
    .create_with_context(PipelineContext {
        metrics,
        assigned: AtomicBool::new(false),
        revoked: std::sync::Mutex::new(Vec::new()),
        beat,
        group: settings.kafka.group_id.clone(),
    })
}

pub struct PipelineDeps {
    pub settings: Settings,
    pub engine: Arc<Engine>,
    pub metrics: Metrics,
    pub output: Output,
    /// How far the notification tail has read, and a consumer to ask for the topic's end.
    pub tail_progress: Arc<Progress>,
    pub tail_watermarks: Arc<dyn Fn() -> Option<HashMap<i32, i64>> + Send + Sync>,
}

fn message_time(m: &BorrowedMessage<'_>) -> Option<DateTime<Utc>> {
    m.timestamp()
        .to_millis()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
}

/// Runs until shutdown; on return the last batch is acknowledged and its offsets committed.
pub async fn run(
    consumer: StreamConsumer<PipelineContext>,
    deps: PipelineDeps,
    mut shutdown: watch::Receiver<bool>,
) {
    let topic = deps.settings.topics.events.clone();
    if let Err(e) = consumer.subscribe(&[topic.as_str()]) {
        tracing::error!(error = %e, "cannot subscribe to the events topic");
        return;
    }
    loop {
        let first = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.changed() => break,
            _ = consumer.context().beat.rejoin.notified() => {
                rejoin(&consumer, &topic);
                continue;
            }
        };
        let mut batch = Vec::with_capacity(64);
        match first {
            Ok(m) => batch.push(m),
            Err(e) => {
                tracing::warn!(error = %e, "events read error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        // A revoke in the first `recv` came before every record of the batch: nothing to drop.
        clear_revoked(&consumer);
        // Records collected before the `recv` whose callback revoked their partition.
        let mut cutoff = 0;
        while batch.len() < MAX_BATCH {
            let before = batch.len();
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(m),
                Some(Err(e)) => tracing::warn!(error = %e, "events read error"),
                None => break,
            }
            if has_revoked(&consumer) {
                cutoff = before;
                break;
            }
            if consumer.context().assigned.load(Ordering::SeqCst) {
                break;
            }
        }
        let revoked = clear_revoked(&consumer);
        if !revoked.is_empty() && cutoff > 0 {
            let before = batch.len();
            let mut i = 0;
            batch.retain(|m| {
                i += 1;
                i > cutoff || !revoked.contains(&m.partition())
            });
            tracing::info!(
                dropped = before - batch.len(),
                partitions = ?revoked,
                "partitions revoked while collecting a batch: their records are left to the next owner"
            );
            if batch.is_empty() {
                continue;
            }
        }
        if consumer.context().assigned.swap(false, Ordering::SeqCst) {
            let mut first: HashMap<i32, i64> = HashMap::new();
            for m in &batch {
                first.entry(m.partition()).or_insert(m.offset());
            }
            for (p, o) in &first {
                tracing::info!(partition = p, offset = o, "resuming event partition");
            }
            if let Some(ends) = tokio::task::block_in_place(|| (deps.tail_watermarks)()) {
                if !deps
                    .tail_progress
                    .wait_for(&ends, Reach::CaughtUp, &mut shutdown)
                    .await
                {
                    break;
                }
            }
        }
        let t_batch = std::time::Instant::now();
        let (records, origins) = evaluate_batch(&deps, &batch);
        let eval_micros = t_batch.elapsed().as_micros() as u64;
        if !records.is_empty() {
            let rejected = deps.output.deliver(&records, None).await;
            if !rejected.is_empty() {
                replace_rejected(&deps, &batch, &records, &origins, rejected).await;
            }
        }
        tracing::trace!(
            size = batch.len(),
            outputs = records.len(),
            eval_micros,
            micros = t_batch.elapsed().as_micros() as u64,
            "batch evaluated and its outputs acknowledged"
        );
        let mut offsets: HashMap<i32, i64> = HashMap::new();
        for m in &batch {
            let e = offsets.entry(m.partition()).or_insert(-1);
            *e = (*e).max(m.offset());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            let _ = tpl.add_partition_offset(&topic, p, Offset::Offset(o + 1));
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            // The partition was revoked meanwhile: the next owner reprocesses (idempotently).
            tracing::debug!(error = %e, "storing offsets");
        }
        consumer.context().beat.progress();
        let now = Utc::now();
        for m in &batch {
            if let Some(ts) = message_time(m) {
                let secs = (now - ts).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                deps.metrics.processing_latency.observe(secs);
            }
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::info!("event offsets committed at shutdown"),
        Err(e) => tracing::debug!(error = %e, "final commit (nothing stored is fine)"),
    }
    consumer.unsubscribe();
}

fn source_of<'a>(m: &'a BorrowedMessage<'a>, fallback: DateTime<Utc>) -> RecordSource<'a> {
    RecordSource {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key(),
        timestamp: message_time(m).unwrap_or(fallback),
    }
}

/// Records the broker refused permanently (over its own size limit, say, which may be lower
/// than the producer's): each event that caused one gets one compact dead letter instead, and
/// a refused notification is no longer held. A dead letter refused in turn is logged and
/// dropped: nothing may wedge the partition.
async fn replace_rejected(
    deps: &PipelineDeps,
    batch: &[BorrowedMessage<'_>],
    records: &[OutRecord],
    origins: &[u32],
    rejected: Vec<crate::kafka::Rejected>,
) {
    let fallback = Utc::now();
    let mut done = std::collections::HashSet::new();
    let mut replacements = Vec::new();
    for r in rejected {
        let rec = &records[r.index];
        if rec.topic == OutTopic::Notifications {
            if let Some(pk) = rec
                .key
                .as_deref()
                .and_then(|k| uuid::Uuid::parse_str(k).ok())
            {
                deps.engine.index().discard(&pk);
            }
        }
        let origin = origins[r.index] as usize;
        if rec.topic == OutTopic::Dlq || !done.insert(origin) {
            continue;
        }
        let m = &batch[origin];
        let src = source_of(m, fallback);
        replacements.push(deps.engine.output_dead_letter(
            m.payload().unwrap_or_default(),
            &src,
            rec.topic,
            &r.error.to_string(),
        ));
        deps.metrics
            .events_invalid
            .with_label_values(&["output_too_large"])
            .inc();
    }
    if !replacements.is_empty() {
        for r in deps.output.deliver(&replacements, None).await {
            tracing::error!(error = %r.error, "the compact dead letter was refused too; dropped");
        }
    }
}

/// Leaves the group and joins it again (asked by the watchdog, see [`crate::watchdog`]).
fn rejoin(consumer: &StreamConsumer<PipelineContext>, topic: &str) {
    consumer.unsubscribe();
    match consumer.subscribe(&[topic]) {
        Ok(()) => tracing::info!("left and joined the event group again"),
        Err(e) => tracing::error!(error = %e, "joining the event group again failed"),
    }
}

fn clear_revoked(consumer: &StreamConsumer<PipelineContext>) -> Vec<i32> {
    consumer
        .context()
        .revoked
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default()
}

fn has_revoked(consumer: &StreamConsumer<PipelineContext>) -> bool {
    consumer
        .context()
        .revoked
        .lock()
        .map(|r| !r.is_empty())
        .unwrap_or(false)
}

/// Evaluates a batch; returns the records to produce and, for each, the index in `batch` of
/// the event that caused it.
fn evaluate_batch(
    deps: &PipelineDeps,
    batch: &[BorrowedMessage<'_>],
) -> (Vec<OutRecord>, Vec<u32>) {
    let mut records = Vec::new();
    let mut origins = Vec::new();
    let fallback = Utc::now();
    for (i, m) in batch.iter().enumerate() {
        let src = source_of(m, fallback);
        let out = deps.engine.process_record(m.payload(), &src);
        if let Some(reason) = out.skipped {
            deps.metrics
                .events_skipped
                .with_label_values(&[reason])
                .inc();
        }
        if let Some(err) = &out.invalid {
            deps.metrics
                .events_invalid
                .with_label_values(&[err.reason()])
                .inc();
            tracing::debug!(
                partition = m.partition(),
                offset = m.offset(),
                reason = err.reason(),
                "invalid event sent to the dead-letter topic"
            );
        }
        for n in &out.notifications {
            let rule = out
                .fired
                .iter()
                .find(|r| r.pk == n.rule)
                .map(|r| r.name.as_str())
                .unwrap_or("");
            deps.metrics
                .notifications_emitted
                .with_label_values(&[n.severity.as_str(), rule])
                .inc();
        }
        deps.metrics
            .executions_emitted
            .inc_by(out.executions as u64);
        if out.null_body > 0 {
            deps.metrics
                .notifications_dropped
                .with_label_values(&["null_body"])
                .inc_by(out.null_body as u64);
            tracing::warn!(
                partition = m.partition(),
                offset = m.offset(),
                rules = out.null_body,
                "context.message is null: no notification (authentik cannot store a null body)"
            );
        }
        if out.oversized {
            deps.metrics
                .events_invalid
                .with_label_values(&["output_too_large"])
                .inc();
            tracing::warn!(
                partition = m.partition(),
                offset = m.offset(),
                "an output of this event is too large to write; dead-lettered"
            );
        }
        origins.extend(std::iter::repeat_n(i as u32, out.records.len()));
        records.extend(out.records);
    }
    deps.metrics.events_consumed.inc_by(batch.len() as u64);
    deps.metrics.batch_size.observe(batch.len() as f64);
    deps.metrics
        .notifications_held
        .set(deps.engine.index().len() as i64);
    (records, origins)
}
