//! The engine: the current policy set, the notification index, and the two operations that
//! change or read them, processing an event and applying a control command. Both return the
//! records to produce as plain data ([`OutRecord`]), so the offline `replay` and the Kafka
//! daemon run exactly the same logic and differ only in where the records go.

use crate::catalog::Catalog;
use crate::control::{self, CommandOutcome, CommandSource, NotificationEffect};
use crate::events::{Event, EventError};
use crate::index::NotificationIndex;
use crate::ingest::{Format, Ingested};
use crate::matcher::Execution;
use crate::notify::{self, Notification};
use crate::policyset::PolicySet;
use crate::rules::NotificationRule;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// librdkafka's default `message.max.bytes`, the largest record the producer writes.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;
/// What a record costs beyond its key and value (librdkafka counts the record framing and
/// headers against `message.max.bytes` too); kept free so that a record judged to fit does.
pub const RECORD_OVERHEAD: usize = 1024;
/// How much of an input a compact dead letter keeps.
pub const DEAD_LETTER_EXCERPT: usize = 4096;

/// Namespace of `policy_execution` event pks: `uuid5(NS, "{event}/{binding}")`.
pub const EXECUTION_NAMESPACE: Uuid = Uuid::from_u128(0x9a41_7e0b_63c2_4d18_a5f0_1b2c_3d4e_5f60);

/// The logical output topics; the daemon maps them to configured names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutTopic {
    Notifications,
    Results,
    Dlq,
    Executions,
}

impl OutTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            OutTopic::Notifications => "notifications",
            OutTopic::Results => "results",
            OutTopic::Dlq => "dlq",
            OutTopic::Executions => "executions",
        }
    }
}

/// One record to produce. `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: OutTopic,
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    /// For a notification record: which of its fields its event renders to, written as the
    /// [`HEADER_RENDERED`](crate::notify::HEADER_RENDERED) header (`None`: no header).
    pub rendered: Option<notify::Rendered>,
}

/// Where an input record came from (for the dead-letter envelope).
#[derive(Debug, Clone)]
pub struct RecordSource<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// Used as `created` of notifications for an event that has none (the daemon passes the
    /// record's Kafka timestamp, so a replay of the log renders the same value).
    pub timestamp: DateTime<Utc>,
}

/// What one event did.
#[derive(Debug, Default)]
pub struct EventOutcome {
    pub records: Vec<OutRecord>,
    pub invalid: Option<EventError>,
    /// Rules that fired.
    pub fired: Vec<Arc<NotificationRule>>,
    /// New notifications produced (already-held ones are not produced again).
    pub notifications: Vec<Arc<Notification>>,
    pub executions: usize,
    pub guarded: bool,
    /// Rules that fired but made no notification because `context.message` is null
    /// (authentik cannot save a notification with a null body).
    pub null_body: usize,
    /// An output was too large to write and the event was dead-lettered in its place.
    pub oversized: bool,
    /// The record is not an event (a CDC tombstone, update, delete...): why.
    pub skipped: Option<&'static str>,
}

/// What one control command did.
#[derive(Debug)]
pub struct ControlOutcome {
    pub records: Vec<OutRecord>,
    pub status: u16,
    pub resource: &'static str,
    pub method: String,
    /// Policy-set version after the command.
    pub version: u64,
    /// Whether the command published a new version.
    pub changed: bool,
}

pub struct Engine {
    catalog: Catalog,
    /// The published snapshot. Readers (`load`) never block and always see one whole
    /// version; only `apply_command` stores, under `writer`.
    snapshot: ArcSwap<PolicySet>,
    /// Serializes control commands: each computes the next version from the current one, so
    /// two running at once would lose one's change. Never taken on the event path. Holds the
    /// version before the current one: a reader still evaluating against it then never holds
    /// its last reference, so freeing a large set happens here, on the next command, and not
    /// on the event path.
    writer: Mutex<Option<Arc<PolicySet>>>,
    index: NotificationIndex,
    /// The pk of authentik's anonymous user (guardian's `AnonymousUser`), the user of
    /// execution records for events without one. It differs per installation.
    anonymous_user_pk: Value,
    /// The largest record the producer may write. Every instance must use the same value:
    /// a control command too large to answer is refused (413) by every instance alike.
    max_record_bytes: usize,
    /// How event records are shaped (`events.format`, [`crate::ingest`]).
    format: Format,
}

impl Engine {
    pub fn new(catalog: Catalog, max_notifications: usize) -> Self {
        Self {
            catalog,
            snapshot: ArcSwap::from_pointee(PolicySet::empty()),
            writer: Mutex::new(None),
            index: NotificationIndex::new(max_notifications),
            anonymous_user_pk: Value::Null,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            format: Format::default(),
        }
    }

    /// Sets the input format of the event topic (`events.format`).
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets how long deleted notifications of events without `expires` are remembered.
    pub fn with_gone_horizon(mut self, secs: i64) -> Self {
        self.index = self.index.with_gone_horizon(secs);
        self
    }

    /// Sets the record size limit (`kafka.properties."message.max.bytes"`).
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// Whether a record of this key and value can be written.
    pub fn fits(&self, key: Option<&str>, value: Option<&[u8]>) -> bool {
        key.map_or(0, str::len) + value.map_or(0, <[u8]>::len) + RECORD_OVERHEAD
            <= self.max_record_bytes
    }

    fn record_fits(&self, r: &OutRecord) -> bool {
        self.fits(r.key.as_deref(), r.value.as_deref())
    }

    /// The compact dead letter of an input whose output cannot be written (see
    /// [`compact_dead_letter`]).
    pub fn output_dead_letter(
        &self,
        payload: &[u8],
        src: &RecordSource<'_>,
        output: OutTopic,
        error: &str,
    ) -> OutRecord {
        compact_dead_letter(
            payload,
            src,
            "output_too_large",
            &format!(
                "the {} record this event causes cannot be written: {error}",
                output.as_str()
            ),
        )
    }

    /// Sets the anonymous user's pk (`engine.anonymous_user_pk`).
    pub fn with_anonymous_user_pk(mut self, pk: Value) -> Self {
        self.anonymous_user_pk = pk;
        self
    }

    /// Publishes a prebuilt policy set as it is, instead of building it by commands
    /// (benchmarks and tools that need large sets). Serialized with commands like any change.
    pub fn replace_policy_set(&self, set: Arc<PolicySet>) {
        let mut retired = match self.writer.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *retired = Some(self.snapshot.swap(set));
    }

    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.snapshot.load_full()
    }

    pub fn index(&self) -> &NotificationIndex {
        &self.index
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Parses, evaluates and renders one event record.
    pub fn process_event(&self, payload: &[u8], src: &RecordSource<'_>) -> EventOutcome {
        self.process_record(Some(payload), src)
    }

    /// One record of the event topic (`None`: a tombstone), in the configured input format
    /// ([`crate::ingest`]): an event is evaluated, a record that is not one (a CDC update,
    /// delete, tombstone...) is skipped, an invalid one becomes a dead letter of the record as
    /// it arrived.
    pub fn process_record(&self, value: Option<&[u8]>, src: &RecordSource<'_>) -> EventOutcome {
        let payload = value.unwrap_or_default();
        let invalid = |err: EventError| {
            let mut record = dead_letter(payload, src, &err);
            if !self.record_fits(&record) {
                // Escapes and base64 make the envelope larger than the input.
                record = compact_dead_letter(payload, src, err.reason(), &err.to_string());
            }
            EventOutcome {
                records: vec![record],
                invalid: Some(err),
                ..EventOutcome::default()
            }
        };
        let bytes = match crate::ingest::ingest(self.format, value) {
            Ok(Ingested::Event(b)) => b,
            Ok(Ingested::Skip(reason)) => {
                return EventOutcome {
                    skipped: Some(reason),
                    ..EventOutcome::default()
                }
            }
            Err(err) => return invalid(err),
        };
        let event = match Event::parse(&bytes) {
            Ok(e) => e,
            Err(err) => return invalid(err),
        };
        let mut out = self.process_parsed(&event, src.timestamp);
        // An output too large to write is replaced by one compact dead letter of the event
        // (and its notification is not held, since it never reaches the topic).
        if let Some(bad) = out.records.iter().position(|r| !self.record_fits(r)) {
            let topic = out.records[bad].topic;
            let bytes = out.records[bad].value.as_ref().map_or(0, Vec::len);
            out.records.retain(|r| {
                if self.record_fits(r) {
                    return true;
                }
                if r.topic == OutTopic::Notifications {
                    if let Some(pk) = r.key.as_deref().and_then(|k| Uuid::parse_str(k).ok()) {
                        self.index.discard(&pk);
                    }
                }
                false
            });
            let held = &self.index;
            out.notifications.retain(|n| held.get(&n.pk).is_some());
            out.records.push(self.output_dead_letter(
                payload,
                src,
                topic,
                &format!(
                    "{bytes} bytes, over the {}-byte record limit",
                    self.max_record_bytes
                ),
            ));
            out.oversized = true;
        }
        out
    }

    /// Evaluates a parsed event against the current snapshot (one `load` for the whole event).
    pub fn process_parsed(&self, event: &Event, fallback: DateTime<Utc>) -> EventOutcome {
        let snapshot = self.snapshot.load();
        let eval = snapshot.matcher().evaluate(event);
        let mut out = EventOutcome {
            guarded: eval.guarded,
            executions: eval.executions.len(),
            ..EventOutcome::default()
        };
        for exec in &eval.executions {
            out.records.push(execution_record(
                event,
                exec,
                fallback,
                &self.anonymous_user_pk,
            ));
        }
        // authentik deletes an expired event, and with it (`notification_cleanup`) its
        // notifications: reprocessing one (a replay) must not bring them back.
        let expired = event
            .expires
            .as_ref()
            .is_some_and(|(_, t)| *t <= Utc::now());
        if !eval.fired.is_empty() && !expired {
            let rendering = notify::render(event, fallback);
            if rendering.body.is_none() {
                out.null_body = eval.fired.len();
            }
            for rule in &eval.fired {
                for n in notify::build(rule, event, &rendering) {
                    let bytes = n.to_bytes();
                    let pk = n.pk;
                    let rendered = Some(notify::Rendered {
                        body: true,
                        created: event.created.is_some(),
                        expires: event.expires.as_ref().map(|(_, t)| *t),
                    });
                    if let Some(held) = self.index.insert_built(n, event, &bytes) {
                        out.notifications.push(held);
                        out.records.push(OutRecord {
                            topic: OutTopic::Notifications,
                            key: Some(pk.to_string()),
                            value: Some(bytes),
                            rendered,
                        });
                    }
                }
            }
        }
        out.fired = eval.fired;
        out
    }

    /// Applies one control record and publishes the next snapshot if it changed.
    pub fn apply_command(&self, payload: &[u8], source: CommandSource) -> ControlOutcome {
        self.apply_command_at(payload, source, None)
    }

    /// [`apply_command`](Self::apply_command) with the command record's time, which bounds
    /// what `mark_all_seen` reaches (notifications created up to then).
    pub fn apply_command_at(
        &self,
        payload: &[u8],
        source: CommandSource,
        time: Option<DateTime<Utc>>,
    ) -> ControlOutcome {
        let mut retired = match self.writer.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let current = self.snapshot.load_full();
        let CommandOutcome {
            result,
            next,
            effects,
            resource,
            method_label,
        } = control::execute(
            &current,
            &self.index,
            &self.catalog,
            payload,
            source,
            self.max_record_bytes.saturating_sub(RECORD_OVERHEAD),
            time,
        );
        let mut result = result;
        let mut next = next;
        let result_bytes = serde_json::to_vec(&result).map_or(0, |v| v.len());
        if result_bytes + RECORD_OVERHEAD > self.max_record_bytes {
            // The answer could never be written: refuse the command (on every instance alike,
            // since all apply it with the same limit) rather than change state silently.
            next = None;
            result.version = current.version();
            result.status = 413;
            result.body = too_large_body(result_bytes, self.max_record_bytes);
        }
        let changed = next.is_some();
        if let Some(next) = next {
            debug_assert!(
                next.check_invariants().is_ok(),
                "{:?}",
                next.check_invariants()
            );
            *retired = Some(self.snapshot.swap(Arc::new(next)));
        }
        let mut records = Vec::with_capacity(1 + effects.len());
        for effect in effects {
            records.push(match effect {
                NotificationEffect::Upsert(n) => OutRecord {
                    topic: OutTopic::Notifications,
                    key: Some(n.pk.to_string()),
                    value: Some(n.to_bytes()),
                    rendered: notify::Rendered::of(&n),
                },
                NotificationEffect::Tombstone(pk) => OutRecord {
                    topic: OutTopic::Notifications,
                    key: Some(pk.to_string()),
                    value: None,
                    rendered: None,
                },
            });
        }
        let key = match &result.id {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        records.push(OutRecord {
            topic: OutTopic::Results,
            key,
            value: Some(serde_json::to_vec(&result).unwrap_or_default()),
            rendered: None,
        });
        ControlOutcome {
            records,
            status: result.status,
            resource: resource.as_str(),
            method: method_label,
            version: result.version,
            changed,
        }
    }

    /// Takes a record read back from the notification topic at start into the index.
    /// Returns false for a record that is not a notification (it is skipped). `rendered` is
    /// the record's [`HEADER_RENDERED`](notify::HEADER_RENDERED) header, when it has one.
    pub fn restore_notification(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        rendered: Option<&[u8]>,
    ) -> bool {
        let pk = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| Uuid::parse_str(k).ok());
        match (pk, payload) {
            (Some(pk), None) => {
                self.index.restore_tombstone(&pk);
                true
            }
            (None, None) => false,
            // This instance's own output read back: already held as it is, nothing to parse.
            (Some(pk), Some(bytes)) if self.index.holds_record(&pk, bytes) => true,
            // UTF-8 checked once for the whole record (a fast pass) and parsed as text: a slice
            // reader checks every string again, and the embedded event a second time when it
            // is captured (a tenth of the catch-up).
            (_, Some(bytes)) => match std::str::from_utf8(bytes)
                .map_err(serde::de::Error::custom)
                .and_then(serde_json::from_str::<notify::RecordView>)
            {
                Ok(view) => {
                    let rendered = rendered.and_then(notify::Rendered::parse);
                    // A body the header says is the event's rendering is not held.
                    let n = view.into_notification(rendered.is_some_and(|r| r.body));
                    let npk = n.pk;
                    if self.index.restore_rendered(n, rendered) == crate::index::Restored::Stale {
                        tracing::info!(pk = %npk, "an older state of a notification was read back; the control owner re-emits the current one");
                    }
                    true
                }
                Err(_) => false,
            },
        }
    }
}

/// DRF-style body of a 413 for a command whose answer would exceed the record limit.
pub fn too_large_body(bytes: usize, max: usize) -> Value {
    json!({"detail": format!(
        "Request entity too large: the result would be {bytes} bytes, over the {max}-byte record limit (kafka message.max.bytes)."
    )})
}

/// The first `max` bytes of `s` at a character boundary.
fn excerpt(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A dead letter that always fits: the reason, the error, where the record came from, its
/// size, and only the first [`DEAD_LETTER_EXCERPT`] bytes of it (`payload_excerpt`, lossy
/// UTF-8). For records whose full envelope, or whose output, is too large to write.
pub fn compact_dead_letter(
    payload: &[u8],
    src: &RecordSource<'_>,
    reason: &str,
    error: &str,
) -> OutRecord {
    let head = &payload[..payload.len().min(DEAD_LETTER_EXCERPT)];
    let lossy = String::from_utf8_lossy(head);
    // Bound the excerpt as JSON text, not as bytes: a control character takes six bytes
    // (`\u0001`), so 4096 of them would not be compact.
    let mut json_len = 0;
    let mut end = 0;
    for (i, c) in lossy.char_indices() {
        json_len += match c {
            '"' | '\\' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if json_len > DEAD_LETTER_EXCERPT {
            break;
        }
        end = i + c.len_utf8();
    }
    let text = &lossy[..end];
    let key = src
        .key
        .map(|k| excerpt(&String::from_utf8_lossy(k), 256).to_string());
    let env = json!({
        "reason": reason,
        "error": excerpt(error, 1024),
        "source": {"topic": src.topic, "partition": src.partition, "offset": src.offset},
        "key": key,
        "payload_excerpt": text,
        "payload_size": payload.len(),
        "truncated": text.len() < payload.len(),
    });
    OutRecord {
        topic: OutTopic::Dlq,
        key,
        value: Some(serde_json::to_vec(&env).unwrap_or_default()),
        rendered: None,
    }
}

/// The dead-letter envelope: the reason, where the record came from, and its original bytes
/// (`payload` when they are UTF-8 text, else `payload_base64`), so it can be fixed and
/// re-produced as it was.
pub fn dead_letter(payload: &[u8], src: &RecordSource<'_>, err: &EventError) -> OutRecord {
    use base64::Engine as _;
    let mut env = json!({
        "reason": err.reason(),
        "error": err.to_string(),
        "source": {"topic": src.topic, "partition": src.partition, "offset": src.offset},
        "key": src.key.map(|k| String::from_utf8_lossy(k).into_owned()),
    });
    match std::str::from_utf8(payload) {
        Ok(text) => env["payload"] = Value::String(text.to_string()),
        Err(_) => {
            env["payload_base64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(payload))
        }
    }
    OutRecord {
        topic: OutTopic::Dlq,
        key: src.key.map(|k| String::from_utf8_lossy(k).into_owned()),
        value: Some(serde_json::to_vec(&env).unwrap_or_default()),
        rendered: None,
    }
}

/// The user of an execution record, as `PolicyProcess.create_event` sets it:
/// `event.set_user(request.user)`, where `event_trigger_handler` made the request's user
/// `User.objects.filter(pk=event.user.get("pk")).first() or get_anonymous_user()`, and
/// `events/utils.py` `get_user` renders `{"username", "pk", "email"}` (plus
/// `"is_anonymous": true` for the anonymous user). With no user directory here, the user is the
/// one the event names (its username and email as the event carries them).
pub fn execution_user(event: &Event, anonymous_pk: &Value) -> Value {
    let user = event.user_value();
    let pk = user.get("pk").filter(|pk| crate::events::python_truthy(pk));
    match pk {
        Some(pk) => {
            let field = |k: &str| user.get(k).cloned().unwrap_or(Value::String(String::new()));
            let username = field("username");
            let mut out = json!({"username": username, "pk": pk, "email": field("email")});
            if username == ANONYMOUS_USERNAME {
                out["is_anonymous"] = Value::Bool(true);
            }
            out
        }
        None => json!({
            "username": ANONYMOUS_USERNAME,
            "pk": anonymous_pk,
            "email": "",
            "is_anonymous": true,
        }),
    }
}

/// guardian's `ANONYMOUS_USER_NAME`, authentik's default.
pub const ANONYMOUS_USERNAME: &str = "AnonymousUser";

/// The `policy_execution` event authentik logs for a policy with `execution_logging`
/// (`authentik.policies.process`): the result with the policy's messages, the policy's uuid as
/// 32 hex digits, and the binding; the user as [`execution_user`]; client IP and time are the
/// evaluated event's (the record's time for an event without `created`).
fn execution_record(
    event: &Event,
    exec: &Execution,
    fallback: DateTime<Utc>,
    anonymous_pk: &Value,
) -> OutRecord {
    let pk = Uuid::new_v5(
        &EXECUTION_NAMESPACE,
        format!("{}/{}", event.pk, exec.binding.pk).as_bytes(),
    );
    let record = json!({
        "pk": pk,
        "user": execution_user(event, anonymous_pk),
        "action": "policy_execution",
        "app": "authentik.policies.process",
        "context": {
            "message": "Policy Execution",
            "policy_uuid": exec.policy.pk.simple().to_string(),
            "binding": &*exec.binding,
            "request": {"event": {"pk": event.pk, "action": event.action}},
            "result": {"passing": exec.passing, "messages": exec.policy.messages()},
        },
        "client_ip": event.client_ip,
        "created": event
            .created
            .as_ref()
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| crate::events::format_ts(&fallback)),
    });
    OutRecord {
        topic: OutTopic::Executions,
        key: Some(pk.to_string()),
        value: Some(serde_json::to_vec(&record).unwrap_or_default()),
        rendered: None,
    }
}
