//! `events.format = "auto"`: whether a record may be something other than a native event,
//! decided without parsing it.
//!
//! Every Debezium shape has a top-level `"payload"`, `"op"` or `"event_uuid"` key, and
//! authentik's log line an `"event"` key; a record in which none of these strings occurs
//! anywhere is native (most native events), and only the others get their top level parsed
//! ([`super::debezium::ingest_auto`]).

/// The quoted keys that make a record worth a look. Finders are built once: a search for a
/// rare two-byte pair runs at memory speed, where stopping at every `"` would not.
static KEYS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 4]> =
    std::sync::LazyLock::new(|| {
        [
            b"\"payload\"".as_slice(),
            b"\"op\"",
            b"\"event_uuid\"",
            b"\"event\"",
        ]
        .map(memchr::memmem::Finder::new)
    });

pub fn maybe_not_native(bytes: &[u8]) -> bool {
    KEYS.iter().any(|k| k.find(bytes).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventError;
    use crate::ingest::{ingest, Format, Ingested};

    #[test]
    fn native_records_are_recognised_without_parsing() {
        assert!(!maybe_not_native(
            br#"{"pk": "x", "action": "login", "context": {"opx": 1}}"#
        ));
        assert!(maybe_not_native(br#"{"pk": "x", "context": {"op": 1}}"#));
        assert!(maybe_not_native(br#"{"before": null, "op": "c"}"#));
    }

    fn shape(bytes: &[u8]) -> &'static str {
        match ingest(Format::Auto, Some(bytes)) {
            Ok(Ingested::Event(b)) if b.as_ref() == bytes => "native",
            Ok(Ingested::Event(_)) => "converted",
            Ok(Ingested::Skip(_)) => "skipped",
            Err(EventError::LogLine) => "log line",
            Err(_) => "invalid",
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(shape(br#"{"pk": "x", "action": "login"}"#), "native");
        assert_eq!(
            shape(br#"{"pk": "x", "context": {"op": 1, "event_uuid": 2}}"#),
            "native",
            "keys inside the context do not count"
        );
        assert_eq!(
            shape(br#"{"before": null, "after": null, "op": "d", "source": {}}"#),
            "skipped"
        );
        assert_eq!(shape(br#"{"schema": {}, "payload": null}"#), "skipped");
        assert_eq!(
            shape(br#"{"event_uuid": "x", "action": "login"}"#),
            "invalid"
        );
        assert_eq!(
            shape(br#"{"event": "Created Event", "action": "login", "level": "info"}"#),
            "log line"
        );
        assert_eq!(
            shape(b"not json \"op\""),
            "native",
            "the event parser says why"
        );
    }
}
