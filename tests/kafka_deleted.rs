//! Issue 9 item 3: deleted stays deleted. A notification is created and DELETEd; a new
//! instance with a new consumer group replays every event from offset 0: no live record of
//! the notification follows its tombstone.
//!
//! Before the fix: the replay re-created the notification, unseen, after its tombstone.

mod helpers;

use helpers::kafka::{eventually, read_all, read_until, wait_events_committed, Daemon, TestEnv};
use serde_json::json;
use std::time::Duration;

#[test]
fn a_deleted_notification_is_not_recreated_by_a_replay() {
    let mut env = TestEnv::new("deleted", 1);
    let producer = env.producer();
    let (p, r) = (
        "a3000000-0000-4000-8000-000000000001",
        "b3000000-0000-4000-8000-000000000001",
    );
    producer.send_all(
        &env.control,
        [
            json!({"id": "p", "method": "POST", "path": "/policies/event_matcher/", "body": {"pk": p, "name": "logins", "action": "login"}}),
            json!({"id": "r", "method": "POST", "path": "/events/rules/", "body": {"pk": r, "name": "to the user", "destination_event_user": true}}),
            json!({"id": "b", "method": "POST", "path": "/policies/bindings/", "body": {"policy": p, "target": r, "order": 0}}),
        ],
    );
    for n in 1..=2 {
        producer.send_json(
            &env.events,
            &json!({"pk": format!("e3000000-0000-4000-8000-00000000000{n}"), "user": {"pk": n, "username": "u"},
                    "action": "login", "app": "authentik.events.signals", "context": {},
                    "client_ip": "10.0.0.1", "created": "2024-09-13T14:05:42.170Z",
                    "expires": "2099-01-01T00:00:00Z"}),
        );
    }
    producer.flush();
    let mut d1 = env.start_daemon("d1");
    d1.wait_ready(Duration::from_secs(30));
    let notes = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(30),
        |r| r.len() >= 2,
    );
    assert_eq!(notes.len(), 2);
    let gone = notes[0].key.clone().expect("pk");
    let kept = notes[1].key.clone().expect("pk");
    producer.send_json(
        &env.control,
        &json!({"id": "del", "method": "DELETE", "path": format!("/events/notifications/{gone}/")}),
    );
    producer.flush();
    read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(30),
        |r| r.len() >= 3,
    );
    wait_events_committed(&env, Duration::from_secs(20)).expect("committed");
    assert!(d1.terminate(Duration::from_secs(30)).success());

    // A new group: every event is processed again, from offset 0.
    env.group = format!("{}-again", env.group);
    let mut d2 = Daemon::start(&env, "d2", &[]);
    d2.wait_ready(Duration::from_secs(30));
    assert!(
        eventually(Duration::from_secs(30), || wait_events_committed(
            &env,
            Duration::from_millis(500)
        )
        .is_ok()),
        "the new group read every event"
    );
    let recs = read_all(&env.brokers, &env.notifications);
    let tombstone = recs
        .iter()
        .position(|r| r.key.as_deref() == Some(gone.as_str()) && r.raw.is_none())
        .expect("the tombstone");
    assert!(
        recs[tombstone..]
            .iter()
            .all(|r| r.key.as_deref() != Some(gone.as_str()) || r.raw.is_none()),
        "no live record after the tombstone: {recs:?}"
    );
    assert!(
        recs.iter().any(|r| r.key.as_deref() == Some(kept.as_str())),
        "the other notification is still there"
    );
    assert!(d2.terminate(Duration::from_secs(30)).success());
}
