//! Helpers shared by the integration tests (each test file includes this with `mod helpers;`).
#![allow(dead_code)]

pub mod api;
pub mod kafka;
pub mod scenarios;
pub mod workload;

use eventmatchd::catalog::Catalog;
use eventmatchd::control::CommandSource;
use eventmatchd::engine::{ControlOutcome, Engine, EventOutcome, OutTopic, RecordSource};
use serde_json::{json, Value};

/// A fresh engine with the seed's catalog.
pub fn engine() -> Engine {
    Engine::new(Catalog::default(), 100_000)
}

/// Sends commands as a control topic would: each gets the next offset.
pub struct Control<'a> {
    pub engine: &'a Engine,
    pub offset: i64,
}

/// The result record of a command, decoded.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub version: u64,
    pub outcome: ControlOutcome,
}

impl<'a> Control<'a> {
    pub fn new(engine: &'a Engine) -> Self {
        Self { engine, offset: 0 }
    }

    pub fn raw(&mut self, payload: &[u8]) -> Answer {
        let source = CommandSource {
            partition: 0,
            offset: self.offset,
        };
        self.offset += 1;
        let outcome = self.engine.apply_command(payload, source);
        let result = outcome
            .records
            .iter()
            .find(|r| r.topic == OutTopic::Results)
            .and_then(|r| r.value.as_ref())
            .map(|v| serde_json::from_slice::<Value>(v).expect("result is JSON"))
            .expect("every command yields a result record");
        Answer {
            status: result["status"].as_u64().expect("status") as u16,
            body: result["body"].clone(),
            version: result["version"].as_u64().expect("version"),
            outcome,
        }
    }

    pub fn send(&mut self, method: &str, path: &str, body: Value) -> Answer {
        self.raw(json!({"id": format!("req-{}", self.offset), "method": method, "path": path, "body": body})
            .to_string()
            .as_bytes())
    }

    /// POSTs and returns the created resource's pk, asserting a 201.
    pub fn create(&mut self, path: &str, body: Value) -> String {
        let a = self.send("POST", path, body.clone());
        assert_eq!(a.status, 201, "POST {path} {body}: {}", a.body);
        a.body["pk"].as_str().expect("pk").to_string()
    }

    pub fn policy(&mut self, body: Value) -> String {
        self.create("/policies/event_matcher/", body)
    }

    pub fn rule(&mut self, body: Value) -> String {
        self.create("/events/rules/", body)
    }

    pub fn bind(&mut self, policy: &str, rule: &str, order: i64) -> String {
        self.create(
            "/policies/bindings/",
            json!({"policy": policy, "target": rule, "order": order}),
        )
    }
}

pub fn event_json(pk: &str, action: &str, extra: Value) -> Value {
    let mut v = json!({
        "pk": pk,
        "user": {"pk": 42, "username": "jane", "email": "jane@example.com"},
        "action": action,
        "app": "authentik.events.signals",
        "context": {},
        "client_ip": "192.0.2.10",
        "created": "2024-09-13T14:05:42.170Z",
        "expires": "2099-09-13T14:05:42.170Z",
    });
    if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in more {
            obj.insert(k.clone(), val.clone());
        }
    }
    v
}

pub fn source(offset: i64) -> RecordSource<'static> {
    RecordSource {
        topic: "authentik.events",
        partition: 0,
        offset,
        key: None,
        timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .expect("ts")
            .with_timezone(&chrono::Utc),
    }
}

pub fn process(engine: &Engine, event: &Value) -> EventOutcome {
    engine.process_event(event.to_string().as_bytes(), &source(0))
}

/// Decoded values of the records an outcome produced on one topic.
pub fn values(records: &[eventmatchd::engine::OutRecord], topic: OutTopic) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r.topic == topic)
        .map(|r| match &r.value {
            Some(v) => serde_json::from_slice(v).expect("JSON value"),
            None => Value::Null,
        })
        .collect()
}

/// What one event causes under `set`, the matcher's way and the linear reference's:
/// `(fired rule pks, (binding pk, passing) of each execution, sorted)`, for property tests
/// that compare the two.
pub type Outcome = (Vec<uuid::Uuid>, Vec<(uuid::Uuid, bool)>);

pub fn indexed_and_linear(
    set: &eventmatchd::policyset::PolicySet,
    e: &eventmatchd::events::Event,
) -> (Outcome, Outcome) {
    let outcome = |ev: eventmatchd::matcher::Evaluation| -> Outcome {
        let mut runs: Vec<_> = ev
            .executions
            .iter()
            .map(|x| (x.binding.pk, x.passing))
            .collect();
        runs.sort();
        (ev.fired.iter().map(|r| r.pk).collect(), runs)
    };
    let linear =
        eventmatchd::matcher::evaluate_linear(set.policies(), set.rules(), set.bindings(), e);
    (outcome(set.matcher().evaluate(e)), outcome(linear))
}
