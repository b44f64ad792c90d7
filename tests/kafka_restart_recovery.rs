//! Restart recovery: a second daemon rebuilds the policy set from the control topic and the
//! notification index from the notification topic; replayed events produce nothing new and
//! never reset `seen`; results are not emitted again.

mod helpers;

use helpers::kafka::{committed, count_by_key, latest_by_key, read, read_until, TestEnv};
use helpers::workload::{commands, event, expected};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn a_restarted_daemon_recovers_policies_and_notifications() {
    let env = TestEnv::new("restart", 2);
    let producer = env.producer();
    let cmds = commands();
    producer.send_all(&env.control, &cmds);
    producer.send_all(&env.events, (0..200).map(event));
    producer.flush();
    let first = expected(&cmds, (0..200).map(event));
    let mut d1 = env.start_daemon("d1");
    d1.wait_ready(Duration::from_secs(30));
    let notes = read(
        &env.brokers,
        &env.notifications,
        first.notifications.len(),
        Duration::from_secs(30),
    );
    assert_eq!(notes.len(), first.notifications.len());
    let seen_pk = notes[0].key.clone().expect("key");
    producer.send_json(&env.control, &json!({"id": "seen", "method": "PATCH", "path": format!("/events/notifications/{seen_pk}/"), "body": {"seen": true}}));
    producer.flush();
    read_until(&env.brokers, &env.results, Duration::from_secs(20), |r| {
        r.iter().any(|x| x.key.as_deref() == Some("seen"))
    });
    let status = d1.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    // The control group's committed offset is exactly the next command (12 commands so far).
    assert_eq!(
        committed(&env.brokers, &env.control_group, &env.control),
        [(0, cmds.len() as i64 + 1)]
            .into_iter()
            .collect::<HashMap<i32, i64>>()
    );

    let mut d2 = env.start_daemon("d2");
    d2.wait_ready(Duration::from_secs(30));
    assert_eq!(
        d2.metric("eventmatchd_policy_set_version"),
        Some(cmds.len() as f64),
        "policy set rebuilt"
    );
    assert_eq!(
        d2.metric("eventmatchd_policy_set_size{kind=\"bindings\"}"),
        Some(4.0)
    );
    assert_eq!(
        d2.metric("eventmatchd_notifications_held"),
        Some(first.notifications.len() as f64),
        "index rebuilt"
    );
    assert!(d2
        .metric("eventmatchd_catch_up_seconds{topic=\"notifications\"}")
        .is_some());

    // The index knows d1's notifications: a PATCH of one works on d2.
    let other_pk = notes[1].key.clone().expect("key");
    producer.send_json(&env.control, &json!({"id": "link", "method": "PATCH", "path": format!("/events/notifications/{other_pk}/"), "body": {"hyperlink": "https://ak/x"}}));
    // Replayed events (new offsets) and new ones.
    producer.send_all(&env.events, (0..250).map(event));
    producer.flush();
    let all = expected(&cmds, (0..250).map(event));
    let new_ones = all.notifications.len() - first.notifications.len();
    assert!(new_ones > 0);
    let want_records = first.notifications.len() + 1 + 1 + new_ones;
    let records = read(
        &env.brokers,
        &env.notifications,
        want_records,
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(500));
    let records_after = read(
        &env.brokers,
        &env.notifications,
        want_records + 1,
        Duration::from_secs(2),
    );
    assert_eq!(
        records_after.len(),
        want_records,
        "replayed events produced nothing new"
    );
    // Every notification record says how it was rendered (issue 12 target 5): d2 held d1's
    // records without their bodies, trusting the header, and rendered them again for the PATCH
    // exactly as d1 wrote them.
    for r in records.iter().filter(|r| r.value.is_some()) {
        let h = r.headers.get("eventmatchd-rendered").map(String::as_str);
        assert!(
            h.is_some_and(|h| h.starts_with("1:bc")),
            "rendered header on {:?}: {h:?}",
            r.key
        );
    }
    let latest = latest_by_key(&records);
    let before = notes[1].value.as_ref().expect("value");
    let after = latest[&other_pk].value.as_ref().expect("value");
    for field in ["body", "created", "event", "severity", "user", "rule"] {
        assert_eq!(before[field], after[field], "{field} after the restart");
    }
    assert_eq!(latest.len(), all.notifications.len());
    assert_eq!(
        latest[&seen_pk].value.as_ref().map(|v| v["seen"].clone()),
        Some(json!(true)),
        "seen not reset"
    );
    assert_eq!(
        latest[&other_pk]
            .value
            .as_ref()
            .map(|v| v["hyperlink"].clone()),
        Some(json!("https://ak/x"))
    );

    let results = read(
        &env.brokers,
        &env.results,
        cmds.len() + 2,
        Duration::from_secs(20),
    );
    let per_id = count_by_key(&results);
    assert_eq!(
        results.len(),
        cmds.len() + 2,
        "no result emitted twice across the restart: {per_id:?}"
    );
    assert!(per_id.values().all(|c| *c == 1));
    assert!(d2.terminate(Duration::from_secs(30)).success());
}
