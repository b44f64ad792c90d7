//! Issue 16 on the real broker: a daemon with the default `events.format = "auto"` reads
//! Debezium change events of `authentik_events_event` (schemas on), skips tombstones,
//! updates and deletes without dead-lettering them, dead-letters a broken record naming the
//! field, and a snapshot re-read plus the same events sent natively make nothing new and do
//! not reset `seen`.

mod helpers;

use helpers::kafka::{read_all, read_until, wait_events_committed, TestEnv};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn lines(name: &str) -> Vec<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cdc")
        .join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn change_events_on_the_broker() {
    let env = TestEnv::new("cdc", 1);
    let producer = env.producer();
    producer.send_all(
        &env.control,
        [
            json!({"id": "p", "method": "POST", "path": "/policies/event_matcher/", "body": {"pk": "a0000000-0000-4000-8000-000000000001", "name": "all"}}),
            json!({"id": "r", "method": "POST", "path": "/events/rules/", "body": {"pk": "b0000000-0000-4000-8000-000000000001", "name": "r", "destination_event_user": true}}),
            json!({"id": "b", "method": "POST", "path": "/policies/bindings/", "body": {"policy": "a0000000-0000-4000-8000-000000000001", "target": "b0000000-0000-4000-8000-000000000001", "order": 0}}),
        ],
    );
    producer.flush();
    let mut d = env.start_daemon("cdc");
    d.wait_ready(Duration::from_secs(60));
    read_until(&env.brokers, &env.results, Duration::from_secs(30), |r| {
        r.len() >= 3
    });

    // Two creates (schemas on), then what a CDC topic also carries: skipped, never dead letters.
    for l in lines("envelope_schemas.ndjson") {
        producer.send(&env.events, Some("k"), l.as_bytes());
    }
    let skipped = lines("skipped.ndjson");
    for l in &skipped {
        if l == "null" {
            producer.send_tombstone(&env.events, "k");
        } else {
            producer.send(&env.events, Some("k"), l.as_bytes());
        }
    }
    producer.send(&env.events, Some("k"), lines("broken.ndjson")[1].as_bytes());
    producer.flush();
    let notes = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(60),
        |r| r.len() >= 2,
    );
    assert_eq!(notes.len(), 2, "one notification per created event");
    let pk = notes[0].key.clone().expect("notification key");

    // Seen, then the table is snapshotted again and the events also arrive natively.
    producer.send_json(
        &env.control,
        &json!({"id": "seen", "method": "PATCH", "path": format!("/events/notifications/{pk}/"), "body": {"seen": true}}),
    );
    producer.flush();
    let results = read_until(&env.brokers, &env.results, Duration::from_secs(30), |r| {
        r.iter().any(|x| x.key.as_deref() == Some("seen"))
    });
    let seen = results
        .iter()
        .find(|x| x.key.as_deref() == Some("seen"))
        .expect("seen result");
    assert_eq!(
        seen.value.as_ref().map(|v| v["status"].clone()),
        Some(json!(200))
    );
    for l in lines("envelope_snapshot.ndjson")
        .iter()
        .chain(&lines("native.ndjson"))
    {
        producer.send(&env.events, Some("k"), l.as_bytes());
    }
    producer.flush();
    wait_events_committed(&env, Duration::from_secs(60))
        .expect("every record processed and committed");

    let notes = read_all(&env.brokers, &env.notifications);
    assert_eq!(
        notes.len(),
        3,
        "two created, one seen update; nothing from the re-reads: {notes:?}"
    );
    let last: &Value = notes
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(pk.as_str()))
        .and_then(|r| r.value.as_ref())
        .expect("the patched notification");
    assert_eq!(last["seen"], true, "seen is not reset");

    let dlq = read_all(&env.brokers, &env.dlq);
    assert_eq!(dlq.len(), 1, "only the broken record is a dead letter");
    let dead = dlq[0].value.as_ref().expect("dead letter");
    assert_eq!(dead["reason"], "invalid_debezium");
    assert!(dead["error"]
        .as_str()
        .unwrap_or_default()
        .contains("after.event_uuid"));
    for (reason, n) in [
        ("tombstone", 2.0),
        ("update", 2.0),
        ("delete", 2.0),
        ("truncate", 1.0),
        ("message", 1.0),
    ] {
        let sample = format!("eventmatchd_events_skipped_total{{reason=\"{reason}\"}}");
        assert_eq!(
            d.wait_metric(&sample, n, Duration::from_secs(10)),
            n,
            "{sample}"
        );
    }
    assert_eq!(
        d.metric("eventmatchd_events_invalid_total{reason=\"invalid_debezium\"}"),
        Some(1.0)
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
}
