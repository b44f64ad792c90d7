//! Kafka plumbing shared by the daemon's loops and the helper subcommands: client
//! configuration, the output producer (retriable delivery errors retried, permanent ones
//! reported to the caller, never retried), topic creation, and offset/watermark look-ups.

use crate::config::Settings;
use crate::engine::{OutRecord, OutTopic};
use crate::metrics::Metrics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::collections::HashMap;
use std::time::Duration;

/// Header naming the control partition a side-effect record was caused by.
pub const HEADER_CONTROL_PARTITION: &str = "eventmatchd-control-partition";
/// Header naming the control offset a side-effect record was caused by.
pub const HEADER_CONTROL_OFFSET: &str = "eventmatchd-control-offset";

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("topic {topic:?} ({key}) does not exist on the broker; create it (make run does, see deploy/kafka/)")]
    MissingTopic { key: &'static str, topic: String },
    #[error("topic {topic:?} has no partitions")]
    NoPartitions { topic: String },
}

/// Settings every client shares: brokers, then the operator's librdkafka passthrough.
/// The value of a record's header `name` (the first with that name), if it has one.
pub fn header<'a>(msg: &'a impl rdkafka::message::Message, name: &str) -> Option<&'a [u8]> {
    use rdkafka::message::Headers;
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

pub fn base_config(settings: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.kafka.brokers);
    for (k, v) in settings.kafka.librdkafka_properties() {
        c.set(k, v);
    }
    c
}

/// A consumer that reads whole topics by assignment (never joins a group): the control
/// reader, the notification tail, helper tools. `group.id` is required by librdkafka but no
/// offsets are ever committed under it.
pub fn reader_config(settings: &Settings, purpose: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", format!("{}-{purpose}", settings.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // End-of-partition events tell the reader it has caught up (see readers::Progress).
        .set("enable.partition.eof", "true")
        // Read commands promptly: a policy change should reach matching within 100 ms.
        .set("fetch.wait.max.ms", "50");
    for (k, v) in settings.kafka.librdkafka_properties() {
        c.set(k, v);
    }
    c
}

/// The context of whole-topic readers: end-of-partition events are how they know they have
/// caught up, not errors, so they are not logged as such.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReaderContext;

impl rdkafka::client::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!(error = %error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A whole-topic reader (see [`reader_config`]).
pub fn reader(
    settings: &Settings,
    purpose: &str,
) -> Result<StreamConsumer<ReaderContext>, KafkaError> {
    reader_config(settings, purpose).create_with_context(ReaderContext)
}

/// A group member storing offsets only after its outputs are acknowledged (at-least-once):
/// auto-commit on, automatic offset store off.
///
/// `instance` is the static member id (`group.instance.id`), empty for dynamic membership.
pub fn group_config(settings: &Settings, group_id: &str, instance: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    if !instance.is_empty() {
        c.set("group.instance.id", instance);
    }
    c.set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // The longest a fetch may wait for data. librdkafka's 500 ms default costs nothing on
        // Apache Kafka while records flow (a fetch returns once `fetch.min.bytes` is there),
        // but brokers that hold every fetch to its deadline (tansu) put it into each event's
        // latency (measured on tansu, p99 at 5,000 events/s: 58 ms at 20, 42-45 ms at 10,
        // 49-54 ms at 5; BENCHMARKS.md §4). 10 ms costs ~100 empty fetches a second per broker
        // when idle.
        .set("fetch.wait.max.ms", "10")
        .set("statistics.interval.ms", "5000");
    for (k, v) in settings.kafka.librdkafka_properties() {
        c.set(k, v);
    }
    c
}

pub fn producer_config(settings: &Settings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.kafka.brokers)
        // Every output must be on all in-sync replicas before its input offset is stored.
        .set("acks", "all")
        // librdkafka's own retries neither duplicate nor reorder a key's records, so an older
        // state of a notification cannot land after a newer one through them.
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000");
    for (k, v) in settings.kafka.librdkafka_properties() {
        c.set(k, v);
    }
    c
}

/// A group member's commit callback: failures are logged and counted; "no offset stored"
/// (an auto-commit with nothing new) is not a failure.
pub fn note_commit(
    metrics: &Metrics,
    group: &str,
    what: &str,
    result: &rdkafka::error::KafkaResult<()>,
    offsets: &rdkafka::TopicPartitionList,
) {
    if let Err(e) = result {
        if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
            metrics.commit_errors.with_label_values(&[group]).inc();
            tracing::warn!(error = %e, partitions = offsets.count(), "committing {what} offsets failed");
        }
    }
}

/// The configured name of each logical output topic.
#[derive(Debug, Clone)]
pub struct TopicNames {
    names: HashMap<OutTopic, String>,
}

impl TopicNames {
    pub fn new(settings: &Settings) -> Self {
        let t = &settings.topics;
        let names = [
            (OutTopic::Notifications, t.notifications.clone()),
            (OutTopic::Results, t.results.clone()),
            (OutTopic::Dlq, t.dlq.clone()),
            (OutTopic::Executions, t.executions.clone()),
        ]
        .into_iter()
        .collect();
        Self { names }
    }

    pub fn get(&self, t: OutTopic) -> &str {
        self.names.get(&t).map(String::as_str).unwrap_or("")
    }
}

/// Where a side-effect record came from, written as headers so a new control owner can tell
/// what its predecessor already emitted.
#[derive(Debug, Clone, Copy)]
pub struct ControlOrigin {
    pub partition: i32,
    pub offset: i64,
}

/// Whether a produce error means the record can never be written as it is (too large, or
/// refused as invalid by the broker): retrying it would wedge its partition forever.
pub fn is_permanent(e: &KafkaError) -> bool {
    let code = match e {
        KafkaError::MessageProduction(c) => *c,
        _ => return false,
    };
    is_too_large(e)
        || matches!(
            code,
            RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::PolicyViolation
        )
}

/// The record is over a size limit (librdkafka's `message.max.bytes` or the broker's): a 413
/// to whoever sent what it was made from.
pub fn is_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

/// A record [`Output::deliver`] could not write and will not retry.
#[derive(Debug)]
pub struct Rejected {
    /// Its index in the slice given to `deliver`.
    pub index: usize,
    pub error: KafkaError,
}

/// The output producer. Retriable delivery errors are retried until the record is written
/// (a record's input offset is stored only after `deliver` returns, so giving up would lose
/// it); permanent ones are returned for the caller to dead-letter or answer.
///
/// Nothing here blocks a runtime worker: a full local queue and back-off are async sleeps, so
/// a task stuck retrying is still dropped when the runtime shuts down at the drain deadline.
#[derive(Clone)]
pub struct Output {
    producer: FutureProducer,
    topics: TopicNames,
    metrics: Metrics,
}

impl Output {
    pub fn new(settings: &Settings, metrics: Metrics) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: producer_config(settings).create()?,
            topics: TopicNames::new(settings),
            metrics,
        })
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    fn record<'a>(
        &'a self,
        r: &'a OutRecord,
        origin: Option<ControlOrigin>,
    ) -> FutureRecord<'a, str, [u8]> {
        let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(self.topics.get(r.topic));
        if let Some(k) = &r.key {
            rec = rec.key(k.as_str());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if origin.is_none() && r.rendered.is_none() {
            return rec;
        }
        let mut headers = OwnedHeaders::new_with_capacity(3);
        if let Some(o) = origin {
            let p = o.partition.to_string();
            let off = o.offset.to_string();
            headers = headers
                .insert(Header {
                    key: HEADER_CONTROL_PARTITION,
                    value: Some(p.as_bytes()),
                })
                .insert(Header {
                    key: HEADER_CONTROL_OFFSET,
                    value: Some(off.as_bytes()),
                });
        }
        if let Some(rendered) = &r.rendered {
            // librdkafka copies the value.
            let value = rendered.header();
            headers = headers.insert(Header {
                key: crate::notify::HEADER_RENDERED,
                value: Some(value.as_bytes()),
            });
        }
        rec.headers(headers)
    }

    /// Queues one record. `Err` is a permanent error (librdkafka refuses a record over
    /// `message.max.bytes` synchronously); other errors are retried here with back-off.
    async fn enqueue(
        &self,
        r: &OutRecord,
        origin: Option<ControlOrigin>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.producer.send_result(self.record(r, origin)) {
                Ok(fut) => return Ok(fut),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The local queue is full: librdkafka's thread delivers some meanwhile.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) if is_permanent(&e) => return Err(e),
                Err((e, _)) => {
                    self.metrics.producer_errors.inc();
                    tracing::warn!(error = %e, topic = self.topics.get(r.topic), "enqueueing a record failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Produces every record and returns once each is acknowledged or permanently refused
    /// (those are returned, in index order, and counted). Retriable failures are re-sent, in
    /// order per record, until they succeed.
    pub async fn deliver(
        &self,
        records: &[OutRecord],
        origin: Option<ControlOrigin>,
    ) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        let mut pending: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            match self.enqueue(r, origin).await {
                Ok(fut) => pending.push((i, fut)),
                Err(error) => rejected.push(Rejected { index: i, error }),
            }
        }
        let mut backoff = Duration::from_millis(50);
        while !pending.is_empty() {
            let mut failed = Vec::new();
            for (i, fut) in pending {
                match fut.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) if is_permanent(&error) => {
                        rejected.push(Rejected { index: i, error })
                    }
                    Ok(Err((e, _))) => {
                        self.metrics.producer_errors.inc();
                        tracing::warn!(error = %e, topic = self.topics.get(records[i].topic), "delivery failed; retrying");
                        failed.push(i);
                    }
                    Err(_) => {
                        self.metrics.producer_errors.inc();
                        failed.push(i);
                    }
                }
            }
            if failed.is_empty() {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            pending = Vec::with_capacity(failed.len());
            for i in failed {
                match self.enqueue(&records[i], origin).await {
                    Ok(fut) => pending.push((i, fut)),
                    Err(error) => rejected.push(Rejected { index: i, error }),
                }
            }
        }
        for r in &rejected {
            self.metrics.producer_errors.inc();
            self.metrics
                .records_rejected
                .with_label_values(&[records[r.index].topic.as_str()])
                .inc();
            tracing::error!(
                error = %r.error,
                topic = self.topics.get(records[r.index].topic),
                bytes = records[r.index].value.as_ref().map_or(0, Vec::len),
                "record refused permanently; not retried"
            );
        }
        rejected.sort_by_key(|r| r.index);
        rejected
    }

    /// Waits until everything queued is delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}

/// The partitions of a topic, or an error naming the configuration key of a missing topic.
pub fn partitions<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    key: &'static str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaSetupError> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaSetupError::MissingTopic {
            key,
            topic: topic.to_string(),
        });
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        if matches!(
            code,
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
        ) {
            return Err(KafkaSetupError::MissingTopic {
                key,
                topic: topic.to_string(),
            });
        }
        return Err(KafkaSetupError::Client(KafkaError::MetadataFetch(code)));
    }
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    if ps.is_empty() {
        return Err(KafkaSetupError::NoPartitions {
            topic: topic.to_string(),
        });
    }
    Ok(ps)
}

/// High watermarks (next offset to be written) of the given partitions.
pub fn high_watermarks<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    parts: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let mut out = HashMap::new();
    for &p in parts {
        let (_, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        out.insert(p, high);
    }
    Ok(out)
}

/// One topic as eventmatchd expects it: name, partitions, topic configs.
pub type TopicSpec = (String, i32, Vec<(&'static str, &'static str)>);

/// The topic settings eventmatchd expects (see deploy/kafka/create-topics.sh for the why).
pub fn topic_specs(settings: &Settings, event_partitions: i32) -> Vec<TopicSpec> {
    let t = &settings.topics;
    vec![
        (
            t.events.clone(),
            event_partitions,
            vec![("cleanup.policy", "delete")],
        ),
        // One partition: commands need one total order. Never deleted: it is the policy set.
        (
            t.control.clone(),
            1,
            vec![
                ("cleanup.policy", "delete"),
                ("retention.ms", "-1"),
                ("retention.bytes", "-1"),
            ],
        ),
        // Compacted: the latest record per notification pk is its current state. Tombstones
        // are kept 7 days (`notifications.deleted_horizon_secs`): a restarted instance learns
        // of deletions from them.
        (
            t.notifications.clone(),
            event_partitions,
            vec![
                ("cleanup.policy", "compact"),
                ("delete.retention.ms", "604800000"),
            ],
        ),
        (
            t.results.clone(),
            1,
            vec![("cleanup.policy", "delete"), ("retention.ms", "604800000")],
        ),
        (
            t.dlq.clone(),
            1,
            vec![("cleanup.policy", "delete"), ("retention.ms", "1209600000")],
        ),
        (
            t.executions.clone(),
            event_partitions,
            vec![("cleanup.policy", "delete"), ("retention.ms", "604800000")],
        ),
    ]
}

/// Creates the daemon's topics; existing ones are left as they are.
pub async fn create_topics(
    settings: &Settings,
    event_partitions: i32,
    replication: i32,
) -> Result<Vec<String>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings).create()?;
    let specs = topic_specs(settings, event_partitions);
    // acks=all means "every in-sync replica": with fewer than two required, one broker's loss
    // can lose an acknowledged output. Two where the replication allows it.
    let min_insync = replication.clamp(1, 2).to_string();
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|(name, parts, cfg)| {
            cfg.iter().fold(
                NewTopic::new(name, *parts, TopicReplication::Fixed(replication))
                    .set("min.insync.replicas", &min_insync),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            topics.iter(),
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).map_err(|e| {
                    tracing::error!(topic = %name, error = %e, "creating topic failed");
                    e
                })
            }
        }
    }
    Ok(created)
}
