//! Issue 9 item 3: deleted stays deleted. A notification is created and DELETEd; a new
//! instance with a new consumer group replays every event from offset 0: no live record of
//! the notification follows its tombstone.
//!
//! Before the fix: the replay re-created the notification, unseen, after its tombstone.

mod helpers;

use helpers::kafka::{eventually, read_all, read_until, wait_events_committed, Daemon, TestEnv};
use helpers::workload::{login_event, login_to_user};
use serde_json::json;
use std::time::Duration;

#[test]
fn a_deleted_notification_is_not_recreated_by_a_replay() {
    let mut env = TestEnv::new("deleted", 1);
    let producer = env.producer();
    producer.send_all(&env.control, login_to_user(3000000));
    for n in 1..=2 {
        producer.send_json(
            &env.events,
            &login_event(&format!("e3000000-0000-4000-8000-00000000000{n}"), n),
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
