//! Issue 9 item 1, without a broker: the engine never produces a record over the limit.

mod helpers;

use eventmatchd::catalog::Catalog;
use eventmatchd::engine::{Engine, OutTopic};
use helpers::{event_json, process, values, Control};
use serde_json::json;

fn small_engine() -> Engine {
    Engine::new(Catalog::default(), 1000).with_max_record_bytes(20_000)
}

#[test]
fn a_dead_letter_too_large_is_compact() {
    let e = small_engine();
    let payload = vec![1u8; 10_000]; // each byte escapes to \u0001: a 60 kB envelope
    let out = e.process_event(&payload, &helpers::source(3));
    let dl = values(&out.records, OutTopic::Dlq);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["reason"], "not_json");
    assert_eq!(dl[0]["payload_size"], 10_000);
    assert_eq!(dl[0]["truncated"], true);
    assert_eq!(dl[0]["source"]["offset"], 3);
    assert!(out.records[0].value.as_ref().expect("value").len() < 20_000);
    // A small one keeps the whole payload.
    let out = e.process_event(b"nope", &helpers::source(4));
    assert_eq!(values(&out.records, OutTopic::Dlq)[0]["payload"], "nope");
}

#[test]
fn an_output_too_large_becomes_one_compact_dead_letter_and_is_not_held() {
    let e = small_engine();
    let mut c = Control::new(&e);
    let p = c.policy(json!({"name": "p", "action": "login", "execution_logging": true}));
    let r = c.rule(json!({"name": "r", "destination_event_user": true}));
    c.bind(&p, &r, 0);
    let ev = event_json(
        "e0000000-0000-4000-8000-000000000001",
        "login",
        json!({"context": {"blob": "x".repeat(12_000)}}),
    );
    let out = process(&e, &ev);
    assert!(out.oversized);
    assert!(values(&out.records, OutTopic::Notifications).is_empty());
    let dl = values(&out.records, OutTopic::Dlq);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["reason"], "output_too_large");
    assert!(
        e.index().is_empty(),
        "a notification never written is not held"
    );
    assert!(out.notifications.is_empty());
    // The execution record was small enough and is kept.
    assert_eq!(values(&out.records, OutTopic::Executions).len(), 1);
}

#[test]
fn a_command_whose_answer_is_too_large_is_a_413_and_changes_nothing() {
    let e = small_engine();
    let mut c = Control::new(&e);
    let a = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "n".repeat(25_000)}),
    );
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.version, 0);
    assert!(e.snapshot().policies().is_empty());
    assert!(a
        .outcome
        .records
        .iter()
        .all(|r| r.value.as_ref().is_none_or(|v| v.len() < 20_000)));
}
