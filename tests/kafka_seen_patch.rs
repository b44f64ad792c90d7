//! Seen-flag updates through the control topic: the updated record on the notification topic
//! (same key, full state), once; mark_all_seen; DELETE as a tombstone.

mod helpers;

use helpers::kafka::{latest_by_key, read, read_until, TestEnv};
use helpers::workload::{commands, event, expected};
use serde_json::json;
use std::time::Duration;

#[test]
fn seen_patch_emits_the_updated_record_once() {
    let env = TestEnv::new("seen", 2);
    let producer = env.producer();
    let cmds = commands();
    producer.send_all(&env.control, &cmds);
    // Event 4 is a failed login of user 5: notifications to user 5 and to the group.
    producer.send_json(&env.events, &event(4));
    producer.send_json(&env.events, &event(12));
    producer.flush();
    let mut daemon = env.start_daemon("d1");
    daemon.wait_ready(Duration::from_secs(30));

    let initial = expected(&cmds, [event(4), event(12)].into_iter())
        .notifications
        .len();
    assert_eq!(
        initial, 5,
        "user 5 twice and the group; user 13 and the group"
    );
    let first = read(
        &env.brokers,
        &env.notifications,
        initial,
        Duration::from_secs(30),
    );
    assert_eq!(first.len(), initial);
    let user5 = first
        .iter()
        .find(|r| {
            r.value
                .as_ref()
                .is_some_and(|v| v["user"]["pk"] == 5 && v["event"]["pk"] == event(4)["pk"])
        })
        .expect("user 5's notification")
        .clone();
    let pk = user5.key.clone().expect("key");
    let before = first.len();

    producer.send_json(&env.control, &json!({"id": "seen-1", "method": "PATCH", "path": format!("/events/notifications/{pk}/"), "body": {"seen": true}}));
    producer.flush();
    let results = read_until(&env.brokers, &env.results, Duration::from_secs(20), |r| {
        r.iter().any(|x| x.key.as_deref() == Some("seen-1"))
    });
    let result = results
        .iter()
        .find(|x| x.key.as_deref() == Some("seen-1"))
        .expect("result")
        .value
        .clone()
        .expect("json");
    assert_eq!(result["status"], 200);
    assert_eq!(result["body"]["seen"], true);

    let all = read(
        &env.brokers,
        &env.notifications,
        before + 1,
        Duration::from_secs(20),
    );
    assert_eq!(all.len(), before + 1, "exactly one new record");
    let update = all
        .iter()
        .find(|r| r.key.as_deref() == Some(pk.as_str()) && r.offset > user5.offset)
        .expect("update under the same key");
    let mut expected = user5.value.clone().expect("json");
    expected["seen"] = json!(true);
    // A state made by a command carries its control offset + 1 as version.
    expected["version"] = update.value.as_ref().expect("json")["version"].clone();
    assert!(expected["version"].as_u64().is_some_and(|v| v > 0));
    assert_eq!(
        update.value.as_ref(),
        Some(&expected),
        "full new state, only seen changed"
    );
    assert_eq!(
        update
            .headers
            .get("eventmatchd-control-offset")
            .map(String::as_str),
        Some(cmds.len().to_string().as_str())
    );

    // Event 12 is a failed login of user 13: mark_all_seen changes that one notification.
    producer.send_json(&env.control, &json!({"id": "all-13", "method": "POST", "path": "/events/notifications/mark_all_seen/", "body": {"user": 13}}));
    producer.send_json(
        &env.control,
        &json!({"id": "del", "method": "DELETE", "path": format!("/events/notifications/{pk}/")}),
    );
    producer.send_json(&env.control, &json!({"id": "missing", "method": "PATCH", "path": "/events/notifications/00000000-0000-4000-8000-000000000000/", "body": {"seen": true}}));
    producer.flush();
    let results = read_until(&env.brokers, &env.results, Duration::from_secs(20), |r| {
        r.iter().any(|x| x.key.as_deref() == Some("missing"))
    });
    let status = |id: &str| {
        results
            .iter()
            .find(|x| x.key.as_deref() == Some(id))
            .and_then(|x| x.value.clone())
            .map(|v| v["status"].clone())
    };
    assert_eq!(status("all-13"), Some(json!(204)));
    assert_eq!(status("del"), Some(json!(204)));
    assert_eq!(status("missing"), Some(json!(404)));

    let all = read(
        &env.brokers,
        &env.notifications,
        before + 3,
        Duration::from_secs(20),
    );
    assert_eq!(
        all.len(),
        before + 3,
        "one mark_all_seen update and one tombstone"
    );
    let latest = latest_by_key(&all);
    assert!(
        latest[&pk].raw.is_none(),
        "DELETE leaves a tombstone as the latest record"
    );
    let user13: Vec<_> = latest
        .values()
        .filter(|r| r.value.as_ref().is_some_and(|v| v["user"]["pk"] == 13))
        .collect();
    assert_eq!(user13.len(), 1);
    assert_eq!(
        user13[0].value.as_ref().map(|v| v["seen"].clone()),
        Some(json!(true))
    );
    assert!(
        daemon.wait_metric(
            "eventmatchd_seen_updates_total",
            2.0,
            Duration::from_secs(5)
        ) >= 2.0
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}
