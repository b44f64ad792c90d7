//! Scenarios run on more than one broker.
#![allow(dead_code)]

use super::kafka::{committed, ends, eventually, read, read_until, Daemon, TestEnv, TestProducer};
use super::workload::{commands, event, expected};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const EVENTS: u64 = 20_000;
const PATCHES: usize = 30;
const SPARE: &str = "b0000000-0000-4000-8000-0000000000ff";

/// How the instance that emits control side effects is stopped mid-stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: it drains, commits and leaves the groups.
    Term,
    /// `kill -9`: its session has to expire; a successor may find results it wrote but never
    /// committed.
    Kill,
}

/// Two instances share the group while events and control commands flow; the control owner is
/// stopped mid-stream. Checks: nothing lost, one version per notification, every command's
/// result exactly once, the survivor owns the control partition.
pub fn two_instances_owner_stopped(env: &TestEnv, stop: Stop) {
    let producer = env.producer();
    let mut cmds: Vec<Value> = commands().into_iter().take(7).collect();
    // A rule no binding uses: patching it exercises control side effects without changing
    // what any event produces.
    cmds.push(json!({"id": "spare", "method": "POST", "path": "/events/rules/", "body": {"pk": SPARE, "name": "spare"}}));
    for c in &cmds {
        producer.send_json(&env.control, c);
    }
    producer.flush();
    let mut a = env.start_daemon_fast_failover("a");
    let mut b = env.start_daemon_fast_failover("b");
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
    let (victim, survivor) = if owner(&a) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // Stop it only once it has emitted everything sent so far, so that its last results are
    // on the topic (and, killed, possibly not committed): the successor must not repeat them.
    let sent = (cmds.len() + PATCHES / 2) as f64;
    assert!(
        victim.wait_metric(
            "eventmatchd_control_side_effects_total",
            sent,
            Duration::from_secs(60)
        ) >= sent,
        "the owner emitted the first commands:\n{}",
        victim.logs()
    );
    let victim_emitted = victim
        .metric("eventmatchd_control_side_effects_total")
        .unwrap_or(0.0);
    let victim_consumed = victim
        .metric("eventmatchd_events_consumed_total")
        .unwrap_or(0.0);
    match stop {
        Stop::Term => {
            let status = victim.terminate(Duration::from_secs(30));
            assert!(
                status.success(),
                "the stopped instance drains and exits 0: {status}"
            );
        }
        Stop::Kill => victim.kill9(),
    }
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
        "two instances ({stop:?}): the stopped one had consumed {victim_consumed} events and emitted {victim_emitted} commands' effects; {} notifications as {} records; {} results, each once",
        want.notifications.len(),
        records.len(),
        per_id.len()
    );
    assert!(survivor.terminate(Duration::from_secs(30)).success());
}
