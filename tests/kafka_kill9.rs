//! `kill -9` in the middle of a 50,000-event stream, then a restart: every expected
//! notification is there, every record of a notification is the same version (replays are
//! idempotent), and no notification marked seen before the crash is reset.

mod helpers;

use helpers::kafka::{committed, ends, eventually, read, read_until, TestEnv};
use helpers::workload::{commands, event, expected};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const EVENTS: u64 = 50_000;
const SEEN: usize = 20;

#[test]
fn kill_9_mid_stream_loses_nothing_and_resets_no_seen_flag() {
    let env = TestEnv::new("kill9", 3);
    let producer = env.producer();
    let cmds: Vec<Value> = commands().into_iter().take(7).collect();
    for c in &cmds {
        producer.send_json(&env.control, c);
    }
    for n in 0..EVENTS {
        producer.send_json(&env.events, &event(n));
    }
    producer.flush();
    let want = expected(&cmds, (0..EVENTS).map(event));

    let mut d1 = env.start_daemon_fast_failover("d1");
    d1.wait_ready(Duration::from_secs(30));
    let t1 = Instant::now();
    assert!(
        d1.wait_metric(
            "eventmatchd_events_consumed_total",
            5_000.0,
            Duration::from_secs(60)
        ) >= 5_000.0
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
        consumed_at_kill < EVENTS as f64,
        "killed mid-stream ({consumed_at_kill} of {EVENTS} consumed)"
    );

    let mut d2 = env.start_daemon_fast_failover("d2");
    d2.wait_ready(Duration::from_secs(60));
    let t2 = Instant::now();
    let end = ends(&env.brokers, &env.events);
    assert!(
        eventually(Duration::from_secs(180), || committed(
            &env.brokers,
            &env.group,
            &env.events
        ) == end),
        "d2 consumed everything: {:?} vs {end:?}\n{}",
        committed(&env.brokers, &env.group, &env.events),
        d2.logs()
    );
    let d2_secs = t2.elapsed().as_secs_f64();
    let reprocessed = d2
        .metric("eventmatchd_events_consumed_total")
        .unwrap_or(0.0);

    let total: i64 = ends(&env.brokers, &env.notifications).values().sum();
    let records = read(
        &env.brokers,
        &env.notifications,
        total as usize,
        Duration::from_secs(60),
    );
    assert_eq!(records.len() as i64, total);
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in &records {
        by_key
            .entry(r.key.clone().expect("key"))
            .or_default()
            .push(r.value.as_ref().expect("no tombstones here"));
    }
    let keys: HashSet<&String> = by_key.keys().collect();
    let want_keys: HashSet<&String> = want.notifications.keys().collect();
    assert_eq!(
        keys.len(),
        want_keys.len(),
        "every expected notification, nothing else"
    );
    assert_eq!(keys, want_keys);
    let mut duplicates = 0;
    for (k, versions) in &by_key {
        let mut expected_unseen = want.notifications[k].clone();
        expected_unseen["seen"] = json!(false);
        let mut seen_yet = false;
        for v in versions {
            let mut as_unseen = (*v).clone();
            as_unseen["seen"] = json!(false);
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
    for k in &seen_keys {
        assert_eq!(
            by_key[k].last().map(|v| v["seen"].clone()),
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
