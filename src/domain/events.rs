//! Event records: authentik's `Event` serializer output, parsed and validated (SPEC §2.1).
//!
//! Parsing borrows nothing past the call, but copies only what matching and rendering need:
//! `user`, `context` and `brand` are kept as raw JSON text and re-emitted byte for byte (so the
//! context keeps its key order and number spelling), while the few context fields matching
//! reads (`model`, `policy_uuid`) are probed once at parse time.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;
use uuid::Uuid;

/// Why a record is not a valid event. The `reason` label is the metrics/DLQ vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("record is not valid UTF-8")]
    NotUtf8,
    #[error("record is not JSON: {0}")]
    NotJson(String),
    #[error("record is not a JSON object")]
    NotObject,
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` has the wrong type: expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}` is invalid: {detail}")]
    InvalidValue { field: &'static str, detail: String },
    /// A record in Debezium's shape that breaks it (see [`crate::ingest::debezium`]).
    #[error("Debezium record: `{field}` {detail}")]
    Debezium { field: String, detail: String },
    /// authentik's `"Created Event"` log line: it has no event uuid (nor `app`, `created`).
    #[error("an authentik \"Created Event\" log line is not an event record: it has no event uuid, app or created time; feed events by change data capture (README \"Feeding events\")")]
    LogLine,
}

impl EventError {
    /// Every [`reason`](Self::reason), for metrics that start at 0.
    pub const REASONS: [&'static str; 9] = [
        "not_utf8",
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "invalid_debezium",
        "authentik_log_line",
        "output_too_large",
    ];

    /// A short, fixed label for metrics and the dead-letter envelope.
    pub fn reason(&self) -> &'static str {
        match self {
            EventError::NotUtf8 => "not_utf8",
            EventError::NotJson(_) => "not_json",
            EventError::NotObject => "not_object",
            EventError::MissingField(_) => "missing_field",
            EventError::WrongType { .. } => "wrong_type",
            EventError::InvalidValue { .. } => "invalid_value",
            EventError::Debezium { .. } => "invalid_debezium",
            EventError::LogLine => "authentik_log_line",
        }
    }
}

/// The user an event is about, reduced to what destinations need.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRef {
    /// `user.pk` exactly as sent (authentik uses integers).
    pub pk: Value,
    /// `pk` as text, so `5` and `"5"` name the same user in `mark_all_seen`.
    pub key: String,
}

impl UserRef {
    pub fn from_pk(pk: &Value) -> Option<UserRef> {
        let key = user_key(pk)?;
        Some(UserRef {
            pk: pk.clone(),
            key,
        })
    }
}

/// The canonical text of a user pk: strings as they are, numbers in decimal; other JSON types
/// cannot be a pk.
pub fn user_key(pk: &Value) -> Option<String> {
    match pk {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Python's truth value of a decoded JSON value (`bool(x)`).
pub fn python_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A validated event. Cheap to share: notifications of one event hold one `Arc` of it.
#[derive(Debug)]
pub struct Event {
    pub pk: Uuid,
    pub action: String,
    pub app: String,
    pub client_ip: Option<String>,
    /// `created` as sent (already checked to be RFC 3339) and parsed.
    pub created: Option<(String, DateTime<Utc>)>,
    pub expires: Option<(String, DateTime<Utc>)>,
    /// `user` object as raw JSON (`{}` when absent or null).
    pub user: Box<RawValue>,
    /// `context` object as raw JSON (`{}` when absent or null).
    pub context: Box<RawValue>,
    pub brand: Option<Box<RawValue>>,
    /// `"{context.model.app}.{context.model.model_name}"` when the context names a model.
    pub model: Option<String>,
    /// `context.model` is there but is not an object (a string, number, list or null).
    /// authentik's `passes_model` then raises (`.get` on a non-dict), which makes every
    /// binding of a policy with a `model` criterion false (see [`crate::matcher`]).
    pub model_malformed: bool,
    /// `context.policy_uuid`, when it is a uuid (authentik writes it as 32 hex digits).
    pub policy_uuid: Option<Uuid>,
}

/// Every field is optional and raw here so that each problem gets its own, precise reason.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    pk: Option<&'a RawValue>,
    #[serde(borrow)]
    event_uuid: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    action: Option<&'a RawValue>,
    #[serde(borrow)]
    app: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    client_ip: Option<&'a RawValue>,
    #[serde(borrow)]
    created: Option<&'a RawValue>,
    #[serde(borrow)]
    expires: Option<&'a RawValue>,
    #[serde(borrow)]
    brand: Option<&'a RawValue>,
}

/// The context fields matching needs; everything else in the context is skipped unread.
#[derive(Deserialize, Default)]
struct ContextProbe<'a> {
    #[serde(borrow, default)]
    model: Present<'a>,
    #[serde(borrow, default)]
    policy_uuid: Option<&'a RawValue>,
}

/// A key's raw value when the key is there, `null` included (an `Option` field would read a
/// JSON null as absent, and authentik tells the two apart: `context.get("model", {})`).
#[derive(Default)]
struct Present<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|r| Present(Some(r)))
    }
}

#[derive(Deserialize)]
struct ModelProbe<'a> {
    #[serde(borrow)]
    app: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UserProbe {
    #[serde(default)]
    pk: Option<Value>,
}

const EMPTY_OBJECT: &str = "{}";

fn empty_object() -> Box<RawValue> {
    RawValue::from_string(EMPTY_OBJECT.to_string()).unwrap_or_else(|_| unreachable_raw())
}

// `{}` is always valid JSON; this exists only so no `unwrap` sits on a data path.
fn unreachable_raw() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new()).expect("an empty map serializes")
}

fn starts_with(raw: &RawValue, c: u8) -> bool {
    raw.get().as_bytes().first() == Some(&c)
}

fn string_field(raw: &RawValue, field: &'static str) -> Result<String, EventError> {
    if !starts_with(raw, b'"') {
        return Err(EventError::WrongType {
            field,
            expected: "string",
        });
    }
    // Without escapes, the text between the quotes is the value: the parse that produced
    // `raw` already rejected control characters, so no second deserializer is needed.
    let text = raw.get();
    if let Some(inner) = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains('\\'))
    {
        return Ok(inner.to_string());
    }
    serde_json::from_str::<String>(text).map_err(|e| EventError::InvalidValue {
        field,
        detail: e.to_string(),
    })
}

fn object_field(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<Box<RawValue>>, EventError> {
    match raw {
        None => Ok(None),
        Some(r) if starts_with(r, b'{') => Ok(Some(r.to_owned())),
        Some(_) => Err(EventError::WrongType {
            field,
            expected: "object",
        }),
    }
}

fn datetime_field(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<(String, DateTime<Utc>)>, EventError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = string_field(raw, field)?;
    let parsed = DateTime::parse_from_rfc3339(&text).map_err(|e| EventError::InvalidValue {
        field,
        detail: format!("not an RFC 3339 date-time ({e})"),
    })?;
    Ok(Some((text, parsed.with_timezone(&Utc))))
}

fn uuid_field(raw: &RawValue, field: &'static str) -> Result<Uuid, EventError> {
    let text = string_field(raw, field)?;
    Uuid::parse_str(&text).map_err(|_| EventError::InvalidValue {
        field,
        detail: format!("{text:?} is not a uuid"),
    })
}

impl Event {
    /// Parses and validates one record value.
    pub fn parse(bytes: &[u8]) -> Result<Event, EventError> {
        let text = std::str::from_utf8(bytes).map_err(|_| EventError::NotUtf8)?;
        let trimmed = text.trim_start();
        if !trimmed.starts_with('{') {
            // serde would accept a JSON array for a struct; an event must be an object.
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Err(EventError::NotObject),
                Err(e) => Err(EventError::NotJson(e.to_string())),
            };
        }
        let raw: RawEvent<'_> =
            serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;

        let pk_raw = raw
            .pk
            .or(raw.event_uuid)
            .ok_or(EventError::MissingField("pk"))?;
        let pk = uuid_field(pk_raw, "pk")?;
        let action = string_field(
            raw.action.ok_or(EventError::MissingField("action"))?,
            "action",
        )?;
        let app = string_field(raw.app.ok_or(EventError::MissingField("app"))?, "app")?;
        let client_ip = raw
            .client_ip
            .map(|r| string_field(r, "client_ip"))
            .transpose()?;
        let created = datetime_field(raw.created, "created")?;
        let expires = datetime_field(raw.expires, "expires")?;
        let user = object_field(raw.user, "user")?.unwrap_or_else(empty_object);
        let context = object_field(raw.context, "context")?.unwrap_or_else(empty_object);
        let brand = object_field(raw.brand, "brand")?;

        // A malformed `user.pk` or `context.model` makes those parts unusable for matching
        // and destinations, not the event invalid: authentik would still store the event.
        //
        // Most contexts name neither key: a substring scan is several times cheaper than a
        // second parse. A key spelled with a `\u` escape still gets the full probe.
        let ctx = context.get();
        let probe: ContextProbe<'_> = if ctx.contains("\"model\"")
            || ctx.contains("\"policy_uuid\"")
            || ctx.contains("\\u")
        {
            serde_json::from_str(ctx).unwrap_or_default()
        } else {
            ContextProbe::default()
        };
        let model = probe
            .model
            .0
            .and_then(|m| serde_json::from_str::<ModelProbe<'_>>(m.get()).ok())
            .and_then(|m| match (m.app, m.model_name) {
                (Some(app), Some(name)) => Some(format!("{app}.{name}")),
                _ => None,
            });
        let model_malformed = probe.model.0.is_some_and(|m| !starts_with(m, b'{'));
        let policy_uuid = probe
            .policy_uuid
            .and_then(|p| serde_json::from_str::<Cow<'_, str>>(p.get()).ok())
            .and_then(|s| Uuid::parse_str(&s).ok());

        Ok(Event {
            pk,
            action,
            app,
            client_ip,
            created,
            expires,
            user,
            context,
            brand,
            model,
            model_malformed,
            policy_uuid,
        })
    }

    /// The event in the seed's `Event` shape (`pk`, never `event_uuid`; unknown fields dropped).
    pub fn to_record(&self) -> EventRecord<'_> {
        EventRecord {
            pk: self.pk,
            user: &self.user,
            action: &self.action,
            app: &self.app,
            context: &self.context,
            client_ip: self.client_ip.as_deref(),
            created: self.created.as_ref().map(|(s, _)| s.as_str()),
            expires: self.expires.as_ref().map(|(s, _)| s.as_str()),
            brand: self.brand.as_deref(),
        }
    }

    /// The user the event is about, when `user.pk` is usable: authentik tests
    /// `event.user.get("pk")` for truth, so `0`, `""`, `false` and `null` name nobody.
    /// Computed on demand: only events that fire a rule need it.
    pub fn user_ref(&self) -> Option<UserRef> {
        serde_json::from_str::<UserProbe>(self.user.get())
            .ok()
            .and_then(|u| u.pk)
            .filter(python_truthy)
            .and_then(|pk| UserRef::from_pk(&pk))
    }

    /// The decoded `user` object (executions re-render it).
    pub fn user_value(&self) -> serde_json::Map<String, Value> {
        serde_json::from_str(self.user.get()).unwrap_or_default()
    }

    /// The record as raw JSON, for embedding in notifications.
    pub fn to_raw(&self) -> Arc<RawValue> {
        let text =
            serde_json::to_string(&self.to_record()).unwrap_or_else(|_| EMPTY_OBJECT.to_string());
        Arc::from(RawValue::from_string(text).unwrap_or_else(|_| empty_object()))
    }

    /// The decoded context, for rendering (only done for events that matched).
    pub fn context_value(&self) -> serde_json::Map<String, Value> {
        serde_json::from_str(self.context.get()).unwrap_or_default()
    }
}

/// Serialized form of an [`Event`].
#[derive(Serialize)]
pub struct EventRecord<'a> {
    pub pk: Uuid,
    pub user: &'a RawValue,
    pub action: &'a str,
    pub app: &'a str,
    pub context: &'a RawValue,
    pub client_ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<&'a RawValue>,
}

/// A timestamp in the form every record we write uses: RFC 3339, UTC, `Z`.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> Result<Event, EventError> {
        Event::parse(v.to_string().as_bytes())
    }

    fn base() -> Value {
        json!({
            "pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01",
            "user": {"pk": 7, "username": "akadmin", "email": "root@example.com"},
            "action": "login",
            "app": "authentik.events.signals",
            "context": {"b": 1, "a": {"y": 2, "x": 3}},
            "client_ip": "10.0.0.1",
            "created": "2024-09-13T14:05:42.170Z",
            "expires": "2025-09-13T14:05:42.170Z",
            "brand": {"pk": "x"},
            "extra": "ignored"
        })
    }

    #[test]
    fn parses_the_serializer_shape_and_keeps_context_order() {
        let e = ev(base()).expect("valid");
        assert_eq!(e.action, "login");
        assert_eq!(e.client_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(e.context.get(), r#"{"b":1,"a":{"y":2,"x":3}}"#);
        assert_eq!(e.user_ref().as_ref().map(|u| u.key.as_str()), Some("7"));
        let rec = serde_json::to_value(e.to_record()).expect("serializes");
        assert!(rec.get("extra").is_none(), "unknown fields are dropped");
        assert_eq!(rec["pk"], base()["pk"]);
        assert_eq!(rec["brand"], json!({"pk": "x"}));
    }

    #[test]
    fn model_and_policy_uuid_are_found_however_the_key_is_spelled() {
        let pu = "0b1e4c9c4c6b4c1f8d3e2a1b0c9d8e7f";
        // Plain keys, nested under another key (not the context's own), and `\u` escapes.
        let cases = [
            (
                json!({"model": {"app": "a", "model_name": "m"}, "policy_uuid": pu}),
                true,
            ),
            (
                json!({"x": {"model": {"app": "a", "model_name": "m"}, "policy_uuid": pu}}),
                false,
            ),
        ];
        for (ctx, found) in cases {
            let mut v = base();
            v["context"] = ctx;
            let e = ev(v).expect("valid");
            assert_eq!(e.model.as_deref(), found.then_some("a.m"));
            assert_eq!(e.policy_uuid.is_some(), found);
        }
        let mut text = base().to_string();
        let escaped = format!(
            r#""context":{{"mod\u0065l":{{"app":"a","model_name":"m"}},"policy\u005fuuid":"{pu}"}}"#
        );
        let start = text.find(r#""context""#).expect("context");
        let end = start + text[start..].find('}').expect("end of context") + 2;
        text.replace_range(start..end, &escaped);
        let e = Event::parse(text.as_bytes()).expect("valid");
        assert_eq!(e.model.as_deref(), Some("a.m"));
        assert!(e.policy_uuid.is_some());
    }

    #[test]
    fn accepts_event_uuid_alias() {
        let mut v = base();
        let pk = v.as_object_mut().and_then(|m| m.remove("pk")).expect("pk");
        v["event_uuid"] = pk.clone();
        let e = ev(v).expect("valid");
        assert_eq!(e.pk.to_string(), pk.as_str().expect("string"));
        let rec = serde_json::to_value(e.to_record()).expect("serializes");
        assert_eq!(rec["pk"], pk, "re-emitted in pk form");
    }

    #[test]
    fn missing_required_fields_are_invalid() {
        for field in ["pk", "action", "app"] {
            let mut v = base();
            v.as_object_mut().map(|m| m.remove(field));
            let err = ev(v).expect_err(field);
            assert_eq!(err, EventError::MissingField(field));
            assert_eq!(err.reason(), "missing_field");
        }
    }

    #[test]
    fn wrong_types_are_invalid_and_name_the_field() {
        let cases = [
            ("action", json!(5), "action"),
            ("app", json!(["x"]), "app"),
            ("client_ip", json!(1), "client_ip"),
            ("context", json!("text"), "context"),
            ("user", json!([1]), "user"),
            ("brand", json!(1), "brand"),
            ("created", json!(1), "created"),
            ("pk", json!(12), "pk"),
        ];
        for (field, value, named) in cases {
            let mut v = base();
            v[field] = value;
            let err = ev(v).expect_err(field);
            assert!(err.to_string().contains(named), "{err}");
            assert_eq!(err.reason(), "wrong_type", "{field}");
        }
    }

    #[test]
    fn bad_values_are_invalid() {
        let mut v = base();
        v["pk"] = json!("not-a-uuid");
        assert_eq!(ev(v).expect_err("pk").reason(), "invalid_value");
        let mut v = base();
        v["created"] = json!("yesterday");
        assert_eq!(ev(v).expect_err("created").reason(), "invalid_value");
    }

    #[test]
    fn not_json_not_object_not_utf8() {
        assert_eq!(Event::parse(b"{nope").expect_err("x").reason(), "not_json");
        assert_eq!(Event::parse(b"").expect_err("x").reason(), "not_json");
        assert_eq!(
            Event::parse(b"[1,2]").expect_err("x").reason(),
            "not_object"
        );
        assert_eq!(
            Event::parse(b"\"s\"").expect_err("x").reason(),
            "not_object"
        );
        assert_eq!(
            Event::parse(&[0xff, 0xfe]).expect_err("x").reason(),
            "not_utf8"
        );
        assert_eq!(
            Event::parse(br#"{"pk":"0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01","action":"a","app":"b","app":"c"}"#)
                .expect_err("dup")
                .reason(),
            "not_json"
        );
    }

    #[test]
    fn nulls_for_optional_objects_and_client_ip() {
        let mut v = base();
        v["client_ip"] = Value::Null;
        v["user"] = Value::Null;
        v["context"] = Value::Null;
        let e = ev(v).expect("valid");
        assert_eq!(e.client_ip, None);
        assert_eq!(e.user.get(), "{}");
        assert_eq!(e.context.get(), "{}");
        assert!(e.user_ref().is_none());
    }

    #[test]
    fn derives_model_and_policy_uuid_from_context() {
        let mut v = base();
        v["context"] = json!({"model": {"app": "authentik_core", "model_name": "user", "pk": 5, "name": "x"},
                              "policy_uuid": "7c0b1b8e2f0b4e4f9d1c2a3b4c5d6e7f"});
        let e = ev(v).expect("valid");
        assert_eq!(e.model.as_deref(), Some("authentik_core.user"));
        assert_eq!(
            e.policy_uuid.map(|u| u.simple().to_string()).as_deref(),
            Some("7c0b1b8e2f0b4e4f9d1c2a3b4c5d6e7f")
        );
        // A model without model_name, or a non-object model, names no model.
        let mut v = base();
        v["context"] = json!({"model": {"app": "authentik_core"}});
        assert_eq!(ev(v).expect("valid").model, None);
        let mut v = base();
        v["context"] = json!({"model": "authentik_core.user"});
        let e = ev(v).expect("valid");
        assert_eq!(e.model, None);
        assert!(e.model_malformed);
        for bad in [json!(null), json!(5), json!([1])] {
            let mut v = base();
            v["context"] = json!({"model": bad});
            assert!(ev(v).expect("valid").model_malformed, "{bad}");
        }
        let mut v = base();
        v["context"] = json!({"model": {"app": "a"}});
        assert!(!ev(v).expect("valid").model_malformed);
        assert!(!ev(base()).expect("valid").model_malformed);
    }

    /// authentik `events/models.py` `NotificationRule.destination_users`:
    /// `if self.destination_event_user and event.user.get("pk")`.
    #[test]
    fn falsy_user_pks_name_nobody() {
        for pk in [json!(0), json!(0.0), json!(""), json!(false), json!(null)] {
            let mut v = base();
            v["user"] = json!({"pk": pk, "username": "x"});
            assert!(ev(v).expect("valid").user_ref().is_none(), "{pk}");
        }
        let mut v = base();
        v["user"] = json!({"pk": 1});
        assert!(ev(v).expect("valid").user_ref().is_some());
    }

    #[test]
    fn user_without_pk_has_no_user_ref() {
        let mut v = base();
        v["user"] = json!({"username": "anonymous"});
        assert!(ev(v).expect("valid").user_ref().is_none());
        let mut v = base();
        v["user"] = json!({"pk": "abc"});
        assert_eq!(
            ev(v).expect("valid").user_ref().map(|u| u.key),
            Some("abc".into())
        );
    }
}
