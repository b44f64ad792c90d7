//! Poison records in the middle of valid ones: every valid record is processed, every poison
//! record lands in the dead-letter topic with its source and original bytes, and the group's
//! committed offsets reach the end of every partition (nothing stalls).

mod helpers;

use helpers::kafka::{read, wait_events_committed, TestEnv};
use helpers::workload::{commands, event, expected};
use std::time::Duration;

#[test]
fn poison_records_go_to_the_dlq_and_offsets_advance() {
    let env = TestEnv::new("poison", 3);
    let producer = env.producer();
    producer.send_all(&env.control, commands());
    let poison: Vec<&[u8]> = vec![
        b"not json",
        b"[1, 2, 3]",
        b"{\"pk\": \"e0000000-0000-4000-8000-000000000000\", \"app\": \"x\"}",
        &[0xff, 0xfe, 0x00],
        b"",
        b"{\"pk\": \"e0000000-0000-4000-8000-000000000000\", \"action\": \"login\", \"app\": \"x\", \"context\": []}",
    ];
    let valid = 300u64;
    let mut sent_poison = 0;
    for n in 0..valid {
        producer.send_json(&env.events, &event(n));
        if n % 50 == 25 {
            let p = poison[sent_poison % poison.len()];
            producer.send(&env.events, Some(&format!("poison-{sent_poison}")), p);
            sent_poison += 1;
        }
    }
    producer.flush();
    let mut daemon = env.start_daemon("d1");
    daemon.wait_ready(Duration::from_secs(30));

    let want = expected(&commands(), (0..valid).map(event));
    let notes = read(
        &env.brokers,
        &env.notifications,
        want.notifications.len(),
        Duration::from_secs(30),
    );
    assert_eq!(
        notes.len(),
        want.notifications.len(),
        "every valid event processed"
    );
    let dlq = read(&env.brokers, &env.dlq, sent_poison, Duration::from_secs(30));
    assert_eq!(dlq.len(), sent_poison, "every poison record dead-lettered");
    let mut reasons: Vec<String> = dlq
        .iter()
        .map(|r| {
            r.value.as_ref().expect("json")["reason"]
                .as_str()
                .expect("reason")
                .to_string()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "missing_field",
            "not_json",
            "not_json",
            "not_object",
            "not_utf8",
            "wrong_type"
        ]
    );
    for r in &dlq {
        let v = r.value.as_ref().expect("json");
        assert_eq!(v["source"]["topic"], env.events.as_str());
        assert!(v["source"]["offset"].as_i64().is_some());
        assert!(v["payload"].is_string() || v["payload_base64"].is_string());
        assert!(r.key.as_deref().is_some_and(|k| k.starts_with("poison-")));
    }
    let binary = dlq
        .iter()
        .find(|r| r.value.as_ref().is_some_and(|v| v["reason"] == "not_utf8"))
        .expect("binary");
    assert_eq!(
        binary.value.as_ref().expect("json")["payload_base64"],
        "//4A"
    );

    if let Err(e) = wait_events_committed(&env, Duration::from_secs(20)) {
        panic!("committed offsets reach the end: {e}");
    }
    assert_eq!(
        daemon.metric("eventmatchd_events_invalid_total{reason=\"not_json\"}"),
        Some(2.0)
    );
    assert_eq!(daemon.healthz(), Some(200));
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}
