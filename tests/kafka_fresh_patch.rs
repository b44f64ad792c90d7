//! Issue 9 item 4: the control owner acts on an index that has read the notification topic
//! up to where it was when the command came: a PATCH sent the moment a notification appears
//! on the topic never 404s (1,000 notifications, each PATCHed as soon as it is seen).
//!
//! Before the fix: the owner waited for the control topic only, and some PATCHes of fresh
//! notifications were answered 404.

mod helpers;

use helpers::kafka::{read_until, TestEnv, TestProducer};
use helpers::workload::{login_event, login_to_user};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const N: usize = 1_000;

#[test]
fn a_patch_right_after_the_notification_appears_never_404s() {
    let env = TestEnv::new("fresh", 3);
    let producer = env.producer();
    producer.send_all(&env.control, login_to_user(4000000));
    producer.flush();
    let mut d = env.start_daemon("d");
    d.wait_ready(Duration::from_secs(30));

    let events = {
        let (brokers, topic) = (env.brokers.clone(), env.events.clone());
        std::thread::spawn(move || {
            let p = TestProducer::new(&brokers);
            for n in 0..N {
                p.send_json(
                    &topic,
                    &login_event(&format!("e4000000-0000-4000-8000-{n:012}"), n as u64 + 1),
                );
                if n % 20 == 19 {
                    p.flush();
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            p.flush();
        })
    };
    let control = TestProducer::new(&env.brokers);
    let mut patched: HashSet<String> = HashSet::new();
    read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(120),
        |recs| {
            for rec in recs {
                if let Some(k) = &rec.key {
                    if patched.insert(k.clone()) {
                        control.send_json(
                        &env.control,
                        &json!({"id": format!("seen-{k}"), "method": "PATCH", "path": format!("/events/notifications/{k}/"), "body": {"seen": true}}),
                    );
                    }
                }
            }
            patched.len() >= N
        },
    );
    // Not flushed per record: the producer's own thread sends each within `linger.ms`, where
    // a flush (a delivery-report poll loop) would hold the reader ~100 ms per notification.
    control.flush();
    events.join().expect("events sent");
    assert_eq!(patched.len(), N, "every notification appeared");
    let results = read_until(
        &env.brokers,
        &env.results,
        Duration::from_secs(120),
        |recs| recs.len() >= N + 3,
    );
    let mut statuses: HashMap<u64, usize> = HashMap::new();
    for r in results
        .iter()
        .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with("seen-")))
    {
        let s = r
            .value
            .as_ref()
            .and_then(|v| v["status"].as_u64())
            .unwrap_or(0);
        *statuses.entry(s).or_default() += 1;
    }
    assert_eq!(statuses, HashMap::from([(200, N)]), "{}", d.logs().len());
    assert!(d.terminate(Duration::from_secs(30)).success());
}
