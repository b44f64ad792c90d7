//! Issue 9 item 5: a pipeline that stops making progress while work waits turns `/healthz`
//! red within the watchdog deadline, `/readyz` says why, and the lag read from the broker
//! keeps growing in `/metrics` (the pipeline's own statistics stop with it). Forced on
//! librdkafka's mock cluster by making the dead-letter topic fail (authorization, a retriable
//! error for eventmatchd) under a daemon that then receives invalid events: their dead letters
//! cannot be written, so the batch never finishes. Clearing the fault lets it finish, and
//! `/healthz` is green again. (tansu creates a deleted topic again on the first produce, so
//! the same fault cannot be made there; the lag the watchdog reads from tansu is checked by
//! the second test.)
//!
//! Before the fix: `/healthz` and `/readyz` stayed 200 and the lag metric froze.

mod helpers;

use helpers::kafka::{eventually, wait_events_committed, Daemon, TestEnv};
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaRespErr;
use std::time::Duration;

const FAST_WATCHDOG: [(&str, &str); 2] = [
    ("EVENTMATCHD__WATCHDOG__DEADLINE_SECS", "4"),
    ("EVENTMATCHD__WATCHDOG__INTERVAL_SECS", "1"),
];

fn lag_sample(env: &TestEnv) -> String {
    format!(
        "eventmatchd_group_lag{{group=\"{}\",partition=\"0\",topic=\"{}\"}}",
        env.group, env.events
    )
}

#[test]
fn a_stalled_pipeline_turns_healthz_red_and_lag_keeps_growing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let env = TestEnv::on_mock(&cluster, "watchdog", 1);
    let mut d = Daemon::start(&env, "d", &FAST_WATCHDOG);
    d.wait_ready(Duration::from_secs(30));
    assert_eq!(d.healthz(), Some(200));
    cluster
        .topic_error(
            &env.dlq,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("fault");

    let producer = env.producer();
    for i in 0..5 {
        producer.send(&env.events, Some(&format!("bad-{i}")), b"not json");
    }
    producer.flush();
    let lag = lag_sample(&env);
    assert!(
        eventually(Duration::from_secs(40), || d.healthz() == Some(503)),
        "stalled within the deadline:\n{}",
        d.logs()
    );
    let (status, body) = d.readyz().expect("readyz");
    assert_eq!(status, 503);
    assert!(body.contains("\"stalled\":true"), "{body}");
    assert_eq!(
        d.metric("eventmatchd_stalled{component=\"pipeline\"}"),
        Some(1.0)
    );
    let before = d.metric(&lag).expect("group lag");
    assert!(before >= 1.0, "{before}");
    for i in 0..5 {
        producer.send(&env.events, Some(&format!("more-{i}")), b"not json either");
    }
    producer.flush();
    assert!(
        eventually(Duration::from_secs(20), || d.metric(&lag).unwrap_or(0.0)
            >= before + 5.0),
        "lag keeps growing while stalled"
    );

    cluster
        .topic_error(&env.dlq, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("clear");
    assert!(
        eventually(Duration::from_secs(90), || d.healthz() == Some(200)),
        "green again once it makes progress:\n{}",
        d.logs()
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
}

/// On the real broker: the watchdog reads the group's lag from tansu (it follows what is
/// sent and goes back to 0 once committed), and a healthy idle instance is never stalled.
#[test]
fn group_lag_is_read_from_the_broker_and_idle_is_healthy() {
    let env = TestEnv::new("watchdog-lag", 1);
    let mut d = Daemon::start(&env, "d", &FAST_WATCHDOG);
    d.wait_ready(Duration::from_secs(30));
    let producer = env.producer();
    for i in 0..20 {
        producer.send(&env.events, Some(&format!("k{i}")), b"not json");
    }
    producer.flush();
    wait_events_committed(&env, Duration::from_secs(30)).expect("committed");
    let lag = lag_sample(&env);
    assert!(
        eventually(Duration::from_secs(20), || d.metric(&lag) == Some(0.0)),
        "{:?}",
        d.metric(&lag)
    );
    // Idle for longer than the deadline: still healthy.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(d.healthz(), Some(200));
    assert_eq!(
        d.metric("eventmatchd_stalled{component=\"pipeline\"}"),
        Some(0.0)
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
}
