//! Test workloads: a policy set and event streams, and what the engine expects from them
//! (the broker tests check the daemon against the same engine run in-process).
#![allow(dead_code)]

use eventmatchd::catalog::Catalog;
use eventmatchd::control::CommandSource;
use eventmatchd::engine::{Engine, OutTopic, RecordSource};
use serde_json::{json, Value};
use std::collections::HashMap;

pub const GROUP: &str = "9d4b2c1a-0000-4000-8000-00000000beef";

/// One policy on `login` bound to one rule that notifies the event's user (pks from `tag`,
/// so tests on one broker never share objects).
pub fn login_to_user(tag: u32) -> Vec<Value> {
    let p = format!("a{tag:07}-0000-4000-8000-000000000001");
    let r = format!("b{tag:07}-0000-4000-8000-000000000001");
    vec![
        json!({"id": "p", "method": "POST", "path": "/policies/event_matcher/", "body": {"pk": p, "name": "logins", "action": "login"}}),
        json!({"id": "r", "method": "POST", "path": "/events/rules/", "body": {"pk": r, "name": "to the user", "destination_event_user": true}}),
        json!({"id": "b", "method": "POST", "path": "/policies/bindings/", "body": {"policy": p, "target": r, "order": 0}}),
    ]
}

/// A `login` event of user `user` (it fires [`login_to_user`]).
pub fn login_event(pk: &str, user: u64) -> Value {
    json!({"pk": pk, "user": {"pk": user, "username": "u"}, "action": "login",
           "app": "authentik.events.signals", "context": {}, "client_ip": "10.0.0.1",
           "created": "2024-09-13T14:05:42.170Z", "expires": "2099-01-01T00:00:00Z"})
}

/// Policies, rules and bindings: failed logins to the user and a group; model changes of
/// users to the group; a negated binding; a logged policy.
pub fn commands() -> Vec<Value> {
    let p = |n: u32| format!("a0000000-0000-4000-8000-{n:012}");
    let r = |n: u32| format!("b0000000-0000-4000-8000-{n:012}");
    vec![
        json!({"id": "c1", "method": "POST", "path": "/policies/event_matcher/", "body": {"pk": p(1), "name": "failed logins", "action": "login_failed"}}),
        json!({"id": "c2", "method": "POST", "path": "/policies/event_matcher/", "body": {"pk": p(2), "name": "user changes", "action": "model_updated", "model": "authentik_core.user", "execution_logging": true}}),
        json!({"id": "c3", "method": "POST", "path": "/policies/event_matcher/", "body": {"pk": p(3), "name": "from the office", "client_ip": "10.0.0.1"}}),
        json!({"id": "c4", "method": "POST", "path": "/events/rules/", "body": {"pk": r(1), "name": "security", "severity": "alert", "destination_event_user": true, "destination_group": GROUP}}),
        json!({"id": "c5", "method": "POST", "path": "/events/rules/", "body": {"pk": r(2), "name": "audit", "severity": "notice", "destination_group": GROUP}}),
        json!({"id": "c6", "method": "POST", "path": "/policies/bindings/", "body": {"policy": p(1), "target": r(1), "order": 0}}),
        json!({"id": "c7", "method": "POST", "path": "/policies/bindings/", "body": {"policy": p(2), "target": r(2), "order": 0}}),
        // A user_write from anywhere but the office: negated.
        json!({"id": "c8", "method": "POST", "path": "/policies/event_matcher/", "body": {"pk": p(4), "name": "writes", "action": "user_write"}}),
        json!({"id": "c9", "method": "POST", "path": "/events/rules/", "body": {"pk": r(3), "name": "remote writes", "severity": "warning", "destination_event_user": true}}),
        json!({"id": "c10", "method": "POST", "path": "/policies/bindings/", "body": {"policy": p(4), "target": r(3), "order": 0}}),
        json!({"id": "c11", "method": "POST", "path": "/policies/bindings/", "body": {"policy": p(3), "target": r(3), "order": 1, "negate": true}}),
    ]
}

pub fn event_pk(n: u64) -> String {
    format!("e0000000-0000-4000-8000-{n:012}")
}

/// Event `n` of a deterministic mix: mostly logins, some failed logins, model updates and
/// writes (about 15% fire a rule).
pub fn event(n: u64) -> Value {
    let actions = [
        "login",
        "login",
        "login",
        "logout",
        "login_failed",
        "model_updated",
        "user_write",
        "authorize_application",
    ];
    let action = actions[(n % actions.len() as u64) as usize];
    let user = 1 + n % 50;
    let ip = if n.is_multiple_of(3) {
        "10.0.0.1"
    } else {
        "192.0.2.7"
    };
    let mut ctx = json!({"username": format!("user{user}"), "n": n});
    if action == "model_updated" {
        let model = if n.is_multiple_of(2) { "user" } else { "group" };
        ctx = json!({"model": {"app": "authentik_core", "model_name": model, "pk": user, "name": format!("user{user}")}});
    }
    json!({
        "pk": event_pk(n),
        "user": {"pk": user, "username": format!("user{user}")},
        "action": action,
        "app": "authentik.events.signals",
        "context": ctx,
        "client_ip": ip,
        "created": "2024-09-13T14:05:42.170Z",
        "expires": "2099-01-01T00:00:00Z",
    })
}

/// What the engine produces for `commands` then `events`, by topic: notifications by key.
pub struct Expected {
    pub notifications: HashMap<String, Value>,
    pub executions: usize,
    pub results: Vec<Value>,
}

pub fn expected(commands: &[Value], events: impl Iterator<Item = Value>) -> Expected {
    let engine = Engine::new(Catalog::default(), 10_000_000);
    let mut results = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        let out = engine.apply_command(
            c.to_string().as_bytes(),
            CommandSource {
                partition: 0,
                offset: i as i64,
            },
        );
        for r in out.records.iter().filter(|r| r.topic == OutTopic::Results) {
            results
                .push(serde_json::from_slice(r.value.as_deref().unwrap_or(b"null")).expect("json"));
        }
    }
    let mut notifications = HashMap::new();
    let mut executions = 0;
    for (i, e) in events.enumerate() {
        let src = RecordSource {
            topic: "x",
            partition: 0,
            offset: i as i64,
            key: None,
            timestamp: chrono::Utc::now(),
        };
        let out = engine.process_event(e.to_string().as_bytes(), &src);
        for r in out.records {
            match r.topic {
                OutTopic::Notifications => {
                    let v: Value = serde_json::from_slice(r.value.as_deref().unwrap_or(b"null"))
                        .expect("json");
                    notifications.insert(r.key.unwrap_or_default(), v);
                }
                OutTopic::Executions => executions += 1,
                _ => {}
            }
        }
    }
    Expected {
        notifications,
        executions,
        results,
    }
}
