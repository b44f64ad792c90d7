//! Debezium's PostgreSQL connector, JSON converter, on authentik's table
//! `authentik_events_event` (`authentik/events/models.py` `Event`; columns `event_uuid`,
//! `user`, `action`, `app`, `context`, `client_ip`, `created`, `expires`, `expiring`, `brand`,
//! which was `tenant` before authentik 2024.2).
//!
//! What arrives, from Debezium's documentation ("Debezium connector for PostgreSQL"):
//! * "Data change events" → "Change event values": the envelope `{"before", "after", "source",
//!   "op", "ts_ms", ...}`; `op` is `c` (create), `r` (read: a snapshot), `u`, `d`, `t`
//!   (truncate) or `m` (logical decoding message, with `message` and no row). With the JSON
//!   converter's `schemas.enable=true` every value is wrapped as `{"schema", "payload"}`.
//! * "Tombstone events": after a delete, a record with a null value (with schemas on, a
//!   `payload` of null).
//! * "Data type mappings" → "Basic types": `json`/`jsonb` are `STRING`
//!   (`io.debezium.data.Json`): the column's JSON text, never an object. `uuid` is a `STRING`
//!   (`io.debezium.data.Uuid`). "Temporal types": `timestamptz` is a `STRING`
//!   (`io.debezium.time.ZonedTimestamp`, ISO 8601 in UTC, six fraction digits since 2.2), in
//!   every `time.precision.mode`. "Network address types": `inet` is a `STRING`.
//! * "Replica identity": under the default identity a delete's `before` holds placeholders
//!   for unchanged columns, so skipped records are not validated.
//! * "New Record State Extraction" (`io.debezium.transforms.ExtractNewRecordState`): the row
//!   alone, optionally with `add.fields` (`__op`, `__table`, `__lsn`, `__source_ts_ms`) and, with
//!   `delete.handling.mode=rewrite`, `__deleted: "true"` on deletes.
//!
//! A row becomes exactly what authentik's API serialises for it (`events/api/events.py`
//! `EventSerializer`: `pk`, `user`, `action`, `app`, `context`, `client_ip`, `created`,
//! `expires`, `brand`): jsonb text parsed with its key order kept (PostgreSQL's jsonb order,
//! which is what authentik reads back), timestamps as DRF renders them (ISO 8601, `Z`,
//! microseconds only when non-zero). The same event therefore yields byte-identical
//! notification and execution records whichever way it arrived.

use super::Ingested;
use crate::events::EventError;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use uuid::Uuid;

fn broken(field: impl Into<String>, detail: impl Into<String>) -> EventError {
    EventError::Debezium {
        field: field.into(),
        detail: detail.into(),
    }
}

/// The keys that matter at the top of a record, borrowed (nothing else is built). `pk` and
/// `event` tell a native event and authentik's log line apart under `auto`.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(default, deserialize_with = "present")]
    pk: bool,
    #[serde(default, borrow, deserialize_with = "raw")]
    event: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    schema: bool,
    #[serde(default, borrow, deserialize_with = "raw")]
    payload: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    op: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    after: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    event_uuid: bool,
    #[serde(default, borrow, deserialize_with = "raw")]
    context: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    __deleted: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    __op: Option<&'a RawValue>,
}

/// The columns of `authentik_events_event`, each as sent (converted one by one below, so each
/// problem names its column).
#[derive(Deserialize)]
struct Row<'a> {
    #[serde(default, borrow, deserialize_with = "raw")]
    event_uuid: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    user: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    action: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    app: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    context: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    client_ip: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    created: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    expires: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "raw")]
    brand: Option<&'a RawValue>,
    /// `brand` before authentik 2024.2.
    #[serde(default, borrow, deserialize_with = "raw")]
    tenant: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(true)
}

/// A present key, `null` included (serde's `Option` would make `null` absent).
fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn is_null(v: Option<&RawValue>) -> bool {
    v.is_none_or(|r| r.get() == "null")
}

/// A JSON string's content.
fn text<'a>(v: &'a RawValue) -> Option<Cow<'a, str>> {
    serde_json::from_str::<Cow<'a, str>>(v.get()).ok()
}

/// One record of a Debezium topic. `strict`: the format was set explicitly, so a record of no
/// Debezium shape is refused as one.
pub fn ingest(bytes: &[u8], strict: bool) -> Result<Ingested<'static>, EventError> {
    let text_all = std::str::from_utf8(bytes).map_err(|_| EventError::NotUtf8)?;
    if !text_all.trim_start().starts_with('{') {
        // Not an object: the same reasons the event parser gives.
        return Err(
            match serde_json::from_str::<serde::de::IgnoredAny>(text_all) {
                Ok(_) => EventError::NotObject,
                Err(e) => EventError::NotJson(e.to_string()),
            },
        );
    }
    let top: Top<'_> =
        serde_json::from_str(text_all).map_err(|e| EventError::NotJson(e.to_string()))?;
    from_top(top, text_all, "", strict)
}

/// `events.format = "auto"` for a record that may be Debezium's (see [`super::detect`]): one
/// parse of its top level decides, and a Debezium record goes on from it.
pub fn ingest_auto(bytes: &[u8]) -> Result<Ingested<'_>, EventError> {
    let native = || Ok(Ingested::Event(Cow::Borrowed(bytes)));
    let Ok(text_all) = std::str::from_utf8(bytes) else {
        return native();
    };
    let Ok(top) = serde_json::from_str::<Top<'_>>(text_all) else {
        // Not an object (or not JSON): the event parser gives the precise reason.
        return native();
    };
    if top.pk {
        return native();
    }
    // A row's `context` is jsonb, which Debezium always sends as text: a record that spells its
    // key `event_uuid` but carries `context` as an object is an event in authentik's own shape
    // (the event parser takes `event_uuid` for `pk`), not a row.
    let row = top.event_uuid && !top.context.is_some_and(|c| c.get().starts_with('{'));
    let cdc = (top.schema && top.payload.is_some()) || top.op.is_some() || row;
    if !cdc {
        if top.event.is_some_and(|e| e.get() == "\"Created Event\"") {
            return Err(EventError::LogLine);
        }
        return native();
    }
    from_top(top, text_all, "", false).map(|i| match i {
        Ingested::Event(b) => Ingested::Event(Cow::Owned(b.into_owned())),
        Ingested::Skip(r) => Ingested::Skip(r),
    })
}

fn ingest_value(v: &RawValue, prefix: &str, strict: bool) -> Result<Ingested<'static>, EventError> {
    let top: Top<'_> = serde_json::from_str(v.get())
        .map_err(|e| broken(format!("{prefix}(value)"), format!("is not an object: {e}")))?;
    from_top(top, v.get(), prefix, strict)
}

fn from_top(
    top: Top<'_>,
    whole: &str,
    prefix: &str,
    strict: bool,
) -> Result<Ingested<'static>, EventError> {
    // `schemas.enable=true`: the value is under `payload` (null for a tombstone).
    if top.schema && !prefix.starts_with("payload") {
        if let Some(p) = top.payload {
            if p.get() == "null" {
                return Ok(Ingested::Skip("tombstone"));
            }
            if !p.get().starts_with('{') {
                return Err(broken("payload", "is not an object"));
            }
            return ingest_value(p, "payload.", strict);
        }
    }
    if let Some(op) = top.op {
        let op = text(op).unwrap_or_default();
        let skip = match op.as_ref() {
            "c" | "r" => None,
            "u" => Some("update"),
            "d" => Some("delete"),
            "t" => Some("truncate"),
            "m" => Some("message"),
            other => {
                return Err(broken(
                    format!("{prefix}op"),
                    format!("is {other:?}, not one of c, r, u, d, t, m"),
                ))
            }
        };
        if let Some(reason) = skip {
            return Ok(Ingested::Skip(reason));
        }
        let field = format!("{prefix}after");
        return match top.after {
            Some(a) if a.get().starts_with('{') => row_to_event(a.get(), &format!("{field}.")),
            _ => Err(broken(field, format!("is not a row, for op {op:?}"))),
        };
    }
    if top.event_uuid {
        // An unwrapped row (`ExtractNewRecordState`), maybe with added fields.
        let deleted = top
            .__deleted
            .is_some_and(|d| matches!(d.get(), "\"true\"" | "true"));
        if deleted {
            return Ok(Ingested::Skip("delete"));
        }
        match top.__op.and_then(text).as_deref() {
            Some("u") => return Ok(Ingested::Skip("update")),
            Some("d") => return Ok(Ingested::Skip("delete")),
            Some("t") => return Ok(Ingested::Skip("truncate")),
            _ => {}
        }
        return row_to_event(whole, prefix);
    }
    let detail = if strict {
        "is missing: not a Debezium change event or an authentik_events_event row"
    } else {
        "is missing"
    };
    Err(broken(format!("{prefix}op"), detail))
}

/// A json/jsonb column: the JSON text Debezium sends as a string, parsed (key order kept).
fn json_column(v: Option<&RawValue>, name: &str, at: &str) -> Result<Value, EventError> {
    if is_null(v) {
        return Ok(Value::Null);
    }
    let t = v.and_then(text).ok_or_else(|| {
        broken(
            format!("{at}{name}"),
            "is not a string (Debezium sends json/jsonb as io.debezium.data.Json text)",
        )
    })?;
    serde_json::from_str(&t)
        .map_err(|e| broken(format!("{at}{name}"), format!("is not JSON text: {e}")))
}

fn string_column<'a>(
    v: Option<&'a RawValue>,
    name: &str,
    at: &str,
    nullable: bool,
) -> Result<Option<Cow<'a, str>>, EventError> {
    if is_null(v) {
        return if nullable {
            Ok(None)
        } else {
            Err(broken(format!("{at}{name}"), "is missing"))
        };
    }
    v.and_then(text)
        .map(Some)
        .ok_or_else(|| broken(format!("{at}{name}"), "is not a string"))
}

/// A `timestamptz` column (`io.debezium.time.ZonedTimestamp`) as authentik's API renders it.
fn time_column(
    v: Option<&RawValue>,
    name: &str,
    at: &str,
    nullable: bool,
) -> Result<Option<String>, EventError> {
    let Some(s) = string_column(v, name, at, nullable)? else {
        return Ok(None);
    };
    let t = DateTime::parse_from_rfc3339(&s)
        .map_err(|e| {
            broken(
                format!("{at}{name}"),
                format!("is not an ISO 8601 timestamp: {e}"),
            )
        })?
        .with_timezone(&Utc);
    Ok(Some(api_time(&t)))
}

/// DRF's `DateTimeField`: `isoformat()` (microseconds only when non-zero) with `Z` for UTC.
pub fn api_time(t: &DateTime<Utc>) -> String {
    let micros = t.nanosecond() / 1000 % 1_000_000;
    let whole = t.with_nanosecond(0).unwrap_or(*t);
    let base = whole.to_rfc3339_opts(SecondsFormat::Secs, true);
    if micros == 0 {
        return base;
    }
    let stem = base.trim_end_matches('Z');
    format!("{stem}.{micros:06}Z")
}

/// The row as authentik's `EventSerializer` renders it, written field by field.
fn row_to_event(raw_row: &str, at: &str) -> Result<Ingested<'static>, EventError> {
    let row: Row<'_> = serde_json::from_str(raw_row)
        .map_err(|e| broken(at.trim_end_matches('.'), format!("is not a row: {e}")))?;
    let uuid = string_column(row.event_uuid, "event_uuid", at, false)?.unwrap_or_default();
    let pk = Uuid::parse_str(&uuid)
        .map_err(|_| broken(format!("{at}event_uuid"), format!("{uuid:?} is not a UUID")))?;
    let user = json_column(row.user, "user", at)?;
    let action = string_column(row.action, "action", at, false)?.unwrap_or_default();
    let app = string_column(row.app, "app", at, false)?.unwrap_or_default();
    let context = json_column(row.context, "context", at)?;
    let client_ip = string_column(row.client_ip, "client_ip", at, true)?;
    let created = time_column(row.created, "created", at, false)?;
    let expires = time_column(row.expires, "expires", at, true)?;
    let brand = match row.brand {
        Some(b) => json_column(Some(b), "brand", at)?,
        None => json_column(row.tenant, "tenant", at)?,
    };
    let mut out = Vec::with_capacity(raw_row.len());
    let mut put = |key: &str, v: &dyn erased::Json| {
        out.push(if out.is_empty() { b'{' } else { b',' });
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        v.write(&mut out);
    };
    put("pk", &pk.hyphenated().to_string());
    put("user", &user);
    put("action", &action.as_ref());
    put("app", &app.as_ref());
    put("context", &context);
    put("client_ip", &client_ip.as_deref());
    put("created", &created.as_deref());
    put("expires", &expires.as_deref());
    put("brand", &brand);
    out.push(b'}');
    Ok(Ingested::Event(Cow::Owned(out)))
}

/// Serialising the output's values one after the other into one buffer.
mod erased {
    pub trait Json {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) {
            // Writing JSON into a Vec cannot fail for these types (strings, values).
            let _ = serde_json::to_writer(&mut *out, self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row() -> Value {
        json!({
            "event_uuid": "0B5F4A4E2B0C4A8E9D553F1F6F0F9A01",
            "user": "{\"pk\": 7, \"email\": \"jane@example.com\", \"username\": \"jane\"}",
            "action": "login", "app": "authentik.events.signals",
            "context": "{\"geo\": {\"city\": \"Berlin\"}, \"auth_method\": \"password\"}",
            "client_ip": "192.0.2.10", "created": "2024-09-13T14:05:42.17Z",
            "expires": "2025-09-13T14:05:42.170312Z", "expiring": true,
            "brand": "{\"pk\": \"fa0f\", \"app\": \"authentik_brands\"}"
        })
    }

    fn event_bytes(i: Ingested<'_>) -> Value {
        match i {
            Ingested::Event(b) => serde_json::from_slice(&b).expect("JSON"),
            Ingested::Skip(r) => panic!("skipped: {r}"),
        }
    }

    #[test]
    fn a_created_row_is_the_api_serialisation() {
        let env = json!({"before": null, "after": row(), "source": {"version": "2.7.0.Final"}, "op": "c", "ts_ms": 1});
        let text = match ingest(env.to_string().as_bytes(), true).expect("event") {
            Ingested::Event(b) => String::from_utf8(b.into_owned()).expect("utf8"),
            Ingested::Skip(r) => panic!("{r}"),
        };
        assert_eq!(
            text,
            r#"{"pk":"0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01","user":{"pk":7,"email":"jane@example.com","username":"jane"},"action":"login","app":"authentik.events.signals","context":{"geo":{"city":"Berlin"},"auth_method":"password"},"client_ip":"192.0.2.10","created":"2024-09-13T14:05:42.170000Z","expires":"2025-09-13T14:05:42.170312Z","brand":{"pk":"fa0f","app":"authentik_brands"}}"#
        );
    }

    #[test]
    fn shapes_and_skips() {
        let wrapped = json!({"schema": {"type": "struct"}, "payload": {"before": null, "after": row(), "op": "r", "source": {}}});
        assert_eq!(
            event_bytes(ingest(wrapped.to_string().as_bytes(), true).expect("ok"))["action"],
            "login"
        );
        let mut unwrapped = row();
        unwrapped["__op"] = json!("r");
        unwrapped["__lsn"] = json!(123);
        unwrapped["__deleted"] = json!("false");
        assert_eq!(
            event_bytes(ingest(unwrapped.to_string().as_bytes(), true).expect("ok"))["app"],
            "authentik.events.signals"
        );
        for (value, reason) in [
            (
                json!({"before": {}, "after": row(), "op": "u", "source": {}}),
                "update",
            ),
            (
                json!({"before": {"event_uuid": "x"}, "after": null, "op": "d", "source": {}}),
                "delete",
            ),
            (json!({"op": "t", "source": {}}), "truncate"),
            (
                json!({"op": "m", "source": {}, "message": {"prefix": "x"}}),
                "message",
            ),
            (json!({"schema": {}, "payload": null}), "tombstone"),
            (json!({"event_uuid": "x", "__deleted": "true"}), "delete"),
        ] {
            assert_eq!(
                ingest(value.to_string().as_bytes(), true),
                Ok(Ingested::Skip(reason)),
                "{value}"
            );
        }
    }

    #[test]
    fn auto_leaves_an_api_shaped_event_spelled_event_uuid_to_the_event_parser() {
        // authentik's own shape with the model's key name: context is an object, not jsonb text.
        let api = json!({"event_uuid": "e0000000-0000-4000-8000-000000000002", "user": {"pk": 7},
            "action": "login", "app": "a", "context": {}, "created": "2024-09-13T14:06:00Z"})
        .to_string();
        assert_eq!(
            ingest_auto(api.as_bytes()),
            Ok(Ingested::Event(Cow::Borrowed(api.as_bytes())))
        );
        // The same key with jsonb text is a row, converted.
        let row = row().to_string();
        match ingest_auto(row.as_bytes()) {
            Ok(Ingested::Event(Cow::Owned(b))) => {
                assert_eq!(
                    serde_json::from_slice::<Value>(&b).expect("json")["context"]["geo"]["city"],
                    "Berlin"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_tenant_column_becomes_brand() {
        let mut r = row();
        let o = r.as_object_mut().expect("object");
        let b = o.remove("brand").expect("brand");
        o.insert("tenant".into(), b);
        let ev = event_bytes(
            ingest(
                json!({"op": "c", "after": r, "source": {}})
                    .to_string()
                    .as_bytes(),
                true,
            )
            .expect("ok"),
        );
        assert_eq!(ev["brand"]["app"], "authentik_brands");
    }

    #[test]
    fn broken_records_name_the_field() {
        let mut bad_uuid = row();
        bad_uuid["event_uuid"] = json!("nope");
        let mut bad_json = row();
        bad_json["context"] = json!("{not json");
        let mut object_json = row();
        object_json["user"] = json!({"pk": 1});
        let mut bad_time = row();
        bad_time["created"] = json!(1726236342170312i64);
        for (value, field) in [
            (json!({"op": "c", "after": null, "source": {}}), "after"),
            (
                json!({"op": "c", "after": bad_uuid, "source": {}}),
                "after.event_uuid",
            ),
            (
                json!({"op": "r", "after": bad_json, "source": {}}),
                "after.context",
            ),
            (
                json!({"op": "c", "after": object_json, "source": {}}),
                "after.user",
            ),
            (
                json!({"schema": {}, "payload": {"op": "c", "after": bad_time, "source": {}}}),
                "payload.after.created",
            ),
            (json!({"op": "x", "source": {}}), "op"),
            (json!({"pk": "native"}), "op"),
        ] {
            match ingest(value.to_string().as_bytes(), true) {
                Err(EventError::Debezium { field: f, .. }) => assert_eq!(f, field, "{value}"),
                other => panic!("{value}: {other:?}"),
            }
        }
    }

    #[test]
    fn api_time_has_microseconds_only_when_non_zero() {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("ts")
                .with_timezone(&Utc)
        };
        assert_eq!(api_time(&t("2024-09-13T14:05:42Z")), "2024-09-13T14:05:42Z");
        assert_eq!(
            api_time(&t("2024-09-13T14:05:42.5Z")),
            "2024-09-13T14:05:42.500000Z"
        );
        assert_eq!(
            api_time(&t("2024-09-13T16:05:42.000001+02:00")),
            "2024-09-13T14:05:42.000001Z"
        );
    }
}
