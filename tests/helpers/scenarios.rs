//! Scenarios run on more than one broker.
#![allow(dead_code)]

use super::kafka::{
    count_by_key, eventually, read, read_all, read_until, wait_events_committed, Daemon, TestEnv,
    TestProducer,
};
use super::workload::{commands, event, expected};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use std::time::Instant;

const PAIR_EVENTS: u64 = 20_000;
const PATCHES: usize = 30;
const SPARE: &str = "b0000000-0000-4000-8000-0000000000ff";

/// `kill -9` in the middle of a stream of `events` events, then a restart: every expected
/// notification is there, every record of a notification is the same version (replays are
/// idempotent), and no notification marked seen before the crash is reset.
/// Whether the broker may lose records it acknowledged or served (tansu 0.6 under `kill -9`
/// of a producer) or not (librdkafka's mock cluster, Apache Kafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    MayDropAcknowledged,
}

pub fn kill_9_mid_stream_then_restart(env: &TestEnv, events: u64, broker: Durability) {
    const SEEN: usize = 20;
    let kill_after = (events / 10) as f64;

    let producer = env.producer();
    let cmds: Vec<Value> = commands().into_iter().take(7).collect();
    producer.send_all(&env.control, &cmds);
    producer.send_all(&env.events, (0..events).map(event));
    producer.flush();
    let want = expected(&cmds, (0..events).map(event));

    let mut d1 = env.start_daemon_fast_failover("d1");
    d1.wait_ready(Duration::from_secs(30));
    let t1 = Instant::now();
    assert!(
        d1.wait_metric(
            "eventmatchd_events_consumed_total",
            kill_after,
            Duration::from_secs(60)
        ) >= kill_after
    );
    // Mark some notifications seen, and wait until the updates are on the topic.
    let early = read(
        &env.brokers,
        &env.notifications,
        SEEN,
        Duration::from_secs(30),
    );
    let seen_keys: Vec<String> = early.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(seen_keys.len(), SEEN);
    for (i, k) in seen_keys.iter().enumerate() {
        producer.send_json(&env.control, &json!({"id": format!("seen-{i}"), "method": "PATCH", "path": format!("/events/notifications/{k}/"), "body": {"seen": true}}));
    }
    producer.flush();
    let results = read_until(&env.brokers, &env.results, Duration::from_secs(30), |r| {
        r.len() >= cmds.len() + SEEN
    });
    assert_eq!(results.len(), cmds.len() + SEEN);
    assert!(results
        .iter()
        .skip(cmds.len())
        .all(|r| r.value.as_ref().is_some_and(|v| v["status"] == 200)));

    let consumed_at_kill = d1
        .metric("eventmatchd_events_consumed_total")
        .unwrap_or(0.0);
    let d1_rate = consumed_at_kill / t1.elapsed().as_secs_f64();
    d1.kill9();
    assert!(
        consumed_at_kill < events as f64,
        "killed mid-stream ({consumed_at_kill} of {events} consumed)"
    );

    let mut d2 = env.start_daemon_fast_failover("d2");
    d2.wait_ready(Duration::from_secs(60));
    let t2 = Instant::now();
    if let Err(e) = wait_events_committed(env, Duration::from_secs(180)) {
        panic!("d2 consumed everything: {e}\n{}", d2.logs());
    }
    let d2_secs = t2.elapsed().as_secs_f64();
    let reprocessed = d2
        .metric("eventmatchd_events_consumed_total")
        .unwrap_or(0.0);

    let records = read_all(&env.brokers, &env.notifications);
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in &records {
        by_key
            .entry(r.key.clone().expect("key"))
            .or_default()
            .push(r.value.as_ref().expect("no tombstones here"));
    }
    let keys: HashSet<&String> = by_key.keys().collect();
    let want_keys: HashSet<&String> = want.notifications.keys().collect();
    // Every expected notification is on the topic. On a broker that may drop records it
    // acknowledged, a missing one is tolerated (and reported) only with proof that the broker
    // had it: its event was committed before the kill (the daemon commits only after every
    // output is acknowledged), or an instance read it back from the topic. On a durable broker
    // nothing may be missing; that run also covers committing before acknowledgement.
    let missing: Vec<&String> = want_keys
        .iter()
        .filter(|k| !keys.contains(**k))
        .copied()
        .collect();
    let logs = format!("{}\n{}", d1.logs(), d2.logs());
    assert!(
        logs.contains("notification read back"),
        "the daemons log what they read back (RUST_LOG with eventmatchd::daemon::readers=trace)"
    );
    // Where d2 resumed each event partition, from its log (the first offset it processed).
    let mut resumed: HashMap<i32, i64> = HashMap::new();
    for l in d2
        .logs()
        .lines()
        .filter(|l| l.contains("resuming event partition"))
    {
        // `... resuming event partition partition=2 offset=10023`
        let field = |name: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse::<i64>().ok())
        };
        if let (Some(p), Some(o)) = (field("partition="), field("offset=")) {
            let e = resumed.entry(p as i32).or_insert(o);
            *e = (*e).min(o);
        }
    }
    let event_positions: HashMap<String, (i32, i64)> = if missing.is_empty() {
        HashMap::new()
    } else {
        read(
            &env.brokers,
            &env.events,
            events as usize,
            Duration::from_secs(60),
        )
        .into_iter()
        .filter_map(|r| Some((r.key?, (r.partition, r.offset))))
        .collect()
    };
    let broker_had = |k: &String| {
        let read_back = logs
            .lines()
            .any(|l| l.contains("notification read back") && l.contains(k.as_str()));
        // Below where d2 resumed that partition: d1 had committed it, i.e. every output of
        // it had been acknowledged.
        let acknowledged = want.notifications[k]["event"]["pk"]
            .as_str()
            .and_then(|ev| event_positions.get(ev))
            .is_some_and(|(p, o)| resumed.get(p).is_some_and(|r| o < r));
        read_back || acknowledged
    };
    let (dropped_by_broker, unexplained): (Vec<&String>, Vec<&String>) = match broker {
        Durability::Durable => (Vec::new(), missing.clone()),
        Durability::MayDropAcknowledged => missing.iter().partition(|k| broker_had(k)),
    };
    assert!(
        unexplained.is_empty(),
        "notifications lost: {unexplained:?}"
    );
    if !dropped_by_broker.is_empty() {
        eprintln!(
            "BROKER FAULT: {} notifications the broker had acknowledged or served are gone: {dropped_by_broker:?}",
            dropped_by_broker.len()
        );
    }
    assert!(
        keys.iter().all(|k| want_keys.contains(k)),
        "no notification that should not exist"
    );
    let mut duplicates = 0;
    for (k, versions) in &by_key {
        let mut expected_unseen = want.notifications[k].clone();
        expected_unseen["seen"] = json!(false);
        let mut seen_yet = false;
        for v in versions {
            // A seen update is a new state: `seen` and its `version` differ, nothing else.
            let mut as_unseen = (*v).clone();
            as_unseen["seen"] = json!(false);
            as_unseen["version"] = json!(0);
            assert_eq!(
                as_unseen, expected_unseen,
                "{k}: one version only (apart from seen)"
            );
            if v["seen"] == true {
                seen_yet = true;
            } else {
                assert!(!seen_yet, "{k}: seen reset after the crash");
                duplicates += usize::from(versions.len() > 1 && !seen_keys.contains(k));
            }
        }
    }
    for k in seen_keys.iter().filter(|k| !dropped_by_broker.contains(k)) {
        assert_eq!(
            by_key
                .get(k)
                .and_then(|v| v.last())
                .map(|v| v["seen"].clone()),
            Some(json!(true)),
            "{k} still seen"
        );
    }
    eprintln!(
        "kill -9: d1 consumed {consumed_at_kill} events at {d1_rate:.0}/s before the kill; d2 consumed {reprocessed} (incl. replays) in {d2_secs:.2}s; {} notifications, {} records ({duplicates} duplicate unseen records from replays)",
        want.notifications.len(),
        records.len()
    );
}

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
    producer.send_all(&env.control, &cmds);
    producer.flush();
    let mut a = env.start_daemon_fast_failover("a");
    let mut b = env.start_daemon_fast_failover("b");
    a.wait_ready(Duration::from_secs(30));
    b.wait_ready(Duration::from_secs(30));

    let stream = {
        let (brokers, topic) = (env.brokers.clone(), env.events.clone());
        std::thread::spawn(move || {
            let p = TestProducer::new(&brokers);
            for n in 0..PAIR_EVENTS {
                p.send_json(&topic, &event(n));
                if n % 1_000 == 999 {
                    p.flush();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            p.flush();
        })
    };
    let patch = |i: usize| json!({"id": format!("patch-{i}"), "method": "PATCH", "path": format!("/events/rules/{SPARE}/"), "body": {"severity": if i.is_multiple_of(2) { "alert" } else { "warning" }}});
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
    // Stop the owner only once everything sent so far has been emitted (by either instance:
    // the partition may already have moved once), so that its last results are on the topic
    // and, if it is killed, possibly not committed: the successor must not repeat them.
    let sent = (cmds.len() + PATCHES / 2) as f64;
    let emitted = |d: &Daemon| {
        d.metric("eventmatchd_control_side_effects_total")
            .unwrap_or(0.0)
    };
    assert!(
        eventually(Duration::from_secs(60), || emitted(&a) + emitted(&b)
            >= sent),
        "the first {sent} commands were emitted (a: {}, b: {})",
        emitted(&a),
        emitted(&b)
    );
    assert!(owner(&a) ^ owner(&b), "still exactly one owner");
    let (victim, survivor) = if owner(&a) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
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

    if let Err(e) = wait_events_committed(env, Duration::from_secs(120)) {
        panic!("the survivor consumed everything: {e}\n{}", survivor.logs());
    }
    let results = read_until(&env.brokers, &env.results, Duration::from_secs(60), |r| {
        r.len() >= cmds.len() + PATCHES
    });
    let per_id = count_by_key(&results);
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

    let want = expected(&cmds, (0..PAIR_EVENTS).map(event));
    let records = read_all(&env.brokers, &env.notifications);
    let keys: HashSet<String> = records.iter().filter_map(|r| r.key.clone()).collect();
    let want_keys: HashSet<String> = want.notifications.keys().cloned().collect();
    let lost: Vec<&String> = want_keys.difference(&keys).collect();
    let extra: Vec<&String> = keys.difference(&want_keys).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "nothing lost, nothing extra: lost {} {lost:?}, extra {} {extra:?}",
        lost.len(),
        extra.len()
    );
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
