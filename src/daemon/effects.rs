//! Control side effects, emitted once per command by one instance.
//!
//! Every instance applies every control command (see [`crate::readers`]), but the result
//! record of a command, and the notification records a seen PATCH, DELETE or `mark_all_seen`
//! causes, must appear once. Kafka's group protocol picks the emitter: every instance is a
//! member of a second consumer group (`kafka.control_group_id`) on the control topic, which has
//! one partition, so exactly one member owns it at a time. The owner reads commands from the
//! group's committed offset, waits until its own reader has applied each one, emits its
//! effects, and stores the next offset only once they are acknowledged; a rebalance or restart
//! hands the partition to another member, which continues from the committed offset.
//!
//! Between an acknowledgement and the next commit a crash could make the next owner emit a
//! command again. To prevent that, every side-effect record carries the control partition and
//! offset it came from as headers, a command's result is produced only after its notification
//! records are acknowledged, and a new owner first reads the tail of the results topic to skip
//! commands whose result is already there.

use crate::config::Settings;
use crate::control::CommandSource;
use crate::engine::{Engine, OutRecord, OutTopic};
use crate::kafka::{
    self, ControlOrigin, Output, ReaderContext, HEADER_CONTROL_OFFSET, HEADER_CONTROL_PARTITION,
};
use crate::metrics::Metrics;
use crate::readers::{Outbox, Pending, Progress, Reach};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How many records at the end of each results partition a new owner reads to find what its
/// predecessor already emitted.
const RESULTS_SCAN_DEPTH: i64 = 10_000;

/// Tracks ownership of the control partition. Callbacks run inside `recv()` of the owner
/// loop, which polls only between commands, so nothing is in flight when they run.
pub struct OwnerContext {
    /// Partitions of the control topic this member owns.
    owned: Mutex<Vec<i32>>,
    /// Set on every assignment: the loop must scan the results topic before emitting.
    takeover: AtomicBool,
    /// Bumped on every assignment and revocation, so that a command read before one is not
    /// acted on after it (the loop holds commands while the process is suspect, see `freeze`).
    generation: AtomicU64,
    metrics: Metrics,
    /// Progress and held partitions, for the watchdog and `/readyz`.
    beat: Arc<crate::watchdog::Beat>,
    group: String,
}

impl ClientContext for OwnerContext {}

impl ConsumerContext for OwnerContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        kafka::note_commit(&self.metrics, &self.group, "control", &result, offsets);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.generation.fetch_add(1, Ordering::SeqCst);
            // Hand over cleanly: commit what was emitted so the next owner starts after it.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "commit on control revoke (nothing stored is fine)");
            }
            if let Ok(mut owned) = self.owned.lock() {
                owned.clear();
            }
            self.beat.revoked();
            self.metrics.control_owner.set(0);
            tracing::info!("control partition revoked: no longer emitting control side effects");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.generation.fetch_add(1, Ordering::SeqCst);
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if !parts.is_empty() {
                tracing::info!(partitions = ?parts, "control partition assigned: emitting control side effects");
                self.takeover.store(true, Ordering::SeqCst);
                self.metrics.control_owner.set(1);
            }
            self.beat.assigned(parts.clone());
            if parts.is_empty() {
                self.metrics.control_owner.set(0);
            }
            if let Ok(mut owned) = self.owned.lock() {
                *owned = parts;
            }
        }
    }
}

impl OwnerContext {
    /// Counts rebalances (assignments and revocations) seen by this member.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn owns_any(&self) -> bool {
        self.owned.lock().map(|o| !o.is_empty()).unwrap_or(false)
    }
}

pub fn owner_consumer(
    settings: &Settings,
    metrics: Metrics,
    beat: Arc<crate::watchdog::Beat>,
) -> Result<StreamConsumer<OwnerContext>, rdkafka::error::KafkaError> {
    let instance = match settings.kafka.instance_id.as_str() {
        "" => String::new(),
        id => format!("{id}-control"),
    };
    let mut cfg = kafka::group_config(settings, &settings.kafka.control_group_id, &instance);
    cfg.set("statistics.interval.ms", "0");
    cfg.create_with_context(OwnerContext {
        owned: Mutex::new(Vec::new()),
        takeover: AtomicBool::new(false),
        generation: AtomicU64::new(0),
        metrics,
        beat,
        group: settings.kafka.control_group_id.clone(),
    })
}

/// The control group's committed offset per control partition (0 where none).
pub fn committed_floor(
    consumer: &StreamConsumer<OwnerContext>,
    topic: &str,
    parts: &[i32],
) -> Result<HashMap<i32, i64>, rdkafka::error::KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| {
            let off = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            (e.partition(), off)
        })
        .collect())
}

fn header_i64(msg: &impl Message, name: &str) -> Option<i64> {
    kafka::header(msg, name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

/// The highest control offset (per control partition) with a result on the results topic,
/// from the last [`RESULTS_SCAN_DEPTH`] records of each results partition.
async fn scan_emitted(settings: &Settings) -> HashMap<i32, i64> {
    let mut emitted = HashMap::new();
    let consumer: StreamConsumer<ReaderContext> = match kafka::reader(settings, "results-scan") {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "results scan: cannot create consumer");
            return emitted;
        }
    };
    let topic = settings.topics.results.as_str();
    let parts = match tokio::task::block_in_place(|| {
        kafka::partitions(&consumer, "topics.results", topic, Duration::from_secs(10))
    }) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "results scan: no partitions");
            return emitted;
        }
    };
    // Start near the end when the broker tells where the end is, else at the beginning; read
    // each partition until its end-of-partition event (the fetch's view of the end, which is
    // right even where ListOffsets is not).
    let mut tpl = TopicPartitionList::new();
    let mut open: std::collections::HashSet<i32> = std::collections::HashSet::new();
    for &p in &parts {
        let from = match tokio::task::block_in_place(|| {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10))
        }) {
            Ok((low, high)) if high - RESULTS_SCAN_DEPTH > low => {
                Offset::Offset(high - RESULTS_SCAN_DEPTH)
            }
            Ok(_) => Offset::Beginning,
            Err(e) => {
                tracing::debug!(error = %e, partition = p, "results watermarks unknown; scanning from the beginning");
                Offset::Beginning
            }
        };
        tracing::debug!(partition = p, from = ?from, "results scan start");
        if tpl.add_partition_offset(topic, p, from).is_ok() {
            open.insert(p);
        }
    }
    tracing::debug!(partitions = ?parts, "scanning the results topic");
    if open.is_empty() || consumer.assign(&tpl).is_err() {
        return emitted;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut scanned = 0usize;
    while !open.is_empty() {
        let msg = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                // The end of the partition as the fetch saw it (more reliable than the
                // ListOffsets end on some brokers).
                open.remove(&p);
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "results scan read error");
                continue;
            }
            Err(_) => {
                tracing::warn!("results scan timed out; some commands may be emitted twice");
                break;
            }
        };
        scanned += 1;
        if let (Some(cp), Some(co)) = (
            header_i64(&msg, HEADER_CONTROL_PARTITION),
            header_i64(&msg, HEADER_CONTROL_OFFSET),
        ) {
            let e = emitted.entry(cp as i32).or_insert(-1);
            *e = (*e).max(co);
        }
    }
    tracing::debug!(emitted = ?emitted, records = scanned, "results scan done");
    emitted
}

pub struct OwnerDeps {
    pub settings: Settings,
    pub engine: Arc<Engine>,
    pub metrics: Metrics,
    pub output: Output,
    pub control_progress: Arc<Progress>,
    pub outbox: Arc<Outbox>,
    /// Partitions of the control topic (one, normally).
    pub control_partitions: Vec<i32>,
    /// How far the notification tail has read, and the notification topic's current end: a
    /// notification command is applied only once the tail has read everything written
    /// before it, so a notification that exists is never a 404 and `mark_all_seen` misses none.
    pub tail_progress: Arc<Progress>,
    pub tail_watermarks: Arc<dyn Fn() -> Option<HashMap<i32, i64>> + Send + Sync>,
    /// Whether this process is just waking from a freeze long enough to have lost the
    /// control partition without knowing it yet.
    pub freeze: Arc<crate::freeze::FreezeClock>,
}

/// Emits control side effects while this instance owns the control partition; prunes the
/// outbox while it does not. Returns after shutdown, with its progress committed.
pub async fn run_control_owner(
    consumer: StreamConsumer<OwnerContext>,
    deps: OwnerDeps,
    mut shutdown: watch::Receiver<bool>,
) {
    let topic = deps.settings.topics.control.clone();
    if let Err(e) = consumer.subscribe(&[topic.as_str()]) {
        tracing::error!(error = %e, "cannot join the control group; control side effects will not be emitted here");
        return;
    }
    let mut state = OwnerState::default();
    let mut prune = tokio::time::interval(Duration::from_secs(2));
    // Commands read but not yet acted on, each with the rebalance generation it was read in.
    // Normally a command waits here for one loop turn. While this process is just waking from
    // a freeze (see `freeze`), commands wait until the group has had time to say whether this
    // member still owns the partition (the callbacks run in `recv`, which keeps being polled);
    // a command read before a rebalance is dropped, and whoever owns the partition after it
    // reads it again from the committed offset.
    let mut read: VecDeque<(u64, OwnedMessage)> = VecDeque::new();
    loop {
        let trusted = !deps.freeze.suspect();
        if trusted {
            if let Some((generation, msg)) = read.pop_front() {
                if generation != consumer.context().generation() {
                    tracing::info!(
                        partition = msg.partition(),
                        offset = msg.offset(),
                        "control command read before a rebalance; left to the partition's owner"
                    );
                    continue;
                }
                if !act(&consumer, &deps, &topic, &msg, &mut state, &mut shutdown).await {
                    break;
                }
                continue;
            }
        }
        tokio::select! {
            m = consumer.recv() => match m {
                Ok(m) => read.push_back((consumer.context().generation(), m.detach())),
                Err(e) => {
                    tracing::warn!(error = %e, "control group read error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            // Look again at whether this process is trusted.
            _ = tokio::time::sleep(crate::freeze::TICK), if !read.is_empty() => {}
            _ = prune.tick() => {
                if consumer.context().owns_any() {
                    if trusted {
                        heal(&deps).await;
                    }
                } else {
                    prune_outbox(&consumer, &topic, &deps.control_partitions, &deps.outbox);
                }
            }
            _ = shutdown.changed() => break,
            _ = consumer.context().beat.rejoin.notified() => {
                consumer.unsubscribe();
                match consumer.subscribe(&[topic.as_str()]) {
                    Ok(()) => tracing::info!("left and joined the control group again"),
                    Err(e) => tracing::error!(error = %e, "joining the control group again failed"),
                }
            }
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final control commit (nothing stored is fine)");
    }
    deps.metrics.control_owner.set(0);
}

/// What the owner loop carries from one command to the next.
#[derive(Default)]
struct OwnerState {
    /// Per control partition, the highest offset whose result a predecessor already emitted
    /// (found on the results topic at takeover).
    emitted: HashMap<i32, i64>,
    /// The notification topic's end as last fetched, and the control reader's position when
    /// that fetch began: every control record below that position was in the log before the
    /// fetch, so the fetch already covers the notifications its sender could have seen. A burst
    /// of notification commands then costs one ListOffsets round trip, not one each.
    tail_end: Option<(HashMap<i32, i64>, HashMap<i32, i64>)>,
}

/// Acts on one control command as the owner: emits its side effects unless its result is
/// already on the results topic, then stores the next offset. False when shutdown interrupted.
async fn act(
    consumer: &StreamConsumer<OwnerContext>,
    deps: &OwnerDeps,
    topic: &str,
    msg: &OwnedMessage,
    state: &mut OwnerState,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    if consumer.context().takeover.swap(false, Ordering::SeqCst) {
        state.emitted = scan_emitted(&deps.settings).await;
        tracing::info!(already_emitted = ?state.emitted, "took over control side effects");
    }
    let (p, o) = (msg.partition(), msg.offset());
    let sent_at = msg
        .timestamp()
        .to_millis()
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis);
    // Our reader must have applied this command (and all before it) first.
    let target: HashMap<i32, i64> = [(p, o + 1)].into_iter().collect();
    if !deps
        .control_progress
        .wait_for(&target, Reach::Applied, shutdown)
        .await
    {
        return false;
    }
    let done_before = state.emitted.get(&p).is_some_and(|e| o <= *e);
    let pending = deps.outbox.take(p, o);
    if !done_before {
        let records = match pending {
            Some(Pending::Ready(records)) => records,
            Some(Pending::Deferred(payload)) => {
                let covered = state
                    .tail_end
                    .as_ref()
                    .is_some_and(|(_, below)| below.get(&p).is_some_and(|b| o < *b));
                if !covered {
                    let below: HashMap<i32, i64> = deps
                        .control_partitions
                        .iter()
                        .map(|cp| (*cp, deps.control_progress.next(*cp)))
                        .collect();
                    state.tail_end = tokio::task::block_in_place(|| (deps.tail_watermarks)())
                        .map(|ends| (ends, below));
                }
                if let Some((ends, _)) = &state.tail_end {
                    if !deps
                        .tail_progress
                        .wait_for(ends, Reach::Applied, shutdown)
                        .await
                    {
                        return false;
                    }
                }
                let out = deps.engine.apply_command_at(
                    &payload,
                    CommandSource {
                        partition: p,
                        offset: o,
                    },
                    sent_at,
                );
                deps.metrics
                    .control_commands
                    .with_label_values(&[out.resource, &out.method, &out.status.to_string()])
                    .inc();
                out.records
            }
            None => {
                tracing::warn!(
                    partition = p,
                    offset = o,
                    "control command not in the outbox (below the start floor); not emitted again"
                );
                Vec::new()
            }
        };
        if !consumer.context().owns_any() {
            // Revoked while this command was prepared (the callback ran in `recv`): the
            // next owner emits it; emitting here too would answer it twice.
            tracing::info!(
                partition = p,
                offset = o,
                "control partition lost; not emitting"
            );
            // Nor stored: the next owner reads it again from the committed offset.
            return true;
        }
        emit(
            deps,
            records,
            ControlOrigin {
                partition: p,
                offset: o,
            },
        )
        .await;
    }
    // `store_offsets` stores exactly the next offset (`store_offset` would add one).
    let mut tpl = TopicPartitionList::new();
    let stored = tpl
        .add_partition_offset(topic, p, Offset::Offset(o + 1))
        .and_then(|()| consumer.store_offsets(&tpl));
    if let Err(e) = stored {
        tracing::warn!(error = %e, "storing control offset");
    }
    consumer.context().beat.progress();
    true
}

/// A result that always fits, standing in for one that cannot be written (or for a command
/// whose notification records the broker refused): status 413 and why, with the command's
/// `id`, `method` and `path` (each cut to 256 bytes) and `version`.
pub fn refused_result(original: &OutRecord, why: &str) -> OutRecord {
    let v: serde_json::Value = original
        .value
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    let short = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) if s.len() > 256 => {
            let mut end = 256;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            serde_json::Value::String(s[..end].to_string())
        }
        serde_json::Value::String(_) | serde_json::Value::Null => x.clone(),
        other => serde_json::Value::String(other.to_string().chars().take(256).collect()),
    };
    let result = serde_json::json!({
        "id": short(&v["id"]),
        "method": short(&v["method"]),
        "path": short(&v["path"]),
        "status": 413,
        "body": {"detail": why},
        "version": v["version"],
    });
    OutRecord {
        topic: OutTopic::Results,
        key: original.key.as_ref().map(|k| k.chars().take(256).collect()),
        value: Some(serde_json::to_vec(&result).unwrap_or_default()),
        rendered: None,
    }
}

/// Notification records first, the result last: a result on the topic means the command's
/// effects are all there. Records the broker refuses permanently are never retried: the
/// result then says so (413), so no command is left without an answer and the control
/// partition never wedges.
async fn emit(deps: &OwnerDeps, records: Vec<OutRecord>, origin: ControlOrigin) {
    let (mut results, effects): (Vec<OutRecord>, Vec<OutRecord>) = records
        .into_iter()
        .partition(|r| r.topic == OutTopic::Results);
    let seen = effects
        .iter()
        .filter(|r| r.topic == OutTopic::Notifications && r.value.is_some())
        .count();
    if !effects.is_empty() {
        let refused = deps.output.deliver(&effects, Some(origin)).await;
        if let Some(r) = refused.first() {
            let why = format!(
                "Request entity too large: a notification record of this command was refused by the broker ({}).",
                r.error
            );
            results = results
                .iter()
                .map(|res| refused_result(res, &why))
                .collect();
        }
    }
    let refused = deps.output.deliver(&results, Some(origin)).await;
    if !refused.is_empty() {
        let why = "Request entity too large: the result of this command was refused by the broker.";
        let stand_ins: Vec<OutRecord> = refused
            .iter()
            .map(|r| refused_result(&results[r.index], why))
            .collect();
        for r in deps.output.deliver(&stand_ins, Some(origin)).await {
            tracing::error!(error = %r.error, "the 413 stand-in result was refused too; dropped");
        }
    }
    deps.metrics.seen_updates.inc_by(seen as u64);
    deps.metrics.control_side_effects.inc();
    tracing::debug!(
        partition = origin.partition,
        offset = origin.offset,
        notification_records = effects.len(),
        held = deps.engine.index().len(),
        "emitted control side effects"
    );
}

/// Re-emits the current state of every notification whose latest record on the topic is
/// older than what is held (a zombie instance's late write, see [`crate::index`]), so the
/// compacted topic and every reader end on the current state.
async fn heal(deps: &OwnerDeps) {
    let heals = deps.engine.index().take_stale();
    if heals.is_empty() {
        return;
    }
    let records: Vec<OutRecord> = heals
        .into_iter()
        .map(|h| match h {
            crate::index::Heal::Current(n) => OutRecord {
                topic: OutTopic::Notifications,
                key: Some(n.pk.to_string()),
                value: Some(n.to_bytes()),
                rendered: crate::notify::Rendered::of(&n),
            },
            crate::index::Heal::Deleted(pk) => OutRecord {
                topic: OutTopic::Notifications,
                key: Some(pk.to_string()),
                value: None,
                rendered: None,
            },
        })
        .collect();
    tracing::warn!(
        notifications = records.len(),
        "re-emitting the current state of notifications whose topic state regressed"
    );
    deps.metrics
        .notifications_healed
        .inc_by(records.len() as u64);
    for r in deps.output.deliver(&records, None).await {
        tracing::error!(error = %r.error, "a healing record was refused");
    }
}

fn prune_outbox(
    consumer: &StreamConsumer<OwnerContext>,
    topic: &str,
    parts: &[i32],
    outbox: &Outbox,
) {
    match tokio::task::block_in_place(|| committed_floor(consumer, topic, parts)) {
        Ok(floor) => {
            for (p, o) in floor {
                outbox.set_floor(p, o);
            }
        }
        Err(e) => tracing::debug!(error = %e, "reading control group offsets"),
    }
}
