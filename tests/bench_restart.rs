//! Issue 18's benchmark, not a test (ignored; no timing is asserted): restart-to-first-
//! notification after `kill -9`, dynamic against static group membership, on the real broker
//! with librdkafka's default session timeout (45 s). Run with `scripts/bench-restart.sh`.

mod helpers;

use helpers::kafka::{read_until, Daemon, TestEnv, TestProducer};
use helpers::workload::{login_event, login_to_user};
use std::time::{Duration, Instant};

fn one_run(name: &str, instance: Option<&str>, tag: u32) -> Duration {
    let env = TestEnv::new(name, 3);
    env.producer().send_all(&env.control, login_to_user(tag));
    let opts: Vec<(&str, &str)> = instance
        .map(|id| vec![("EVENTMATCHD__KAFKA__INSTANCE_ID", id)])
        .unwrap_or_default();
    let mut d = Daemon::start(&env, "d1", &opts);
    d.wait_ready(Duration::from_secs(30));
    let p = TestProducer::new(&env.brokers);
    p.send_json(
        &env.events,
        &login_event("e6000000-0000-4000-8000-000000000001", 1),
    );
    p.flush();
    read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(60),
        |r| !r.is_empty(),
    );
    d.kill9();
    p.send_json(
        &env.events,
        &login_event("e6000000-0000-4000-8000-000000000002", 2),
    );
    p.flush();
    let restarted = Instant::now();
    let mut d = Daemon::start(&env, "d2", &opts);
    let recs = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(180),
        |r| r.len() >= 2,
    );
    let took = restarted.elapsed();
    assert!(recs.len() >= 2, "the second notification came");
    let _ = d.terminate(Duration::from_secs(30));
    took
}

#[test]
#[ignore = "a benchmark: run scripts/bench-restart.sh"]
fn restart_to_first_notification_dynamic_vs_static() {
    let mut rows = Vec::new();
    for run in 0..2u32 {
        let dynamic = one_run("bench-dyn", None, 6000000 + run);
        let stat = one_run("bench-static", Some("bench-0"), 6100000 + run);
        rows.push((dynamic, stat));
        eprintln!(
            "run {run}: restart to first notification: dynamic {:.1} s, static {:.1} s",
            dynamic.as_secs_f64(),
            stat.as_secs_f64()
        );
    }
    let mean = |f: fn(&(Duration, Duration)) -> Duration| {
        rows.iter().map(f).map(|d| d.as_secs_f64()).sum::<f64>() / rows.len() as f64
    };
    let (d, s) = (mean(|r| r.0), mean(|r| r.1));
    eprintln!(
        "SUMMARY restart_to_first_notification dynamic_mean_s={d:.1} static_mean_s={s:.1} ratio={:.1}x",
        d / s
    );
}
