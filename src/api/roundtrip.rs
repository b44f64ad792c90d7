//! Writes go through the control topic, never around it: a request becomes a control command
//! with a fresh `id`, and its answer is that command's result, read back from the results
//! topic by `id`. Whichever instance owns the control partition emits the result; every
//! instance reads the results topic, so any instance takes writes.
//!
//! Read-your-writes: before answering, the serving instance waits until it has applied the
//! command itself ([`Applied`]): its control reader past the command's offset (policies,
//! rules, bindings); for a notification's PATCH/PUT its index holding the state the command
//! made (version = the command's offset + 1) and for its DELETE the notification gone; for
//! `mark_all_seen` its notification tail past the topic's end as of the result (the owner
//! writes a command's notification records, acknowledged, before its result).

use crate::config::Settings;
use crate::daemon::kafka::{self, ReaderContext};
use crate::daemon::readers::{Progress, Reach};
use dashmap::DashMap;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// A command's answer: the result record's status and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The command is on the control topic but its result (or this instance applying it) did
    /// not come in time. It is not lost: it will be applied.
    #[error("the command was written to the control topic (partition {partition}, offset {offset}) but its result did not arrive within {secs} s; it will still be applied")]
    Timeout {
        partition: i32,
        offset: i64,
        secs: u64,
    },
    /// The command could not be written at all: nothing happened.
    #[error("the command could not be written to the control topic: {0}")]
    Produce(KafkaError),
    #[error("the control topic's end is unknown: {0}")]
    Watermarks(KafkaError),
    #[error("eventmatchd is shutting down")]
    ShuttingDown,
}

/// What "this instance has applied the command" means for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A policy-set command: the control reader is past it.
    Control,
    /// A notification PATCH/PUT: the index holds a state at least as new as the command's.
    Notification(Uuid),
    /// A notification DELETE: the index no longer holds it.
    Deleted(Uuid),
    /// Anything else on notifications (`mark_all_seen`): the notification reader is past the
    /// topic's end as of the result.
    Tail,
}

/// The notification topic's current end, per partition.
pub type Watermarks = Arc<dyn Fn() -> Option<HashMap<i32, i64>> + Send + Sync>;

#[derive(Deserialize)]
struct ResultRecord {
    id: Value,
    status: u16,
    #[serde(default)]
    body: Value,
}

/// Sends commands and waits for their results.
pub struct ControlClient {
    producer: FutureProducer,
    control_topic: String,
    engine: Arc<crate::engine::Engine>,
    /// One sender per command in flight, keyed by its `id`: inserted by the request before it
    /// produces, removed by the results reader when the result arrives (or by the request when
    /// it gives up). Sharded, since requests and the reader touch it concurrently.
    waiters: DashMap<String, oneshot::Sender<Answer>>,
    control_progress: Arc<Progress>,
    tail_progress: Arc<Progress>,
    tail_watermarks: Watermarks,
    timeout: Duration,
}

/// Removes a waiter however the request ends (answered, timed out, or dropped by a client
/// that went away).
struct Waiting<'a> {
    client: &'a ControlClient,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.client.waiters.remove(&self.id);
    }
}

impl ControlClient {
    pub fn new(
        settings: &Settings,
        producer: FutureProducer,
        engine: Arc<crate::engine::Engine>,
        control_progress: Arc<Progress>,
        tail_progress: Arc<Progress>,
        tail_watermarks: Watermarks,
    ) -> Self {
        Self {
            producer,
            control_topic: settings.topics.control.clone(),
            engine,
            waiters: DashMap::new(),
            control_progress,
            tail_progress,
            tail_watermarks,
            timeout: Duration::from_secs(settings.api.write_timeout_secs),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Commands waiting for their result.
    pub fn in_flight(&self) -> usize {
        self.waiters.len()
    }

    /// Writes one command and returns its result once this instance has applied it.
    pub async fn submit(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        applied: Applied,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Answer, WriteError> {
        let deadline = Instant::now() + self.timeout;
        let id = Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(id.clone(), tx);
        let _waiting = Waiting {
            client: self,
            id: id.clone(),
        };
        let mut command = json!({"id": id, "method": method, "path": path});
        if let Some(b) = body {
            command["body"] = b;
        }
        let payload = serde_json::to_vec(&command).unwrap_or_default();
        let record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(&self.control_topic).payload(&payload);
        let delivered = self
            .producer
            .send(record, self.timeout)
            .await
            .map_err(|(e, _)| WriteError::Produce(e))?;
        let timed_out = || WriteError::Timeout {
            partition: delivered.partition,
            offset: delivered.offset,
            secs: self.timeout.as_secs(),
        };
        let answer = tokio::select! {
            r = tokio::time::timeout_at(deadline, rx) => match r {
                Ok(Ok(a)) => a,
                _ => return Err(timed_out()),
            },
            _ = stop.wait_for(|s| *s) => return Err(WriteError::ShuttingDown),
        };
        // Read-your-writes (see the module documentation). A command that failed changed
        // nothing; one that succeeded is waited for as `applied` says.
        if !(200..300).contains(&answer.status) {
            return Ok(answer);
        }
        let version = delivered.offset.max(0) as u64 + 1;
        let index = self.engine.index();
        let held = |pk: &Uuid| index.version_of(pk);
        let done = |applied: Applied| match applied {
            Applied::Notification(pk) => held(&pk).is_none_or(|v| v >= version),
            Applied::Deleted(pk) => held(&pk).is_none(),
            Applied::Control | Applied::Tail => true,
        };
        if matches!(applied, Applied::Notification(_) | Applied::Deleted(_)) {
            let wait = async {
                while !done(applied) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            return match tokio::time::timeout_at(deadline, wait).await {
                Ok(()) => Ok(answer),
                Err(_) => Err(timed_out()),
            };
        }
        let (progress, targets) = if applied == Applied::Tail {
            let tail = self.tail_watermarks.clone();
            let ends = tokio::task::spawn_blocking(move || tail())
                .await
                .ok()
                .flatten()
                .ok_or(WriteError::Watermarks(KafkaError::NoMessageReceived))?;
            (&self.tail_progress, ends)
        } else {
            (
                &self.control_progress,
                HashMap::from([(delivered.partition, delivered.offset + 1)]),
            )
        };
        match tokio::time::timeout_at(
            deadline,
            progress.wait_for(&targets, Reach::Applied, &mut stop),
        )
        .await
        {
            Ok(true) => Ok(answer),
            Ok(false) => Err(WriteError::ShuttingDown),
            Err(_) => Err(timed_out()),
        }
    }

    fn deliver(&self, payload: &[u8]) {
        let Ok(r) = serde_json::from_slice::<ResultRecord>(payload) else {
            return;
        };
        let Value::String(id) = r.id else {
            return;
        };
        if let Some((_, tx)) = self.waiters.remove(&id) {
            let _ = tx.send(Answer {
                status: r.status,
                body: r.body,
            });
        }
    }
}

/// Reads the results topic from its current end (per partition, as the broker reports it
/// now: a command written after this call has its result after it) and hands each result to
/// its waiting request.
pub fn results_reader(
    settings: &Settings,
    client: Arc<ControlClient>,
    mut stop: watch::Receiver<bool>,
) -> Result<impl std::future::Future<Output = ()>, KafkaError> {
    let consumer: StreamConsumer<ReaderContext> = kafka::reader(settings, "results-reader")?;
    let topic = settings.topics.results.clone();
    let timeout = Duration::from_secs(10);
    let parts = kafka::partitions(&consumer, "topics.results", &topic, timeout)
        .map_err(|_| KafkaError::NoMessageReceived)?;
    let ends = kafka::high_watermarks(&consumer, &topic, &parts, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &ends {
        tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))?;
    }
    consumer.assign(&tpl)?;
    Ok(async move {
        loop {
            let msg = tokio::select! {
                m = consumer.recv() => m,
                _ = stop.wait_for(|s| *s) => return,
            };
            match msg {
                Ok(m) => client.deliver(m.payload().unwrap_or_default()),
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "results topic read error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    })
}
