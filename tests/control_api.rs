//! Control commands (SPEC §2.3–2.5): every path and method, authentik's validation, statuses.

mod helpers;

use eventmatchd::control::CommandSource;
use eventmatchd::engine::OutTopic;
use eventmatchd::policy::{COMPONENT, META_MODEL_NAME, VERBOSE_NAME, VERBOSE_NAME_PLURAL};
use helpers::{engine, Control};
use serde_json::{json, Value};

#[test]
fn policy_create_returns_every_seed_field() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "failed logins", "action": "login_failed", "client_ip": "10.0.0.1",
               "app": "authentik.core", "model": "authentik_core.user", "execution_logging": true}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.version, 1);
    let b = &a.body;
    assert_eq!(b["name"], "failed logins");
    assert_eq!(b["action"], "login_failed");
    assert_eq!(b["client_ip"], "10.0.0.1");
    assert_eq!(b["app"], "authentik.core");
    assert_eq!(b["model"], "authentik_core.user");
    assert_eq!(b["execution_logging"], true);
    assert_eq!(b["component"], COMPONENT);
    assert_eq!(b["verbose_name"], VERBOSE_NAME);
    assert_eq!(b["verbose_name_plural"], VERBOSE_NAME_PLURAL);
    assert_eq!(b["meta_model_name"], META_MODEL_NAME);
    assert_eq!(b["bound_to"], 0);
    assert!(uuid::Uuid::parse_str(b["pk"].as_str().expect("pk")).is_ok());
}

#[test]
fn post_without_pk_derives_it_from_partition_and_offset() {
    let e1 = engine();
    let e2 = engine();
    let mut c1 = Control::new(&e1);
    let mut c2 = Control::new(&e2);
    let p1 = c1.policy(json!({"name": "a"}));
    let p2 = c2.policy(json!({"name": "a"}));
    assert_eq!(p1, p2, "two instances replaying the log agree on the pk");
    assert_eq!(
        p1,
        CommandSource {
            partition: 0,
            offset: 0
        }
        .derived_pk()
        .to_string()
    );
    let p3 = c1.policy(json!({"name": "b"}));
    assert_ne!(p1, p3);
}

#[test]
fn post_with_pk_uses_it_and_rejects_a_duplicate() {
    let e = engine();
    let mut c = Control::new(&e);
    let pk = "11111111-2222-3333-4444-555555555555";
    assert_eq!(c.policy(json!({"pk": pk, "name": "a"})), pk);
    let dup = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"pk": pk, "name": "b"}),
    );
    assert_eq!(dup.status, 400);
    assert!(dup.body["pk"][0]
        .as_str()
        .expect("msg")
        .contains("already exists"));
    assert_eq!(dup.version, 1, "version unchanged by an invalid command");
    let bad = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"pk": "nope", "name": "b"}),
    );
    assert_eq!(bad.body, json!({"pk": ["Must be a valid UUID."]}));
}

#[test]
fn policy_patch_null_clears_absent_keeps() {
    let e = engine();
    let mut c = Control::new(&e);
    let pk = c.policy(
        json!({"name": "p", "action": "login", "client_ip": "10.0.0.1", "app": "authentik.core"}),
    );
    let path = format!("/policies/event_matcher/{pk}/");
    let a = c.send("PATCH", &path, json!({"client_ip": null}));
    assert_eq!(a.status, 200);
    assert_eq!(a.body["client_ip"], Value::Null, "null clears");
    assert_eq!(a.body["action"], "login", "absent keeps");
    assert_eq!(a.body["app"], "authentik.core");
    assert_eq!(a.body["name"], "p");
    let a = c.send(
        "PATCH",
        &path,
        json!({"action": null, "app": null, "model": "authentik_core.group"}),
    );
    assert_eq!(
        (a.body["action"].clone(), a.body["app"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(a.body["model"], "authentik_core.group");
    assert_eq!(a.version, 3);
    // Read-only and unknown fields are ignored.
    let a = c.send("PATCH", &path, json!({"bound_to": 99, "component": "x", "pk": "00000000-0000-0000-0000-000000000000", "frobnicate": 1}));
    assert_eq!(a.status, 200);
    assert_eq!(a.body["bound_to"], 0);
    assert_eq!(a.body["component"], COMPONENT);
    assert_eq!(a.body["pk"], pk.as_str());
}

/// authentik's serializers (DRF `ModelSerializer.update`) set only the fields sent: a PUT
/// differs from a PATCH only in requiring the required fields.
#[test]
fn policy_put_keeps_absent_optional_fields() {
    let e = engine();
    let mut c = Control::new(&e);
    let pk = c.policy(json!({"name": "p", "action": "login", "execution_logging": true}));
    let path = format!("/policies/event_matcher/{pk}/");
    let a = c.send("PUT", &path, json!({"name": "q", "app": "authentik.flows"}));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["name"], "q");
    assert_eq!(a.body["action"], "login", "absent on PUT keeps its value");
    assert_eq!(a.body["execution_logging"], true);
    assert_eq!(a.body["app"], "authentik.flows");
    let a = c.send("PUT", &path, json!({"name": "q", "action": null}));
    assert_eq!(a.body["action"], Value::Null, "null on PUT clears");
    let a = c.send("PUT", &path, json!({"app": "authentik.flows"}));
    assert_eq!(a.status, 400);
    assert_eq!(a.body, json!({"name": ["This field is required."]}));
}

#[test]
fn policy_validation_names_each_bad_field() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "", "action": "log_in", "client_ip": "", "app": "authentik.nope",
               "model": 5, "execution_logging": "maybe"}),
    );
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body,
        json!({
            "name": ["This field may not be blank."],
            "action": ["\"log_in\" is not a valid choice."],
            "client_ip": ["This field may not be blank."],
            "app": ["\"authentik.nope\" is not a valid choice."],
            "model": ["\"5\" is not a valid choice."],
            "execution_logging": ["Must be a valid boolean."]
        })
    );
    assert!(e.snapshot().policies().is_empty(), "nothing created");
    assert_eq!(e.snapshot().version(), 0);
    let a = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"action": "login"}),
    );
    assert_eq!(a.body, json!({"name": ["This field is required."]}));
    let a = c.send("POST", "/policies/event_matcher/", json!({"name": null}));
    assert_eq!(a.body, json!({"name": ["This field may not be null."]}));
    let a = c.send("POST", "/policies/event_matcher/", json!({"name": true}));
    assert_eq!(a.body, json!({"name": ["Not a valid string."]}));
    let a = c.send("POST", "/policies/event_matcher/", json!({"name": [1]}));
    assert_eq!(a.body, json!({"name": ["Not a valid string."]}));
}

#[test]
fn catalog_extensions_are_accepted() {
    let e = eventmatchd::engine::Engine::new(
        eventmatchd::catalog::Catalog::new(&["future_action".into()], &[], &[]),
        10,
    );
    let mut c = Control::new(&e);
    c.policy(json!({"name": "p", "action": "future_action"}));
}

#[test]
fn unknown_uuid_is_404_and_unsupported_method_405() {
    let e = engine();
    let mut c = Control::new(&e);
    let missing = "/policies/event_matcher/6b0f9c4e-0000-4000-8000-000000000000/";
    for m in ["PATCH", "PUT", "DELETE"] {
        let a = c.send(m, missing, json!({"name": "x"}));
        assert_eq!(a.status, 404, "{m}");
        assert_eq!(a.body, json!({"detail": "Not found."}));
    }
    assert_eq!(
        c.send("PATCH", "/events/rules/not-a-uuid/", json!({}))
            .status,
        404
    );
    assert_eq!(c.send("POST", "/no/such/path/", json!({})).status, 404);
    let a = c.send("GET", "/policies/event_matcher/", json!({}));
    assert_eq!(a.status, 405);
    assert_eq!(a.body, json!({"detail": "Method \"GET\" not allowed."}));
    assert_eq!(
        c.send("PATCH", "/policies/event_matcher/", json!({}))
            .status,
        405
    );
    assert_eq!(c.send("POST", missing, json!({})).status, 405);
    assert_eq!(
        c.send(
            "PUT",
            "/events/notifications/6b0f9c4e-0000-4000-8000-000000000000/",
            json!({})
        )
        .status,
        404,
        "notification PUT is allowed (authentik's UpdateModelMixin); unknown uuid"
    );
    assert_eq!(
        c.send("DELETE", "/events/notifications/mark_all_seen/", json!({}))
            .status,
        405
    );
    assert_eq!(
        c.send("POST", "/events/notifications/", json!({})).status,
        405
    );
    // The /api/v3 prefix and the trailing slash are optional.
    assert_eq!(
        c.send(
            "POST",
            "/api/v3/policies/event_matcher",
            json!({"name": "x"})
        )
        .status,
        201
    );
}

#[test]
fn malformed_envelopes_are_400_with_the_id_echoed() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.raw(b"{not json");
    assert_eq!(a.status, 400);
    assert!(a.body["non_field_errors"][0]
        .as_str()
        .expect("msg")
        .starts_with("JSON parse error"));
    let a = c.raw(b"[1]");
    assert_eq!(
        a.body,
        json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
    );
    let a = c.raw(br#"{"id": "x1", "path": "/events/rules/"}"#);
    assert_eq!(a.body, json!({"method": ["This field is required."]}));
    let result = helpers::values(&a.outcome.records, OutTopic::Results);
    assert_eq!(result[0]["id"], "x1");
    assert_eq!(result[0]["path"], "/events/rules/");
    let a = c.raw(br#"{"method": "POST", "path": "/events/rules/", "body": [1]}"#);
    assert_eq!(
        a.body,
        json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
    );
    assert_eq!(e.snapshot().version(), 0);
}

#[test]
fn result_record_has_the_spec_shape() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.send("POST", "/events/rules/", json!({"name": "r"}));
    let results = helpers::values(&a.outcome.records, OutTopic::Results);
    assert_eq!(results.len(), 1);
    let keys: Vec<&str> = results[0]
        .as_object()
        .expect("obj")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["id", "method", "path", "status", "body", "version"]);
    assert_eq!(results[0]["id"], "req-0");
    let rec = a
        .outcome
        .records
        .iter()
        .find(|r| r.topic == OutTopic::Results)
        .expect("result");
    assert_eq!(
        rec.key.as_deref(),
        Some("req-0"),
        "results are keyed by request id"
    );
}

#[test]
fn rules_defaults_validation_and_unique_name() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.send("POST", "/events/rules/", json!({"name": "r1"}));
    assert_eq!(a.status, 201);
    assert_eq!(a.body["severity"], "notice");
    assert_eq!(a.body["enabled"], true);
    assert_eq!(a.body["destination_event_user"], false);
    assert_eq!(a.body["destination_group"], Value::Null);
    let pk = a.body["pk"].as_str().expect("pk").to_string();
    let dup = c.send("POST", "/events/rules/", json!({"name": "r1"}));
    assert_eq!(dup.status, 400);
    assert_eq!(
        dup.body,
        json!({"name": ["notification rule with this name already exists."]})
    );
    let other = c.rule(json!({"name": "r2"}));
    let clash = c.send(
        "PATCH",
        &format!("/events/rules/{other}/"),
        json!({"name": "r1"}),
    );
    assert_eq!(clash.status, 400, "renaming onto an existing name");
    let same = c.send(
        "PATCH",
        &format!("/events/rules/{pk}/"),
        json!({"name": "r1", "severity": "alert"}),
    );
    assert_eq!(same.status, 200, "keeping its own name is fine");
    assert_eq!(same.body["severity"], "alert");
    let bad = c.send(
        "POST",
        "/events/rules/",
        json!({"name": "r3", "severity": "critical", "destination_group": "x", "enabled": 2}),
    );
    assert_eq!(
        bad.body,
        json!({"severity": ["\"critical\" is not a valid choice."],
               "destination_group": ["Must be a valid UUID."],
               "enabled": ["Must be a valid boolean."]})
    );
    let g = "0c4f6d6e-1111-4222-8333-444455556666";
    let a = c.send(
        "PATCH",
        &format!("/events/rules/{pk}/"),
        json!({"destination_group": g, "destination_event_user": true}),
    );
    assert_eq!(a.body["destination_group"], g);
    let a = c.send(
        "PATCH",
        &format!("/events/rules/{pk}/"),
        json!({"destination_group": null}),
    );
    assert_eq!(a.body["destination_group"], Value::Null);
    assert_eq!(a.body["destination_event_user"], true);
}

#[test]
fn bindings_validate_references_and_update_bound_to() {
    let e = engine();
    let mut c = Control::new(&e);
    let p = c.policy(json!({"name": "p"}));
    let r = c.rule(json!({"name": "r"}));
    let missing = "6b0f9c4e-0000-4000-8000-000000000000";
    let a = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": missing, "target": r, "order": 0}),
    );
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body,
        json!({"policy": [format!("Invalid pk \"{missing}\" - object does not exist.")]})
    );
    let a = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": p, "target": missing, "order": 0}),
    );
    assert!(a.body.get("target").is_some(), "{}", a.body);
    let a = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": p, "target": r}),
    );
    assert_eq!(a.body, json!({"order": ["This field is required."]}));
    let a = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": p, "target": r, "order": "1.5"}),
    );
    assert_eq!(a.body, json!({"order": ["A valid integer is required."]}));

    let a = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": p, "target": r, "order": 0, "negate": true}),
    );
    assert_eq!(a.status, 201);
    assert_eq!(a.body["negate"], true);
    assert_eq!(a.body["enabled"], true);
    assert_eq!(a.body["failure_result"], false);
    let b = a.body["pk"].as_str().expect("pk").to_string();
    let dup = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": p, "target": r, "order": 0}),
    );
    assert_eq!(
        dup.body,
        json!({"non_field_errors": ["The fields policy, target, order must make a unique set."]})
    );
    c.bind(&p, &r, 1);

    let pol = c.send("PATCH", &format!("/policies/event_matcher/{p}/"), json!({}));
    assert_eq!(pol.body["bound_to"], 2);
    let a = c.send(
        "PATCH",
        &format!("/policies/bindings/{b}/"),
        json!({"enabled": false, "order": 5}),
    );
    assert_eq!(
        (a.body["enabled"].clone(), a.body["order"].clone()),
        (json!(false), json!(5))
    );
    assert_eq!(a.body["negate"], true, "absent keeps");
    let a = c.send(
        "PUT",
        &format!("/policies/bindings/{b}/"),
        json!({"policy": p, "target": r, "order": 7}),
    );
    assert_eq!(a.body["negate"], true, "PUT keeps absent optional fields");
    assert_eq!(a.body["order"], 7);
    assert_eq!(
        c.send("DELETE", &format!("/policies/bindings/{b}/"), json!(null))
            .status,
        204
    );
    let pol = c.send("PATCH", &format!("/policies/event_matcher/{p}/"), json!({}));
    assert_eq!(pol.body["bound_to"], 1);
}

#[test]
fn deleting_policy_or_rule_deletes_their_bindings() {
    let e = engine();
    let mut c = Control::new(&e);
    let p1 = c.policy(json!({"name": "p1"}));
    let p2 = c.policy(json!({"name": "p2"}));
    let r1 = c.rule(json!({"name": "r1"}));
    let r2 = c.rule(json!({"name": "r2"}));
    c.bind(&p1, &r1, 0);
    c.bind(&p2, &r1, 0);
    let b = c.bind(&p2, &r2, 0);
    let a = c.send(
        "DELETE",
        &format!("/policies/event_matcher/{p1}/"),
        json!(null),
    );
    assert_eq!(a.status, 204);
    assert_eq!(a.body, Value::Null);
    assert_eq!(e.snapshot().bindings().len(), 2);
    assert_eq!(
        c.send("DELETE", &format!("/events/rules/{r1}/"), json!(null))
            .status,
        204
    );
    let snap = e.snapshot();
    assert_eq!(
        snap.bindings()
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>(),
        vec![b]
    );
    snap.check_invariants().expect("consistent");
    assert_eq!(
        c.send("DELETE", &format!("/events/rules/{r1}/"), json!(null))
            .status,
        404
    );
}

#[test]
fn every_successful_command_bumps_the_version_once() {
    let e = engine();
    let mut c = Control::new(&e);
    let p = c.policy(json!({"name": "p"}));
    let r = c.rule(json!({"name": "r"}));
    c.bind(&p, &r, 0);
    assert_eq!(e.snapshot().version(), 3);
    let a = c.send(
        "PATCH",
        &format!("/events/rules/{r}/"),
        json!({"severity": "bogus"}),
    );
    assert_eq!((a.status, a.version), (400, 3));
    let a = c.send(
        "PATCH",
        &format!("/events/rules/{r}/"),
        json!({"severity": "warning"}),
    );
    assert_eq!((a.status, a.version), (200, 4));
    assert!(a.outcome.changed);
}

/// Issue 9 item 7: the method label of metrics is bounded, whatever a record carries.
#[test]
fn method_labels_are_bounded() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.send("FROBNICATE-1234", "/events/rules/", json!({}));
    assert_eq!(a.status, 405);
    assert_eq!(a.outcome.method, "other");
    let a = c.send("patch", "/events/rules/", json!({}));
    assert_eq!(a.outcome.method, "PATCH");
}
