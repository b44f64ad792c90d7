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
use serde_json::{Map, Value};
use std::borrow::Cow;
use uuid::Uuid;

fn broken(field: impl Into<String>, detail: impl Into<String>) -> EventError {
    EventError::Debezium {
        field: field.into(),
        detail: detail.into(),
    }
}

/// One record of a Debezium topic. `strict`: the format was set explicitly, so a record of no
/// Debezium shape is refused as one (with `auto` it never gets here).
pub fn ingest(bytes: &[u8], strict: bool) -> Result<Ingested<'static>, EventError> {
    let text = std::str::from_utf8(bytes).map_err(|_| EventError::NotUtf8)?;
    let mut v: Value =
        serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;
    let mut prefix = "";
    // `schemas.enable=true`: the value is under `payload` (null for a tombstone).
    if let Value::Object(o) = &mut v {
        if o.contains_key("schema") && o.contains_key("payload") {
            v = o.remove("payload").unwrap_or(Value::Null);
            prefix = "payload.";
            if v.is_null() {
                return Ok(Ingested::Skip("tombstone"));
            }
        }
    }
    let Value::Object(mut o) = v else {
        return Err(broken(format!("{prefix}(value)"), "is not an object"));
    };
    if let Some(op) = o.get("op") {
        let op = op.as_str().unwrap_or_default().to_string();
        let skip = match op.as_str() {
            "c" | "r" => None,
            "u" => Some("update"),
            "d" => Some("delete"),
            "t" => Some("truncate"),
            "m" => Some("message"),
            _ => {
                return Err(broken(
                    format!("{prefix}op"),
                    format!("is {:?}, not one of c, r, u, d, t, m", o["op"]),
                ))
            }
        };
        if let Some(reason) = skip {
            return Ok(Ingested::Skip(reason));
        }
        let field = format!("{prefix}after");
        return match o.remove("after") {
            Some(Value::Object(row)) => row_to_event(&row, &format!("{field}.")),
            _ => Err(broken(field, format!("is not a row, for op {op:?}"))),
        };
    }
    if o.contains_key("event_uuid") {
        // An unwrapped row (`ExtractNewRecordState`), maybe with added fields.
        let deleted = matches!(o.get("__deleted"), Some(Value::String(s)) if s == "true")
            || matches!(o.get("__deleted"), Some(Value::Bool(true)));
        if deleted {
            return Ok(Ingested::Skip("delete"));
        }
        match o.get("__op").and_then(Value::as_str) {
            Some("u") => return Ok(Ingested::Skip("update")),
            Some("d") => return Ok(Ingested::Skip("delete")),
            Some("t") => return Ok(Ingested::Skip("truncate")),
            _ => {}
        }
        o.retain(|k, _| !k.starts_with("__"));
        return row_to_event(&o, prefix);
    }
    if strict {
        return Err(broken(
            format!("{prefix}op"),
            "is missing: not a Debezium change event or an authentik_events_event row",
        ));
    }
    Err(broken(format!("{prefix}op"), "is missing"))
}

/// A json/jsonb column: the JSON text Debezium sends as a string, parsed (key order kept).
fn json_column(row: &Map<String, Value>, name: &str, at: &str) -> Result<Value, EventError> {
    match row.get(name) {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| broken(format!("{at}{name}"), format!("is not JSON text: {e}"))),
        Some(_) => Err(broken(
            format!("{at}{name}"),
            "is not a string (Debezium sends json/jsonb as io.debezium.data.Json text)",
        )),
    }
}

fn string_column<'a>(
    row: &'a Map<String, Value>,
    name: &str,
    at: &str,
    nullable: bool,
) -> Result<Option<&'a str>, EventError> {
    match row.get(name) {
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) if nullable => Ok(None),
        None | Some(Value::Null) => Err(broken(format!("{at}{name}"), "is missing")),
        Some(_) => Err(broken(format!("{at}{name}"), "is not a string")),
    }
}

/// A `timestamptz` column (`io.debezium.time.ZonedTimestamp`) as authentik's API renders it.
fn time_column(
    row: &Map<String, Value>,
    name: &str,
    at: &str,
    nullable: bool,
) -> Result<Value, EventError> {
    let Some(s) = string_column(row, name, at, nullable)? else {
        return Ok(Value::Null);
    };
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| {
            broken(
                format!("{at}{name}"),
                format!("is not an ISO 8601 timestamp: {e}"),
            )
        })?
        .with_timezone(&Utc);
    Ok(Value::String(api_time(&t)))
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

/// The row as authentik's `EventSerializer` renders it.
fn row_to_event(row: &Map<String, Value>, at: &str) -> Result<Ingested<'static>, EventError> {
    let uuid = string_column(row, "event_uuid", at, false)?.unwrap_or_default();
    let pk = Uuid::parse_str(uuid)
        .map_err(|_| broken(format!("{at}event_uuid"), format!("{uuid:?} is not a UUID")))?;
    let brand_column = if row.contains_key("brand") {
        "brand"
    } else {
        "tenant"
    };
    let mut ev = Map::new();
    ev.insert("pk".into(), Value::String(pk.hyphenated().to_string()));
    ev.insert("user".into(), json_column(row, "user", at)?);
    ev.insert(
        "action".into(),
        Value::String(
            string_column(row, "action", at, false)?
                .unwrap_or_default()
                .into(),
        ),
    );
    ev.insert(
        "app".into(),
        Value::String(
            string_column(row, "app", at, false)?
                .unwrap_or_default()
                .into(),
        ),
    );
    ev.insert("context".into(), json_column(row, "context", at)?);
    ev.insert(
        "client_ip".into(),
        string_column(row, "client_ip", at, true)?.map_or(Value::Null, |s| Value::String(s.into())),
    );
    ev.insert("created".into(), time_column(row, "created", at, false)?);
    ev.insert("expires".into(), time_column(row, "expires", at, true)?);
    ev.insert("brand".into(), json_column(row, brand_column, at)?);
    let bytes = serde_json::to_vec(&Value::Object(ev))
        .map_err(|e| broken(at.trim_end_matches('.'), e.to_string()))?;
    Ok(Ingested::Event(Cow::Owned(bytes)))
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
