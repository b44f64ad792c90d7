//! Events in, notifications out (SPEC §2.2, §2.5, §2.6): destinations, bodies, replay safety,
//! seen-flag updates, mark_all_seen, DELETE, executions and the dead-letter envelope.

mod helpers;

use eventmatchd::engine::OutTopic;
use helpers::{engine, event_json, process, values, Control};
use serde_json::{json, Value};

const EV1: &str = "5f0c6f5e-7d1b-4c3a-9e2f-000000000001";
const EV2: &str = "5f0c6f5e-7d1b-4c3a-9e2f-000000000002";
const GROUP: &str = "9d4b2c1a-0000-4000-8000-00000000beef";

/// A rule on failed logins to the event's user and a group.
fn failed_login_setup(c: &mut Control<'_>) -> (String, String) {
    let p = c.policy(json!({"name": "failed", "action": "login_failed"}));
    let r = c.rule(json!({"name": "alerts", "severity": "warning",
                          "destination_event_user": true, "destination_group": GROUP}));
    c.bind(&p, &r, 0);
    (p, r)
}

#[test]
fn a_fired_rule_notifies_user_and_group() {
    let e = engine();
    let mut c = Control::new(&e);
    let (_, r) = failed_login_setup(&mut c);
    let out = process(
        &e,
        &event_json(
            EV1,
            "login_failed",
            json!({"context": {"username": "jane", "attempts": 3}}),
        ),
    );
    let notes = values(&out.records, OutTopic::Notifications);
    assert_eq!(notes.len(), 2);
    for n in &notes {
        assert_eq!(n["severity"], "warning");
        assert_eq!(n["rule"], r.as_str());
        assert_eq!(n["seen"], false);
        assert_eq!(
            n["body"],
            "login_failed: {'username': 'jane', 'attempts': 3}"
        );
        assert_eq!(n["created"], "2024-09-13T14:05:42.170Z");
        assert_eq!(n["event"]["pk"], EV1);
        assert_eq!(n["event"]["action"], "login_failed");
    }
    assert_eq!(notes[0]["user"], json!({"pk": 42}));
    assert_eq!(notes[0]["group"], Value::Null);
    assert_eq!(notes[1]["user"], Value::Null);
    assert_eq!(notes[1]["group"], GROUP);
    // Keyed by notification pk.
    for r in out
        .records
        .iter()
        .filter(|r| r.topic == OutTopic::Notifications)
    {
        let v: Value = serde_json::from_slice(r.value.as_ref().expect("value")).expect("json");
        assert_eq!(r.key.as_deref(), v["pk"].as_str());
    }
    assert!(process(&e, &event_json(EV2, "login", json!({})))
        .records
        .is_empty());
}

#[test]
fn reprocessing_is_idempotent_and_never_resets_seen() {
    let e = engine();
    let mut c = Control::new(&e);
    failed_login_setup(&mut c);
    let ev = event_json(EV1, "login_failed", json!({}));
    let first = values(&process(&e, &ev).records, OutTopic::Notifications);
    let pk = first[0]["pk"].as_str().expect("pk").to_string();
    let a = c.send(
        "PATCH",
        &format!("/events/notifications/{pk}/"),
        json!({"seen": true}),
    );
    assert_eq!(a.status, 200);
    let again = process(&e, &ev);
    assert!(
        values(&again.records, OutTopic::Notifications).is_empty(),
        "a reprocessed event produces no second version"
    );
    assert!(
        e.index()
            .get(&pk.parse().expect("uuid"))
            .expect("held")
            .seen
    );

    // A second engine (another instance) processing the same event derives the same pks.
    let e2 = engine();
    let mut c2 = Control::new(&e2);
    failed_login_setup(&mut c2);
    let other = values(&process(&e2, &ev).records, OutTopic::Notifications);
    assert_eq!(first, other);
}

#[test]
fn seen_patch_emits_the_full_updated_record() {
    let e = engine();
    let mut c = Control::new(&e);
    failed_login_setup(&mut c);
    let ev = event_json(
        EV1,
        "login_failed",
        json!({"context": {"hyperlink": "https://ak/x", "hyperlink_label": "Open"}}),
    );
    let created = values(&process(&e, &ev).records, OutTopic::Notifications);
    let pk = created[0]["pk"].as_str().expect("pk").to_string();
    let path = format!("/events/notifications/{pk}/");
    let a = c.send(
        "PATCH",
        &path,
        json!({"seen": true, "body": "read-only", "severity": "alert", "event": {}}),
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.body["seen"], true);
    assert_eq!(a.body["body"], created[0]["body"], "body is read-only");
    assert_eq!(a.body["severity"], "warning", "severity is read-only");
    let emitted = values(&a.outcome.records, OutTopic::Notifications);
    assert_eq!(emitted.len(), 1);
    let mut expected = created[0].clone();
    expected["seen"] = json!(true);
    // The state's version is the command's control offset + 1.
    expected["version"] = json!(c.offset);
    assert_eq!(emitted[0], expected, "full new state, same key");
    assert_eq!(
        a.version,
        e.snapshot().version(),
        "notification commands leave the policy version"
    );

    let a = c.send(
        "PATCH",
        &path,
        json!({"hyperlink": null, "hyperlink_label": "Later"}),
    );
    assert_eq!(a.body["hyperlink"], Value::Null);
    assert_eq!(a.body["hyperlink_label"], "Later");
    assert_eq!(a.body["seen"], true, "absent keeps");
    let a = c.send("PATCH", &path, json!({"seen": "maybe"}));
    assert_eq!(a.body, json!({"seen": ["Must be a valid boolean."]}));
    let a = c.send(
        "PATCH",
        "/events/notifications/00000000-0000-4000-8000-000000000000/",
        json!({"seen": true}),
    );
    assert_eq!(a.status, 404);
    assert!(values(&a.outcome.records, OutTopic::Notifications).is_empty());
}

#[test]
fn mark_all_seen_emits_one_record_per_changed_notification() {
    let e = engine();
    let mut c = Control::new(&e);
    failed_login_setup(&mut c);
    process(&e, &event_json(EV1, "login_failed", json!({})));
    process(&e, &event_json(EV2, "login_failed", json!({})));
    let mut other_user = event_json(
        "5f0c6f5e-7d1b-4c3a-9e2f-000000000003",
        "login_failed",
        json!({}),
    );
    other_user["user"] = json!({"pk": 43});
    process(&e, &other_user);
    let a = c.send(
        "POST",
        "/events/notifications/mark_all_seen/",
        json!({"user": 42}),
    );
    assert_eq!(a.status, 204);
    let changed = values(&a.outcome.records, OutTopic::Notifications);
    assert_eq!(
        changed.len(),
        2,
        "user 42's two, not the group's or user 43's"
    );
    assert!(changed
        .iter()
        .all(|n| n["seen"] == true && n["user"]["pk"] == 42));
    let again = c.send(
        "POST",
        "/events/notifications/mark_all_seen/",
        json!({"user": "42"}),
    );
    assert!(
        values(&again.outcome.records, OutTopic::Notifications).is_empty(),
        "nothing changed"
    );
    let bad = c.send("POST", "/events/notifications/mark_all_seen/", json!({}));
    assert_eq!(bad.body, json!({"user": ["This field is required."]}));
}

#[test]
fn delete_emits_a_tombstone() {
    let e = engine();
    let mut c = Control::new(&e);
    failed_login_setup(&mut c);
    let n = values(
        &process(&e, &event_json(EV1, "login_failed", json!({}))).records,
        OutTopic::Notifications,
    );
    let pk = n[0]["pk"].as_str().expect("pk").to_string();
    let a = c.send(
        "DELETE",
        &format!("/events/notifications/{pk}/"),
        json!(null),
    );
    assert_eq!(a.status, 204);
    let rec = a
        .outcome
        .records
        .iter()
        .find(|r| r.topic == OutTopic::Notifications)
        .expect("tombstone");
    assert_eq!(rec.key.as_deref(), Some(pk.as_str()));
    assert_eq!(rec.value, None);
    assert_eq!(
        c.send(
            "DELETE",
            &format!("/events/notifications/{pk}/"),
            json!(null)
        )
        .status,
        404
    );
}

#[test]
fn body_uses_context_message_when_present() {
    let e = engine();
    let mut c = Control::new(&e);
    failed_login_setup(&mut c);
    let out = process(
        &e,
        &event_json(
            EV1,
            "login_failed",
            json!({"context": {"message": "Bad password for jane"}}),
        ),
    );
    assert_eq!(
        values(&out.records, OutTopic::Notifications)[0]["body"],
        "Bad password for jane"
    );
}

#[test]
fn model_policy_matches_model_events_only() {
    let e = engine();
    let mut c = Control::new(&e);
    let p = c.policy(
        json!({"name": "user changes", "action": "model_updated", "model": "authentik_core.user"}),
    );
    let r = c.rule(json!({"name": "r", "destination_group": GROUP}));
    c.bind(&p, &r, 0);
    let with_model = event_json(
        EV1,
        "model_updated",
        json!({"context": {"model": {"app": "authentik_core", "model_name": "user", "pk": 5, "name": "jane"}}}),
    );
    assert_eq!(
        values(&process(&e, &with_model).records, OutTopic::Notifications).len(),
        1
    );
    let without = event_json(EV2, "model_updated", json!({}));
    assert!(process(&e, &without).records.is_empty());
}

#[test]
fn execution_logging_emits_policy_execution_events_that_the_loop_guard_stops() {
    let e = engine();
    let mut c = Control::new(&e);
    let p = c.policy(json!({"name": "logged", "action": "login", "execution_logging": true}));
    let r = c.rule(json!({"name": "r", "destination_group": GROUP}));
    c.bind(&p, &r, 0);
    let out = process(&e, &event_json(EV1, "login", json!({})));
    let execs = values(&out.records, OutTopic::Executions);
    assert_eq!(execs.len(), 1);
    let x = &execs[0];
    assert_eq!(x["action"], "policy_execution");
    assert_eq!(x["context"]["policy_uuid"], p.replace('-', ""));
    assert_eq!(x["context"]["result"]["passing"], true);
    assert_eq!(x["user"]["pk"], 42);
    // Feeding the execution back in (authentik would store it as an event) is guarded.
    let back = e.process_event(x.to_string().as_bytes(), &helpers::source(1));
    assert!(back.guarded);
    assert!(
        back.records.is_empty(),
        "no notification, no further execution"
    );
}

#[test]
fn invalid_events_become_dead_letters_with_source_and_original_bytes() {
    let e = engine();
    let payload = br#"{"pk": "5f0c6f5e-7d1b-4c3a-9e2f-000000000001", "app": "a"}"#;
    let src = eventmatchd::engine::RecordSource {
        key: Some(b"k1"),
        ..helpers::source(77)
    };
    let out = e.process_event(payload, &src);
    assert_eq!(
        out.invalid.as_ref().map(|e| e.reason()),
        Some("missing_field")
    );
    let dlq = values(&out.records, OutTopic::Dlq);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["reason"], "missing_field");
    assert!(dlq[0]["error"].as_str().expect("error").contains("action"));
    assert_eq!(
        dlq[0]["source"],
        json!({"topic": "authentik.events", "partition": 0, "offset": 77})
    );
    assert_eq!(
        dlq[0]["payload"].as_str().expect("payload").as_bytes(),
        payload
    );
    assert_eq!(dlq[0]["key"], "k1");
    let bin = e.process_event(&[0xff, 0x00, 0x7b], &helpers::source(78));
    let dlq = values(&bin.records, OutTopic::Dlq);
    assert_eq!(dlq[0]["reason"], "not_utf8");
    assert_eq!(dlq[0]["payload_base64"], "/wB7");
}

#[test]
fn live_patch_is_seen_by_the_next_event() {
    let e = engine();
    let mut c = Control::new(&e);
    let (p, _) = failed_login_setup(&mut c);
    assert!(process(&e, &event_json(EV1, "login", json!({})))
        .records
        .is_empty());
    c.send(
        "PATCH",
        &format!("/policies/event_matcher/{p}/"),
        json!({"action": "login"}),
    );
    assert_eq!(
        values(
            &process(&e, &event_json(EV2, "login", json!({}))).records,
            OutTopic::Notifications
        )
        .len(),
        2
    );
}

#[test]
fn restore_from_the_output_topic_rebuilds_the_index() {
    let e = engine();
    let mut c = Control::new(&e);
    failed_login_setup(&mut c);
    let out = process(&e, &event_json(EV1, "login_failed", json!({})));
    let recs: Vec<_> = out
        .records
        .iter()
        .filter(|r| r.topic == OutTopic::Notifications)
        .cloned()
        .collect();
    let pk = recs[0].key.clone().expect("key");
    let seen = c.send(
        "PATCH",
        &format!("/events/notifications/{pk}/"),
        json!({"seen": true}),
    );
    let update = seen
        .outcome
        .records
        .iter()
        .find(|r| r.topic == OutTopic::Notifications)
        .cloned()
        .expect("update");

    // A restarted instance reads the topic: the original records, then the update.
    let fresh = engine();
    let mut fc = Control::new(&fresh);
    failed_login_setup(&mut fc);
    for r in recs.iter().chain(std::iter::once(&update)) {
        let header = r.rendered.map(|r| r.header().as_str().to_string());
        assert!(
            header.is_some(),
            "every notification record says how it was rendered"
        );
        assert!(fresh.restore_notification(
            r.key.as_deref().map(str::as_bytes),
            r.value.as_deref(),
            header.as_deref().map(str::as_bytes)
        ));
    }
    assert!(!fresh.restore_notification(Some(b"k"), Some(b"not a notification"), None));
    assert!(
        fresh
            .index()
            .get(&pk.parse().expect("uuid"))
            .expect("held")
            .seen
    );
    let replayed = process(&fresh, &event_json(EV1, "login_failed", json!({})));
    assert!(
        values(&replayed.records, OutTopic::Notifications).is_empty(),
        "seen not reset after restart"
    );
    // A tombstone removes it.
    assert!(fresh.restore_notification(Some(pk.as_bytes()), None, None));
    assert!(fresh.index().get(&pk.parse().expect("uuid")).is_none());
}
