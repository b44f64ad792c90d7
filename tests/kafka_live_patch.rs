//! A policy PATCH applied live while events flow: every event is evaluated against exactly one
//! policy-set version, versions never go back (in one partition: a single cut between "old
//! policy" and "new policy" events), and the change is visible promptly.

mod helpers;

use helpers::kafka::{read_all, read_until, Daemon, TestEnv};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const P: &str = "a0000000-0000-4000-8000-000000000001";
const R: &str = "b0000000-0000-4000-8000-000000000001";
const G: &str = "9d4b2c1a-0000-4000-8000-00000000beef";

fn ev(n: u64) -> serde_json::Value {
    json!({"pk": format!("e0000000-0000-4000-8000-{n:012}"), "action": if n.is_multiple_of(2) { "login" } else { "logout" },
           "app": "authentik.core", "user": {"pk": 1}, "context": {"n": n}, "created": "2024-01-01T00:00:00Z"})
}

/// (sum, count) of the control apply latency histogram.
fn apply_latency(d: &Daemon) -> (f64, f64) {
    (
        d.metric("eventmatchd_control_apply_latency_seconds_sum")
            .unwrap_or(0.0),
        d.metric("eventmatchd_control_apply_latency_seconds_count")
            .unwrap_or(0.0),
    )
}

#[test]
fn patch_while_events_flow_switches_matching_at_one_point() {
    let env = TestEnv::new("live", 1);
    let producer = env.producer();
    for c in [
        json!({"method": "POST", "path": "/policies/event_matcher/", "body": {"pk": P, "name": "logins", "action": "login"}}),
        json!({"method": "POST", "path": "/events/rules/", "body": {"pk": R, "name": "r", "destination_group": G}}),
        json!({"method": "POST", "path": "/policies/bindings/", "body": {"policy": P, "target": R, "order": 0}}),
    ] {
        producer.send_json(&env.control, &c);
    }
    producer.flush();
    let mut daemon = env.start_daemon("d1");
    daemon.wait_ready(Duration::from_secs(30));

    // A steady stream: one event every millisecond, alternating login / logout.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = {
        let (stop, brokers, topic) = (stop.clone(), env.brokers.clone(), env.events.clone());
        std::thread::spawn(move || {
            let p = helpers::kafka::TestProducer::new(&brokers);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                p.send_json(&topic, &ev(n));
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            p.flush();
            n
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (sum0, count0) = apply_latency(&daemon);
    let t0 = Instant::now();
    producer.send_json(&env.control, &json!({"id": "patch", "method": "PATCH", "path": format!("/policies/event_matcher/{P}/"), "body": {"action": "logout"}}));
    producer.flush();
    let (sum1, count1) = loop {
        let (s, c) = apply_latency(&daemon);
        if c > count0 || t0.elapsed() > Duration::from_secs(20) {
            break (s, c);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let polled = t0.elapsed();
    assert_eq!(count1, count0 + 1.0, "the patch was applied");
    let apply_ms = (sum1 - sum0) * 1000.0;
    let results = read_until(&env.brokers, &env.results, Duration::from_secs(20), |r| {
        r.iter().any(|x| x.key.as_deref() == Some("patch"))
    });
    assert!(
        results.iter().any(|x| x.key.as_deref() == Some("patch")),
        "patch result"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let total = sent.join().expect("producer thread");
    assert!(total > 200, "the stream ran ({total} events)");

    assert!(
        daemon.wait_metric(
            "eventmatchd_events_consumed_total",
            total as f64,
            Duration::from_secs(30)
        ) >= total as f64
    );
    let notes = read_all(&env.brokers, &env.notifications);
    let by_n: HashMap<u64, String> = notes
        .iter()
        .map(|r| {
            let v = r.value.as_ref().expect("json");
            (
                v["event"]["context"]["n"].as_u64().expect("n"),
                v["event"]["action"].as_str().expect("action").to_string(),
            )
        })
        .collect();
    assert_eq!(
        notes.len(),
        by_n.len(),
        "one notification per notified event"
    );
    // Which version evaluated each event: the old one notifies logins (even n), the new one
    // logouts (odd n). In one partition the versions must form old..., new... with one switch.
    let new_version: Vec<bool> = (0..total)
        .map(|n| by_n.contains_key(&n) == (n % 2 == 1))
        .collect();
    let cut = new_version
        .iter()
        .position(|v| *v)
        .expect("the new version evaluated something");
    assert!(cut > 0, "the old version evaluated the first events");
    if let Some(back) = new_version[cut..].iter().position(|v| !*v) {
        panic!(
            "event {} was evaluated with the old policy after event {cut} saw the new one",
            cut + back
        );
    }
    eprintln!(
        "live patch: {total} events, switch at event {cut}; patch record -> applied (control_apply_latency): {apply_ms:.1} ms; seen in /metrics after {:.1} ms",
        polled.as_secs_f64() * 1000.0
    );
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}
