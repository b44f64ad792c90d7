//! Two instances in one group share the event partitions; the one emitting control side
//! effects is stopped (SIGTERM) mid-stream, as in a scale-down or a rolling deploy. Nothing is
//! lost, and every control command's result is emitted exactly once, by whichever instance
//! owned the control partition at the time.
//!
//! Why SIGTERM and not `kill -9` here: tansu 0.6 keeps a member that died without leaving in
//! the group's assignment (reproduced with two plain librdkafka consumers: after the session
//! timeout the survivor is reassigned only its own half), so on this broker a killed member's
//! partitions are never taken over. `kill -9` recovery is covered by tests/kafka_kill9.rs
//! (crash and restart), which tansu handles.

mod helpers;

use helpers::kafka::{
    committed, ends, eventually, read, read_until, Daemon, TestEnv, TestProducer,
};
use helpers::workload::{commands, event, expected};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const EVENTS: u64 = 20_000;
const PATCHES: usize = 30;
const SPARE: &str = "b0000000-0000-4000-8000-0000000000ff";

fn instance(env: &TestEnv, name: &str) -> Daemon {
    Daemon::start(
        env,
        name,
        &[
            (
                "EVENTMATCHD__KAFKA__PROPERTIES__SESSION__TIMEOUT__MS",
                "6000",
            ),
            (
                "EVENTMATCHD__KAFKA__PROPERTIES__HEARTBEAT__INTERVAL__MS",
                "1000",
            ),
        ],
    )
}

#[test]
fn two_instances_one_stopped_mid_stream() {
    let env = TestEnv::new("pair", 4);
    let producer = env.producer();
    let mut cmds: Vec<Value> = commands().into_iter().take(7).collect();
    // A rule no binding uses: patching it exercises control side effects without changing
    // what any event produces.
    cmds.push(json!({"id": "spare", "method": "POST", "path": "/events/rules/", "body": {"pk": SPARE, "name": "spare"}}));
    for c in &cmds {
        producer.send_json(&env.control, c);
    }
    producer.flush();
    let mut a = instance(&env, "a");
    let mut b = instance(&env, "b");
    a.wait_ready(Duration::from_secs(30));
    b.wait_ready(Duration::from_secs(30));

    let stream = {
        let (brokers, topic) = (env.brokers.clone(), env.events.clone());
        std::thread::spawn(move || {
            let p = TestProducer::new(&brokers);
            for n in 0..EVENTS {
                p.send_json(&topic, &event(n));
                if n % 1_000 == 999 {
                    p.flush();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            p.flush();
        })
    };
    let patch = |i: usize| json!({"id": format!("patch-{i}"), "method": "PATCH", "path": format!("/events/rules/{SPARE}/"), "body": {"severity": if i % 2 == 0 { "alert" } else { "warning" }}});
    for i in 0..PATCHES / 2 {
        producer.send_json(&env.control, &patch(i));
        producer.flush();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stop whichever instance emits control side effects (once the group has settled).
    let owner = |d: &Daemon| d.metric("eventmatchd_control_owner") == Some(1.0);
    assert!(
        eventually(Duration::from_secs(30), || owner(&a) ^ owner(&b)),
        "exactly one owner (a: {}, b: {})",
        owner(&a),
        owner(&b)
    );
    let owner_is_a = owner(&a);
    let (victim, survivor) = if owner_is_a {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let victim_consumed = victim
        .metric("eventmatchd_events_consumed_total")
        .unwrap_or(0.0);
    let status = victim.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "the stopped instance drains and exits 0: {status}"
    );
    for i in PATCHES / 2..PATCHES {
        producer.send_json(&env.control, &patch(i));
        producer.flush();
        std::thread::sleep(Duration::from_millis(20));
    }
    stream.join().expect("event stream");

    let end = ends(&env.brokers, &env.events);
    assert!(
        eventually(Duration::from_secs(120), || committed(
            &env.brokers,
            &env.group,
            &env.events
        ) == end),
        "the survivor consumed everything: {:?} vs {end:?}\n{}",
        committed(&env.brokers, &env.group, &env.events),
        survivor.logs()
    );
    let results = read_until(&env.brokers, &env.results, Duration::from_secs(60), |r| {
        r.len() >= cmds.len() + PATCHES
    });
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in &results {
        *per_id.entry(r.key.clone().unwrap_or_default()).or_default() += 1;
    }
    std::thread::sleep(Duration::from_secs(1));
    let results_after = read(
        &env.brokers,
        &env.results,
        cmds.len() + PATCHES + 1,
        Duration::from_secs(3),
    );
    assert_eq!(
        per_id.len(),
        cmds.len() + PATCHES,
        "a result for every command"
    );
    assert!(
        per_id.values().all(|n| *n == 1),
        "each result once: {per_id:?}"
    );
    assert_eq!(
        results_after.len(),
        cmds.len() + PATCHES,
        "and no late duplicate"
    );
    assert_eq!(
        survivor.metric("eventmatchd_control_owner"),
        Some(1.0),
        "the survivor took over"
    );

    let want = expected(&cmds, (0..EVENTS).map(event));
    let total: i64 = ends(&env.brokers, &env.notifications).values().sum();
    let records = read(
        &env.brokers,
        &env.notifications,
        total as usize,
        Duration::from_secs(60),
    );
    let keys: HashSet<String> = records.iter().filter_map(|r| r.key.clone()).collect();
    let want_keys: HashSet<String> = want.notifications.keys().cloned().collect();
    assert_eq!(keys, want_keys, "nothing lost, nothing extra");
    for r in &records {
        let k = r.key.as_ref().expect("key");
        assert_eq!(
            r.value.as_ref(),
            want.notifications.get(k),
            "{k}: one version only"
        );
    }
    eprintln!(
        "two instances: the stopped one consumed {victim_consumed}; {} notifications as {} records; {} results, each once",
        want.notifications.len(),
        records.len(),
        per_id.len()
    );
    assert!(survivor.terminate(Duration::from_secs(30)).success());
}
