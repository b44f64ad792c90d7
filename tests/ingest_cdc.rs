//! Events fed by change data capture (issue 16): Debezium's PostgreSQL connector on
//! authentik's `authentik_events_event`, in every documented shape (`tests/data/cdc/`, written
//! from Debezium's documentation and authentik's model), through `replay`. The same events
//! arrive natively in `native.ndjson` (authentik's API serialisation): every shape must give
//! byte-identical notification and execution records; updates, deletes, truncates, messages
//! and tombstones are skipped and never dead-lettered; broken records are dead-lettered with a
//! reason naming the field and the format.

use eventmatchd::catalog::Catalog;
use eventmatchd::engine::Engine;
use eventmatchd::ingest::Format;
use eventmatchd::replay::{run, ReplayStats};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cdc")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A policy matching every event, logged, bound to a rule notifying the event's user and a
/// group: each event makes two notifications and one execution record.
fn commands() -> String {
    [
        json!({"method": "POST", "path": "/policies/event_matcher/", "body": {"pk": "a0000000-0000-4000-8000-000000000001", "name": "all", "execution_logging": true}}),
        json!({"method": "POST", "path": "/events/rules/", "body": {"pk": "b0000000-0000-4000-8000-000000000001", "name": "r", "destination_event_user": true, "destination_group": "c0000000-0000-4000-8000-000000000001"}}),
        json!({"method": "POST", "path": "/policies/bindings/", "body": {"policy": "a0000000-0000-4000-8000-000000000001", "target": "b0000000-0000-4000-8000-000000000001", "order": 0}}),
    ]
    .iter()
    .map(|c| format!("{c}\n"))
    .collect()
}

/// Replays commands then `events`; the output lines by topic, and the stats.
fn replay(format: Format, events: &str) -> (Vec<(String, String)>, ReplayStats, Vec<String>) {
    let engine = Engine::new(Catalog::default(), 1000).with_format(format);
    let input = format!("{}{events}", commands());
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let stats = run(&engine, input.as_bytes(), &mut out, |w| warnings.push(w)).expect("replay");
    let lines = String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("output line");
            (
                v["topic"].as_str().expect("topic").to_string(),
                l.to_string(),
            )
        })
        .collect();
    (lines, stats, warnings)
}

fn on(lines: &[(String, String)], topic: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, l)| l.clone())
        .collect()
}

#[test]
fn every_shape_gives_the_native_records_byte_for_byte() {
    let (native, stats, _) = replay(Format::Auto, &fixture("native.ndjson"));
    assert_eq!(stats.invalid, 0);
    let notes = on(&native, "notifications");
    let execs = on(&native, "executions");
    assert_eq!(
        (notes.len(), execs.len()),
        (4, 2),
        "two events, two notifications each"
    );
    for shape in [
        "envelope.ndjson",
        "envelope_snapshot.ndjson",
        "envelope_schemas.ndjson",
        "unwrapped.ndjson",
        "unwrapped_fields.ndjson",
        "unwrapped_schemas.ndjson",
        "tenant.ndjson",
    ] {
        for format in [Format::Auto, Format::Debezium] {
            let (out, stats, warnings) = replay(format, &fixture(shape));
            assert!(warnings.is_empty(), "{shape}: {warnings:?}");
            assert_eq!((stats.invalid, stats.skipped), (0, 0), "{shape}");
            assert_eq!(on(&out, "notifications"), notes, "{shape} ({format:?})");
            assert_eq!(on(&out, "executions"), execs, "{shape} ({format:?})");
            assert!(on(&out, "dlq").is_empty(), "{shape}");
        }
    }
}

#[test]
fn updates_deletes_truncates_messages_and_tombstones_are_skipped() {
    let text = fixture("skipped.ndjson");
    let (out, stats, warnings) = replay(Format::Auto, &text);
    assert_eq!(
        stats.skipped,
        text.lines().count() as u64,
        "every line skipped"
    );
    assert_eq!(stats.invalid, 0);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        out.iter().all(|(t, _)| t == "results"),
        "only the commands' results: {out:?}"
    );
}

#[test]
fn broken_records_are_dead_lettered_naming_field_and_format() {
    let (out, stats, _) = replay(Format::Auto, &fixture("broken.ndjson"));
    assert_eq!(stats.invalid, 5);
    let dlq: Vec<Value> = on(&out, "dlq")
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["value"].clone())
        .collect();
    let got: Vec<(String, String)> = dlq
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap_or_default().to_string(),
                d["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want = [
        ("invalid_debezium", "`after`"),
        ("invalid_debezium", "`after.event_uuid`"),
        ("invalid_debezium", "`after.context`"),
        ("invalid_debezium", "`payload.after.created`"),
        ("authentik_log_line", "no event uuid"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((reason, error), (r, fragment)) in got.iter().zip(want) {
        assert_eq!(reason, r, "{error}");
        assert!(error.contains(fragment), "{error} names {fragment}");
        assert!(
            error.contains("Debezium") || r == "authentik_log_line",
            "{error} names the format"
        );
    }
    // The dead letter carries the record as it arrived.
    assert!(dlq[1]["payload"]
        .as_str()
        .unwrap_or_default()
        .contains("not-a-uuid"));
}

#[test]
fn a_snapshot_reread_or_the_same_event_twice_makes_nothing_new() {
    let twice = format!(
        "{}{}{}",
        fixture("native.ndjson"),
        fixture("envelope_snapshot.ndjson"),
        fixture("unwrapped.ndjson")
    );
    let (out, _, _) = replay(Format::Auto, &twice);
    assert_eq!(
        on(&out, "notifications").len(),
        4,
        "held notifications are not produced again"
    );
}

#[test]
fn explicit_formats_refuse_the_other_shape() {
    let (out, stats, _) = replay(Format::Debezium, &fixture("native.ndjson"));
    assert_eq!(stats.invalid, 2);
    assert!(on(&out, "dlq")
        .iter()
        .all(|l| l.contains("invalid_debezium")));
    let (_, stats, _) = replay(Format::Authentik, &fixture("envelope.ndjson"));
    assert_eq!(stats.invalid, 2, "a change event is not an authentik event");
    // A tombstone line under `authentik` is a record to look at, as before formats existed.
    let (_, stats, _) = replay(Format::Authentik, "null\n");
    assert_eq!((stats.invalid, stats.skipped), (1, 0));
}

mod same_event_any_shape {
    use super::*;
    use eventmatchd::akql::pg::jsonb_out;
    use proptest::prelude::*;

    /// PostgreSQL's jsonb text of a value (what Debezium sends for a json/jsonb column).
    fn jsonb(v: &Value) -> String {
        let mut s = String::new();
        jsonb_out(v, &mut s);
        s
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-zA-Zé ü\"\\\\/\n]{0,8}".prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            (-1000i32..1000).prop_map(|n| json!(n as f64 / 8.0)),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    fn object() -> impl Strategy<Value = Value> {
        leaf()
            .prop_recursive(3, 24, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
            .prop_map(|v| match v {
                Value::Object(_) => v,
                other => json!({"value": other}),
            })
    }

    prop_compose! {
        fn row()(
            n in 0u64..1_000_000,
            user in object(),
            context in object(),
            brand in prop::option::of(object()),
            ip in prop::option::of(Just("192.0.2.10")),
            micros in prop_oneof![Just(0u32), 0u32..1_000_000, Just(170_000u32)],
        ) -> Value {
            let mut user = user;
            user["pk"] = json!(n % 50 + 1);
            json!({
                "event_uuid": format!("0b5f4a4e-2b0c-4a8e-9d55-{n:012x}"),
                "user": user, "action": "login", "app": "authentik.events.signals",
                "context": context, "client_ip": ip,
                "created": format!("2024-09-13T14:05:42.{micros:06}Z"),
                "expires": "2099-01-01T00:00:00Z", "expiring": true,
                "brand": brand,
            })
        }
    }

    /// The row as authentik's API serialises it: jsonb read back (its key order), DRF times.
    fn native(r: &Value) -> Value {
        let back = |v: &Value| -> Value {
            if v.is_null() {
                Value::Null
            } else {
                serde_json::from_str(&jsonb(v)).expect("jsonb text")
            }
        };
        // Python's `isoformat()`: six fraction digits when the microseconds are not zero.
        let t = |s: &str| {
            let (stem, frac) = s
                .trim_end_matches('Z')
                .split_once('.')
                .unwrap_or((s.trim_end_matches('Z'), ""));
            let micros: u32 = format!("{frac:0<6}").parse().unwrap_or(0);
            if micros == 0 {
                format!("{stem}Z")
            } else {
                format!("{stem}.{micros:06}Z")
            }
        };
        json!({"pk": r["event_uuid"], "user": back(&r["user"]), "action": r["action"], "app": r["app"],
               "context": back(&r["context"]), "client_ip": r["client_ip"],
               "created": t(r["created"].as_str().unwrap_or_default()), "expires": t("2099-01-01T00:00:00Z"),
               "brand": back(&r["brand"])})
    }

    /// The row as Debezium sends it: jsonb columns as their text; older Debezium (< 2.2)
    /// trims the fraction's trailing zeros.
    fn db(r: &Value, trim: bool) -> Value {
        let mut out = r.clone();
        for k in ["user", "context", "brand"] {
            if !r[k].is_null() {
                out[k] = Value::String(jsonb(&r[k]));
            }
        }
        if trim {
            let c = r["created"]
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('Z')
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string();
            out["created"] = json!(format!("{c}Z"));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]
        #[test]
        fn same_event_in_any_shape_gives_byte_identical_records(r in row(), trim in any::<bool>()) {
            let lines = |v: Value| format!("{v}\n");
            let (want, _, _) = replay(Format::Auto, &lines(native(&r)));
            let row = db(&r, trim);
            let shapes = [
                json!({"before": null, "after": row, "source": {"version": "2.7.3.Final"}, "op": "c", "ts_ms": 1}),
                json!({"schema": {"type": "struct"}, "payload": {"before": null, "after": row, "source": {}, "op": "r"}}),
                row.clone(),
                json!({"schema": {"type": "struct"}, "payload": row}),
            ];
            prop_assert_eq!(on(&want, "notifications").len(), 2);
            for s in shapes {
                let (got, stats, _) = replay(Format::Auto, &lines(s.clone()));
                prop_assert_eq!(stats.invalid, 0, "{}", s);
                prop_assert_eq!(on(&got, "notifications"), on(&want, "notifications"), "{}", s);
                prop_assert_eq!(on(&got, "executions"), on(&want, "executions"), "{}", s);
            }
        }
    }
}
