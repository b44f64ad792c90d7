//! End to end on a real broker: control commands and events in; notifications, results,
//! executions and dead letters out, exactly as the engine computes them in-process.

mod helpers;

use helpers::kafka::{read, read_until, TestEnv};
use helpers::workload::{commands, event, expected};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const EVENTS: u64 = 2_000;

#[test]
fn control_and_events_in_notifications_and_results_out() {
    let env = TestEnv::new("e2e", 3);
    let producer = env.producer();
    let cmds = commands();
    producer.send_all(&env.control, &cmds);
    producer.flush();
    let mut daemon = env.start_daemon("d1");
    daemon.wait_ready(Duration::from_secs(30));

    let started = Instant::now();
    producer.send_all(&env.events, (0..EVENTS).map(event));
    producer.send(&env.events, Some("bad"), b"{\"pk\": 1}");
    producer.flush();

    let want = expected(&cmds, (0..EVENTS).map(event));
    assert!(want.notifications.len() > 100, "the workload fires rules");
    let got = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(60),
        |r| r.len() >= want.notifications.len(),
    );
    let elapsed = started.elapsed();
    assert_eq!(
        got.len(),
        want.notifications.len(),
        "one record per expected notification"
    );
    for r in &got {
        let key = r.key.clone().expect("keyed by pk");
        let value = r.value.clone().expect("a JSON value");
        assert_eq!(
            Some(&value),
            want.notifications.get(&key),
            "notification {key} as the engine renders it"
        );
        assert_eq!(value["pk"], Value::String(key));
    }
    eprintln!(
        "end to end: {EVENTS} events -> {} notifications readable in {:.2}s ({:.0} events/s incl. produce)",
        got.len(),
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );

    let results = read(
        &env.brokers,
        &env.results,
        cmds.len(),
        Duration::from_secs(20),
    );
    assert_eq!(results.len(), cmds.len());
    let got_results: Vec<Value> = results
        .iter()
        .map(|r| r.value.clone().expect("json"))
        .collect();
    assert_eq!(
        got_results, want.results,
        "results in command order, as the engine answers"
    );
    let ids: HashSet<&str> = results.iter().filter_map(|r| r.key.as_deref()).collect();
    assert_eq!(ids.len(), cmds.len(), "keyed by request id");

    let executions = read(
        &env.brokers,
        &env.executions,
        want.executions,
        Duration::from_secs(20),
    );
    assert_eq!(executions.len(), want.executions);
    let dlq = read(&env.brokers, &env.dlq, 1, Duration::from_secs(20));
    assert_eq!(dlq.len(), 1);
    let d = dlq[0].value.clone().expect("json");
    assert_eq!(d["reason"], "wrong_type");
    assert_eq!(d["source"]["topic"], env.events.as_str());
    assert_eq!(d["payload"], "{\"pk\": 1}");
    assert_eq!(dlq[0].key.as_deref(), Some("bad"));

    assert!(
        daemon.wait_metric(
            "eventmatchd_events_consumed_total",
            (EVENTS + 1) as f64,
            Duration::from_secs(10)
        ) >= (EVENTS + 1) as f64
    );
    assert_eq!(
        daemon.metric("eventmatchd_events_invalid_total{reason=\"wrong_type\"}"),
        Some(1.0)
    );
    assert_eq!(
        daemon.metric("eventmatchd_policy_set_version"),
        Some(cmds.len() as f64)
    );
    assert_eq!(daemon.healthz(), Some(200));
    // Everything the daemon exports is in the README's metrics reference.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let exported: Vec<String> = daemon
        .metrics()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert!(exported.len() >= 15, "{exported:?}");
    for name in &exported {
        assert!(
            readme.contains(&format!("| `{name}`")),
            "{name} is not documented in the README"
        );
    }
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "SIGTERM exits 0: {status}\n{}",
        daemon.logs()
    );
}
