//! Issue 9 item 1: no record can wedge the daemon. An input whose dead letter, or whose
//! output, is larger than a record may be goes to the dead-letter topic in a compact form;
//! a control command whose answer cannot be written gets a 4xx result; everything after them
//! is processed and committed, and SIGTERM exits within the drain deadline.
//!
//! Before the fix: the 1.2 MB dead letter of the second record was retried forever
//! (`MSG_SIZE_TOO_LARGE`), nothing after it was processed or committed, and SIGTERM hung.

mod helpers;

use helpers::kafka::{read, read_until, wait_events_committed, TestEnv};
use helpers::workload::commands;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn event(pk: &str, action: &str, context: Value) -> Value {
    json!({"pk": pk, "user": {"pk": 7, "username": "jane"}, "action": action,
           "app": "authentik.events.signals", "context": context, "client_ip": "10.0.0.9",
           "created": "2024-09-13T14:05:42.170Z", "expires": "2099-01-01T00:00:00Z"})
}

#[test]
fn oversized_dead_letters_and_outputs_never_wedge() {
    let env = TestEnv::new("oversized", 1);
    let producer = env.producer();
    producer.send_all(&env.control, commands());
    // A rule on failed logins for the event's user (the workload's c1 policy) is not enough to
    // know the output: bind our own, on `login_failed`, to a user rule.
    producer.send_all(
        &env.control,
        [
            json!({"id": "r", "method": "POST", "path": "/events/rules/", "body": {"pk": "b1000000-0000-4000-8000-000000000001", "name": "big", "destination_event_user": true}}),
            json!({"id": "b", "method": "POST", "path": "/policies/bindings/", "body": {"policy": "a0000000-0000-4000-8000-000000000001", "target": "b1000000-0000-4000-8000-000000000001", "order": 9}}),
        ],
    );
    producer.send(&env.events, Some("k1"), b"not json 1");
    // 200,000 U+0001: a 200 kB record whose dead letter escapes every byte to \u0001 (1.2 MB).
    producer.send(&env.events, Some("k2"), &vec![1u8; 200_000]);
    producer.send(&env.events, Some("k3"), b"not json 3");
    // A valid event whose notification (the repr of its ~600 kB context, plus the event
    // embedded) is over 1 MB.
    let big = "x".repeat(600_000);
    producer.send_json(
        &env.events,
        &event(
            "e1000000-0000-4000-8000-000000000001",
            "login_failed",
            json!({"blob": big}),
        ),
    );
    // And a normal one after all of them.
    producer.send_json(
        &env.events,
        &event(
            "e1000000-0000-4000-8000-000000000002",
            "login_failed",
            json!({"n": 1}),
        ),
    );
    producer.flush();

    let mut daemon = env.start_daemon("d1");
    daemon.wait_ready(Duration::from_secs(30));

    let dlq = read(&env.brokers, &env.dlq, 4, Duration::from_secs(30));
    assert_eq!(
        dlq.len(),
        4,
        "three unparsable records and one oversized output"
    );
    let by_key = |k: &str| {
        dlq.iter()
            .find(|r| r.key.as_deref() == Some(k))
            .and_then(|r| r.value.clone())
            .unwrap_or_else(|| panic!("dead letter for {k}: {dlq:?}"))
    };
    assert_eq!(by_key("k1")["payload"], "not json 1");
    assert_eq!(by_key("k3")["payload"], "not json 3");
    let k2 = by_key("k2");
    assert_eq!(k2["reason"], "not_json");
    assert_eq!(k2["payload_size"], 200_000);
    assert_eq!(k2["truncated"], true);
    assert_eq!(k2["source"]["offset"], 1);
    let big_dl = dlq
        .iter()
        .filter_map(|r| r.value.clone())
        .find(|v| v["reason"] == "output_too_large")
        .expect("the oversized output's dead letter");
    assert_eq!(big_dl["source"]["offset"], 3);
    assert!(big_dl["payload_size"].as_u64().expect("size") > 600_000);
    for r in &dlq {
        assert!(r.raw.as_ref().expect("value").len() < 1_000_000);
    }

    let notes = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(30),
        |recs| {
            recs.iter().any(|r| {
                r.value
                    .as_ref()
                    .is_some_and(|v| v["event"]["pk"] == "e1000000-0000-4000-8000-000000000002")
            })
        },
    );
    assert!(
        notes.iter().all(|r| r
            .value
            .as_ref()
            .is_some_and(|v| { v["event"]["pk"] != "e1000000-0000-4000-8000-000000000001" })),
        "the oversized notification was not written"
    );
    if let Err(e) = wait_events_committed(&env, Duration::from_secs(20)) {
        panic!("committed offsets reach the end: {e}\n{}", daemon.logs());
    }
    assert_eq!(
        daemon.metric("eventmatchd_events_invalid_total{reason=\"output_too_large\"}"),
        Some(1.0)
    );

    // Control: a hyperlink over authentik's 4096 characters is a 400; a label that fits in a
    // command record but makes the notification record (and its result) too large is a 413;
    // the command after them is answered.
    let note_pk = notes
        .iter()
        .find_map(|r| r.key.clone())
        .expect("a notification pk");
    let path = format!("/events/notifications/{note_pk}/");
    let huge = "h".repeat(990_000);
    let label = "l".repeat(998_500);
    producer.send_all(
        &env.control,
        [
            json!({"id": "big-link", "method": "PATCH", "path": path, "body": {"hyperlink": huge}}),
            json!({"id": "big-label", "method": "PATCH", "path": path, "body": {"hyperlink_label": label}}),
            json!({"id": "after", "method": "PATCH", "path": path, "body": {"seen": true}}),
        ],
    );
    let results = read_until(
        &env.brokers,
        &env.results,
        Duration::from_secs(30),
        |recs| recs.iter().any(|r| r.key.as_deref() == Some("after")),
    );
    let status = |id: &str| {
        results
            .iter()
            .find(|r| r.key.as_deref() == Some(id))
            .and_then(|r| r.value.as_ref())
            .map(|v| v["status"].as_u64().expect("status"))
    };
    assert_eq!(status("big-link"), Some(400));
    assert_eq!(status("big-label"), Some(413));
    assert_eq!(status("after"), Some(200));
    let after = results
        .iter()
        .find(|r| r.key.as_deref() == Some("after"))
        .and_then(|r| r.value.clone())
        .expect("after");
    assert_eq!(
        after["body"]["hyperlink_label"],
        Value::Null,
        "the refused label was not kept"
    );

    let t = Instant::now();
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    assert!(
        t.elapsed() < Duration::from_secs(25),
        "SIGTERM within the drain deadline"
    );
}

/// The same poison records under two daemons with a short `max.poll.interval.ms`: neither
/// wedges (before the fix, the partition moved after the interval and the next instance
/// wedged on the same record).
#[test]
fn two_daemons_with_a_short_poll_interval_never_wedge() {
    let env = TestEnv::new("oversized2", 2);
    let producer = env.producer();
    producer.send_all(&env.control, commands());
    for p in 0..2 {
        producer.send(&env.events, Some(&format!("p{p}-k1")), b"not json 1");
        producer.send(&env.events, Some(&format!("p{p}-k2")), &vec![1u8; 200_000]);
        producer.send(&env.events, Some(&format!("p{p}-k3")), b"not json 3");
    }
    producer.flush();
    let opts = [
        (
            "EVENTMATCHD__KAFKA__PROPERTIES__SESSION__TIMEOUT__MS",
            "6000",
        ),
        (
            "EVENTMATCHD__KAFKA__PROPERTIES__HEARTBEAT__INTERVAL__MS",
            "1000",
        ),
        (
            "EVENTMATCHD__KAFKA__PROPERTIES__MAX__POLL__INTERVAL__MS",
            "7000",
        ),
    ];
    let mut a = helpers::kafka::Daemon::start(&env, "a", &opts);
    let mut b = helpers::kafka::Daemon::start(&env, "b", &opts);
    a.wait_ready(Duration::from_secs(30));
    b.wait_ready(Duration::from_secs(30));
    let dlq = read(&env.brokers, &env.dlq, 6, Duration::from_secs(40));
    assert!(
        dlq.len() >= 6,
        "every poison record dead-lettered: {}",
        dlq.len()
    );
    if let Err(e) = wait_events_committed(&env, Duration::from_secs(30)) {
        panic!("committed offsets reach the end: {e}");
    }
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
}
