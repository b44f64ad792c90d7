//! Issue 9 item 2: a zombie instance's late write never leaves a notification in an older
//! state. Instance A is stopped (SIGSTOP) while its notification record N(unseen) sits in
//! librdkafka's queue (a long `linger.ms`); B takes the partition over, produces N itself, N
//! is PATCHed seen; A is resumed and its N(unseen) lands after N(seen). Then the latest state
//! of N on the topic, and in the control owner's index, is seen again (the owner heals it),
//! and no command's result appears twice.
//!
//! Before the fix: the late N(unseen) was the last record of N, so compaction and every
//! reader took N as unseen for good.
//!
//! The paused-instance scenario runs on librdkafka's mock cluster: on tansu 0.6 the survivor
//! of a group whose leader stopped gets an empty assignment (issue 18), so it never takes
//! over. On tansu, the same late write is injected directly and must be healed the same way.

mod helpers;

use helpers::kafka::{
    count_by_key, eventually, latest_by_key, read_all, read_until, Daemon, TestEnv, FAST_FAILOVER,
};
use helpers::workload::{login_event, login_to_user};
use serde_json::json;
use std::time::Duration;

#[test]
fn a_paused_instances_late_write_is_healed_on_the_mock_cluster() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    zombie_scenario(&TestEnv::on_mock(&cluster, "zombie", 1));
}

/// The late write of an older state, injected on the real broker: the control owner
/// re-emits the current state over it.
#[test]
fn an_older_state_written_late_is_healed_on_tansu() {
    let env = TestEnv::new("stale", 1);
    let producer = env.producer();
    setup(&env);
    let mut d = Daemon::start(&env, "d", &FAST_FAILOVER);
    d.wait_ready(Duration::from_secs(30));
    producer.send_json(&env.events, &login());
    producer.flush();
    let first = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(30),
        |r| !r.is_empty(),
    );
    let n = first[0].key.clone().expect("pk");
    let unseen = first[0].raw.clone().expect("value");
    patch_seen(&env, &n, "seen");
    read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(30),
        |r| r.len() >= 2,
    );
    // A zombie's N(unseen), written after N(seen).
    producer.send(&env.notifications, Some(&n), &unseen);
    producer.flush();
    let healed = eventually(Duration::from_secs(30), || {
        let recs = read_all(&env.brokers, &env.notifications);
        recs.len() >= 4
            && latest_by_key(&recs)[&n]
                .value
                .as_ref()
                .is_some_and(|v| v["seen"] == true)
    });
    assert!(healed, "{}", d.logs());
    assert_eq!(
        d.metric("eventmatchd_notifications_healed_total"),
        Some(1.0)
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
}

fn login() -> serde_json::Value {
    login_event("e2000000-0000-4000-8000-000000000001", 7)
}

fn setup(env: &TestEnv) {
    let producer = env.producer();
    producer.send_all(&env.control, login_to_user(2000000));
    producer.flush();
}

/// Marks notification `n` seen (command `id`) and waits for its result.
fn patch_seen(env: &TestEnv, n: &str, id: &str) {
    let producer = env.producer();
    producer.send_json(
        &env.control,
        &json!({"id": id, "method": "PATCH", "path": format!("/events/notifications/{n}/"), "body": {"seen": true}}),
    );
    producer.flush();
    read_until(
        &env.brokers,
        &env.results,
        Duration::from_secs(30),
        |recs| recs.iter().any(|r| r.key.as_deref() == Some(id)),
    );
}

fn zombie_scenario(env: &TestEnv) {
    let producer = env.producer();
    setup(env);
    // Both hold their outputs for 4 s before sending them. Whichever gets the event
    // partition is "A", the one stopped.
    let mut opts: Vec<(&str, &str)> = FAST_FAILOVER.to_vec();
    opts.push(("EVENTMATCHD__KAFKA__PROPERTIES__LINGER__MS", "4000"));
    let mut d1 = Daemon::start(env, "d1", &opts);
    d1.wait_ready(Duration::from_secs(30));
    let mut d2 = Daemon::start(env, "d2", &opts);
    d2.wait_ready(Duration::from_secs(30));
    // A has answered the set-up commands (with its 4 s linger) before it is stopped: a result
    // still queued in a stopped owner's librdkafka is the window README "Reliability"
    // documents, not what this test is about.
    read_until(
        &env.brokers,
        &env.results,
        Duration::from_secs(40),
        |recs| recs.len() >= 3,
    );

    producer.send_json(&env.events, &login());
    producer.flush();
    let emitted =
        "eventmatchd_notifications_emitted_total{rule=\"to the user\",severity=\"notice\"}";
    let made = |d: &Daemon| d.metric(emitted).unwrap_or(0.0) >= 1.0;
    assert!(
        eventually(Duration::from_secs(20), || made(&d1) || made(&d2)),
        "one of them made N"
    );
    let (mut a, mut b) = if made(&d1) { (d1, d2) } else { (d2, d1) };
    a.signal("-STOP");

    // B takes the partition over and produces N itself; then N is marked seen.
    let first = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(40),
        |recs| !recs.is_empty(),
    );
    assert_eq!(
        first.len(),
        1,
        "N from B (A's copy is still held by the stopped A)"
    );
    let n = first[0].key.clone().expect("pk");
    assert!(
        eventually(Duration::from_secs(30), || b
            .metric("eventmatchd_control_owner")
            == Some(1.0)),
        "B took the control partition over"
    );
    patch_seen(env, &n, "seen");

    // A wakes up: its late N(unseen) lands after N(seen).
    a.signal("-CONT");
    let healed = eventually(Duration::from_secs(40), || {
        let recs = read_all(&env.brokers, &env.notifications);
        let unseen_after_seen = recs.iter().any(|r| {
            r.value.as_ref().is_some_and(|v| v["seen"] == false)
                && recs.iter().any(|s| {
                    s.offset < r.offset && s.value.as_ref().is_some_and(|v| v["seen"] == true)
                })
        });
        let latest = latest_by_key(&recs);
        unseen_after_seen && latest[&n].value.as_ref().is_some_and(|v| v["seen"] == true)
    });
    let recs = read_all(&env.brokers, &env.notifications);
    let states: Vec<(i64, serde_json::Value, serde_json::Value)> = recs
        .iter()
        .map(|r| {
            let v = r.value.clone().unwrap_or_default();
            (r.offset, v["seen"].clone(), v["version"].clone())
        })
        .collect();
    assert!(
        healed,
        "the late unseen record was written and then healed: {states:?}\nA:\n{}\nB:\n{}",
        a.logs(),
        b.logs()
    );

    // The owner's index holds N as seen: an empty PATCH answers with the held state.
    producer.send_json(
        &env.control,
        &json!({"id": "look", "method": "PATCH", "path": format!("/events/notifications/{n}/"), "body": {}}),
    );
    producer.flush();
    let results = read_until(
        &env.brokers,
        &env.results,
        Duration::from_secs(30),
        |recs| recs.iter().any(|r| r.key.as_deref() == Some("look")),
    );
    let look = results
        .iter()
        .find(|r| r.key.as_deref() == Some("look"))
        .and_then(|r| r.value.clone())
        .expect("look");
    assert_eq!(look["body"]["seen"], true, "{look}");
    let per_id = count_by_key(&results);
    // A failure here once (stop 24) printed only the counts; the logs say who answered.
    assert!(
        per_id.values().all(|c| *c == 1),
        "no result twice: {per_id:?}\nA:\n{}\nB:\n{}",
        a.logs(),
        b.logs()
    );
    assert!(
        b.metric("eventmatchd_notifications_healed_total")
            .unwrap_or(0.0)
            >= 1.0
            || a.metric("eventmatchd_notifications_healed_total")
                .unwrap_or(0.0)
                >= 1.0
    );

    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
}
