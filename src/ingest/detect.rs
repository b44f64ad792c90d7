//! Which shape a record has, for `events.format = "auto"`.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// authentik's API serialisation (or anything else: the event parser says what is wrong).
    Native,
    /// A Debezium change event (with or without the schema wrapper) or an unwrapped row.
    Debezium,
    /// authentik's `"Created Event"` log line, which has no event uuid.
    LogLine,
}

/// The top-level keys that tell the shapes apart (present, whatever the value: a schema
/// wrapper's `payload` is null for a tombstone).
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(default, deserialize_with = "present")]
    pk: bool,
    #[serde(default, deserialize_with = "present")]
    schema: bool,
    #[serde(default, deserialize_with = "present")]
    payload: bool,
    #[serde(default, deserialize_with = "present")]
    op: bool,
    #[serde(default, deserialize_with = "present")]
    source: bool,
    #[serde(default, deserialize_with = "present")]
    after: bool,
    #[serde(default, deserialize_with = "present")]
    before: bool,
    #[serde(default, deserialize_with = "present")]
    event_uuid: bool,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(true)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn shape(bytes: &[u8]) -> Shape {
    // Every Debezium shape has one of these keys and the log line has `"event"`; a native
    // record without any of the strings anywhere is native without a second parse.
    let keys: [&[u8]; 4] = [b"\"payload\"", b"\"op\"", b"\"event_uuid\"", b"\"event\""];
    if !keys.iter().any(|k| contains(bytes, k)) {
        return Shape::Native;
    }
    let Ok(top) = serde_json::from_slice::<Top<'_>>(bytes) else {
        // Not an object (or not JSON): the event parser gives the precise reason.
        return Shape::Native;
    };
    if top.pk {
        return Shape::Native;
    }
    if (top.schema && top.payload)
        || (top.op && (top.source || top.after || top.before))
        || top.event_uuid
    {
        return Shape::Debezium;
    }
    if top.event.is_some_and(|e| e.get() == "\"Created Event\"") {
        return Shape::LogLine;
    }
    Shape::Native
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(shape(br#"{"pk": "x", "action": "login"}"#), Shape::Native);
        assert_eq!(
            shape(br#"{"pk": "x", "context": {"op": 1, "event_uuid": 2}}"#),
            Shape::Native,
            "keys inside the context do not count"
        );
        assert_eq!(
            shape(br#"{"before": null, "after": {}, "op": "c", "source": {}}"#),
            Shape::Debezium
        );
        assert_eq!(
            shape(br#"{"schema": {}, "payload": null}"#),
            Shape::Debezium
        );
        assert_eq!(
            shape(br#"{"event_uuid": "x", "action": "login"}"#),
            Shape::Debezium
        );
        assert_eq!(
            shape(br#"{"event": "Created Event", "action": "login", "level": "info"}"#),
            Shape::LogLine
        );
        assert_eq!(shape(b"not json \"op\""), Shape::Native);
    }
}
