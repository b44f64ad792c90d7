//! authentik fidelity (issue 10): one test per behaviour where eventmatchd now follows
//! authentik's own code, each citing the authentik source it was written from
//! (goauthentik/authentik `main` of 2026-04 and the 2026.8.5 API client).

mod helpers;

use eventmatchd::engine::{Engine, OutTopic};
use helpers::{engine, event_json, process, values, Control};
use serde_json::{json, Value};

const G: &str = "c0000000-0000-4000-8000-000000000001";

/// `authentik/policies/models.py`: `Policy.name = models.TextField(unique=True)`; DRF's
/// UniqueValidator answers with the model's message.
#[test]
fn item1_policy_names_are_unique() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.policy(json!({"name": "dup"}));
    let b = c.policy(json!({"name": "other"}));
    let want = json!({"name": ["policy with this name already exists."]});
    let post = c.send("POST", "/policies/event_matcher/", json!({"name": "dup"}));
    assert_eq!((post.status, post.body), (400, want.clone()));
    for m in ["PATCH", "PUT"] {
        let r = c.send(
            m,
            &format!("/policies/event_matcher/{b}/"),
            json!({"name": "dup"}),
        );
        assert_eq!((r.status, r.body), (400, want.clone()), "{m}");
    }
    let own = c.send(
        "PUT",
        &format!("/policies/event_matcher/{a}/"),
        json!({"name": "dup"}),
    );
    assert_eq!(own.status, 200, "keeping its own name");
    // Names are compared after DRF trims them.
    let padded = c.send("POST", "/policies/event_matcher/", json!({"name": " dup "}));
    assert_eq!(padded.status, 400);
}

/// DRF `ModelSerializer.update` sets only the validated fields: PUT of a rule with only
/// `name` keeps `destination_group` and `destination_event_user`
/// (`authentik/events/api/notification_rules.py`).
#[test]
fn item2_put_does_not_reset_absent_fields() {
    let e = engine();
    let mut c = Control::new(&e);
    let r = c.rule(
        json!({"name": "r", "destination_group": G, "destination_event_user": true,
                          "severity": "alert"}),
    );
    let a = c.send("PUT", &format!("/events/rules/{r}/"), json!({"name": "r2"}));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["destination_group"], G);
    assert_eq!(a.body["destination_event_user"], true);
    assert_eq!(a.body["severity"], "alert");
    assert_eq!(a.body["name"], "r2");
    let a = c.send(
        "PUT",
        &format!("/events/rules/{r}/"),
        json!({"severity": "notice"}),
    );
    assert_eq!(
        a.body,
        json!({"name": ["This field is required."]}),
        "PUT still requires name"
    );
}

/// DRF `fields.py`: `CharField` (trim_whitespace, numbers accepted, blank, NUL),
/// `BooleanField.TRUE_VALUES`/`FALSE_VALUES`, `IntegerField` (`re_decimal`);
/// `authentik/events/models.py`: `Notification.hyperlink` `max_length=4096`;
/// `authentik/events/api/notifications.py`: the viewset is an `UpdateModelMixin` (PUT).
#[test]
fn item3_drf_input_handling() {
    let e = engine();
    let mut c = Control::new(&e);
    let blank = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "   ", "client_ip": " \t "}),
    );
    assert_eq!(
        blank.body,
        json!({"name": ["This field may not be blank."],
               "client_ip": ["This field may not be blank."]})
    );
    let p = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "  p  ", "client_ip": 5, "execution_logging": "yes"}),
    );
    assert_eq!(p.status, 201, "{}", p.body);
    assert_eq!(
        (p.body["name"].clone(), p.body["client_ip"].clone()),
        (json!("p"), json!("5"))
    );
    assert_eq!(p.body["execution_logging"], true);
    let nul = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "a\u{0}b"}),
    );
    assert_eq!(
        nul.body,
        json!({"name": ["Null characters are not allowed."]})
    );
    let pk = p.body["pk"].as_str().expect("pk").to_string();
    for (v, want) in [
        (json!("false"), false),
        (json!(1), true),
        (json!("0"), false),
        (json!("on"), true),
    ] {
        let a = c.send(
            "PATCH",
            &format!("/policies/event_matcher/{pk}/"),
            json!({"execution_logging": v}),
        );
        assert_eq!(a.body["execution_logging"], want, "{v}");
    }
    let r = c.rule(json!({"name": "r", "destination_group": G}));
    let b = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": pk, "target": r, "order": "5"}),
    );
    assert_eq!(b.body["order"], 5, "{}", b.body);
    let b = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": pk, "target": r, "order": 6.0}),
    );
    assert_eq!(b.body["order"], 6, "{}", b.body);

    // hyperlink: 4096 characters at most; notification PUT has PATCH's effect.
    let login = c.policy(json!({"name": "login", "action": "login"}));
    c.bind(&login, &r, 0);
    let out = process(
        &e,
        &event_json("e0000000-0000-4000-8000-000000000001", "login", json!({})),
    );
    let n = values(&out.records, OutTopic::Notifications);
    let path = format!(
        "/events/notifications/{}/",
        n[0]["pk"].as_str().expect("pk")
    );
    let long = "x".repeat(4097);
    let a = c.send("PATCH", &path, json!({"hyperlink": long}));
    assert_eq!(
        a.body,
        json!({"hyperlink": ["Ensure this field has no more than 4096 characters."]})
    );
    let a = c.send("PATCH", &path, json!({"hyperlink": "é".repeat(4096)}));
    assert_eq!(a.status, 200, "4096 characters (not bytes) fit");
    let a = c.send("PUT", &path, json!({"seen": "true"}));
    assert_eq!((a.status, a.body["seen"].clone()), (200, json!(true)));
    assert_eq!(
        a.body["hyperlink"],
        "é".repeat(4096),
        "PUT keeps what it does not send"
    );
}

/// `authentik/policies/api/bindings.py` `PolicyBindingSerializer.validate` (targets sorted:
/// 'group', 'policy', 'user') and its `Meta.fields`; `expires`/`expiring` from the 2026.8.5
/// client's `PolicyBinding` model.
#[test]
fn item4_bindings_targets_and_response_shape() {
    let e = engine();
    let mut c = Control::new(&e);
    let p = c.policy(json!({"name": "p"}));
    let r = c.rule(json!({"name": "r"}));
    let none = c.send(
        "POST",
        "/policies/bindings/",
        json!({"target": r, "order": 0}),
    );
    assert_eq!(
        none.body,
        json!({"non_field_errors": ["One of 'group', 'policy', 'user' must be set."]})
    );
    for extra in [json!({"group": G}), json!({"user": 7})] {
        let mut body = json!({"policy": p, "target": r, "order": 0});
        for (k, v) in extra.as_object().expect("obj") {
            body[k] = v.clone();
        }
        let many = c.send("POST", "/policies/bindings/", body);
        assert_eq!(
            many.body,
            json!({"non_field_errors": ["Only one of 'group', 'policy', 'user' can be set."]}),
            "{extra}"
        );
    }
    let group_only = c.send(
        "POST",
        "/policies/bindings/",
        json!({"group": G, "target": r, "order": 0}),
    );
    assert_eq!(
        group_only.status, 400,
        "no directory to evaluate a group binding against"
    );
    assert!(group_only.body.get("group").is_some());

    let ok = c.send(
        "POST",
        "/policies/bindings/",
        json!({"policy": p, "target": r, "order": 0}),
    );
    assert_eq!(ok.status, 201);
    let keys: Vec<&str> = ok
        .body
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "pk",
            "policy",
            "group",
            "user",
            "policy_obj",
            "group_obj",
            "user_obj",
            "target",
            "negate",
            "enabled",
            "order",
            "timeout",
            "failure_result",
            "expires",
            "expiring"
        ]
    );
    assert_eq!(ok.body["timeout"], 30);
    assert_eq!(ok.body["expiring"], false);
    for k in ["group", "user", "group_obj", "user_obj", "expires"] {
        assert_eq!(ok.body[k], Value::Null, "{k}");
    }
    let po = &ok.body["policy_obj"];
    let po_keys: Vec<&str> = po
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        po_keys,
        [
            "pk",
            "name",
            "execution_logging",
            "component",
            "verbose_name",
            "verbose_name_plural",
            "meta_model_name",
            "bound_to"
        ]
    );
    assert_eq!(
        (po["pk"].clone(), po["bound_to"].clone()),
        (json!(p), json!(1))
    );
    let t = c.send(
        "PATCH",
        &format!(
            "/policies/bindings/{}/",
            ok.body["pk"].as_str().expect("pk")
        ),
        json!({"timeout": -1}),
    );
    assert_eq!(
        t.body,
        json!({"timeout": ["Ensure this value is greater than or equal to 0."]})
    );
}

/// `authentik/events/api/notification_rules.py` `NotificationRuleSerializer.Meta.fields`;
/// `group` is `destination_group`'s name in authentik <= 2025.6.
#[test]
fn item5_rules_transports_group_obj_and_old_field_name() {
    let e = engine();
    let mut c = Control::new(&e);
    let t = "d0000000-0000-4000-8000-000000000001";
    let a = c.send(
        "POST",
        "/events/rules/",
        json!({"name": "r", "transports": [t], "group": G}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let keys: Vec<&str> = a
        .body
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "pk",
            "name",
            "transports",
            "severity",
            "destination_group",
            "destination_group_obj",
            "destination_event_user",
            "enabled"
        ]
    );
    assert_eq!(a.body["transports"], json!([t]));
    assert_eq!(
        a.body["destination_group"], G,
        "`group` is accepted as the old name"
    );
    assert_eq!(a.body["destination_group_obj"], Value::Null);
    let pk = a.body["pk"].as_str().expect("pk").to_string();
    let b = c.send(
        "PATCH",
        &format!("/events/rules/{pk}/"),
        json!({"transports": "x"}),
    );
    assert_eq!(
        b.body,
        json!({"transports": ["Expected a list of items but got type \"str\"."]})
    );
    let b = c.send(
        "PATCH",
        &format!("/events/rules/{pk}/"),
        json!({"name": "r"}),
    );
    assert_eq!(b.body["transports"], json!([t]), "kept when absent");
}

/// authentik 2026.5 `EventMatcherPolicy.query` (migration 0027): nullable text, not checked
/// on write (issue 17 replaced the interim 400); responses carry it, null when unset.
#[test]
fn item6_query_is_stored_and_rendered() {
    let e = engine();
    let mut c = Control::new(&e);
    let a = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "q", "query": "action = \"login\""}),
    );
    assert_eq!(
        (a.status, a.body["query"].clone()),
        (201, json!("action = \"login\""))
    );
    let broken = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "q2", "query": "not a query"}),
    );
    assert_eq!(
        broken.status, 201,
        "authentik stores a query that does not compile"
    );
    let a = c.send(
        "POST",
        "/policies/event_matcher/",
        json!({"name": "q3", "query": null}),
    );
    assert_eq!((a.status, a.body["query"].clone()), (201, Value::Null));
    let pk = a.body["pk"].as_str().expect("pk").to_string();
    for (body, want) in [
        (
            json!({"query": "   "}),
            json!({"query": ["This field may not be blank."]}),
        ),
        (
            json!({"query": true}),
            json!({"query": ["Not a valid string."]}),
        ),
        (
            json!({"query": ["x"]}),
            json!({"query": ["Not a valid string."]}),
        ),
    ] {
        let r = c.send(
            "PATCH",
            &format!("/policies/event_matcher/{pk}/"),
            body.clone(),
        );
        assert_eq!((r.status, r.body), (400, want), "{body}");
    }
    let r = c.send(
        "PATCH",
        &format!("/policies/event_matcher/{pk}/"),
        json!({"query": 5}),
    );
    assert_eq!(
        (r.status, r.body["query"].clone()),
        (200, json!("5")),
        "numbers become strings"
    );
}

fn fire_setup(e: &Engine, policy: Value, negate: bool, rule: Value) -> String {
    let mut c = Control::new(e);
    let p = c.policy(policy);
    let r = c.rule(rule);
    c.create(
        "/policies/bindings/",
        json!({"policy": p, "target": r, "order": 0, "negate": negate}),
    );
    p
}

/// `event_matcher/models.py` `passes_model`: `event.context.get("model", {})` then `.get`,
/// which raises for a non-dict; `policies/process.py` `PolicyProcess.run` catches it
/// (`PolicyResult(False, str(exc))`) after `execute` skipped negate and the execution event.
/// `events/models.py` `destination_users`: `event.user.get("pk")` is tested for truth.
/// `events/tasks.py` `notification_transport`: `Notification(body=event.summary)` with a
/// non-null body column. `Event.hyperlink` is `context.get("hyperlink")`, stored in a TextField.
#[test]
fn item7_matching_edge_cases() {
    // A non-object context.model: the negated binding is false, no execution logged.
    for model in [
        json!("authentik_core.user"),
        json!(5),
        json!(null),
        json!([]),
    ] {
        let e = engine();
        fire_setup(
            &e,
            json!({"name": "m", "model": "authentik_core.user", "execution_logging": true}),
            true,
            json!({"name": "r", "destination_group": G}),
        );
        let out = process(
            &e,
            &event_json(
                "e0000000-0000-4000-8000-000000000002",
                "login",
                json!({"context": {"model": model}}),
            ),
        );
        assert!(
            out.fired.is_empty(),
            "{model}: negate is not applied to a raising policy"
        );
        assert_eq!(out.executions, 0, "{model}: no execution event");
        // Without context.model at all, the negated binding passes as usual.
        let out = process(
            &e,
            &event_json("e0000000-0000-4000-8000-000000000003", "login", json!({})),
        );
        assert_eq!(out.fired.len(), 1);
        assert_eq!(out.executions, 1);
    }
    // A policy without a model criterion is unaffected by a malformed context.model.
    let e = engine();
    fire_setup(
        &e,
        json!({"name": "a", "action": "login"}),
        false,
        json!({"name": "r", "destination_group": G}),
    );
    let out = process(
        &e,
        &event_json(
            "e0000000-0000-4000-8000-000000000004",
            "login",
            json!({"context": {"model": "x"}}),
        ),
    );
    assert_eq!(out.fired.len(), 1);

    // Falsy user pks get no user notification; the group one still goes out.
    let e = engine();
    fire_setup(
        &e,
        json!({"name": "a", "action": "login"}),
        false,
        json!({"name": "r", "destination_group": G, "destination_event_user": true}),
    );
    for (i, pk) in [json!(0), json!(""), json!(false)].into_iter().enumerate() {
        let ev = event_json(
            &format!("e0000000-0000-4000-8000-00000000001{i}"),
            "login",
            json!({"user": {"pk": pk, "username": "x"}}),
        );
        let n = values(&process(&e, &ev).records, OutTopic::Notifications);
        assert_eq!(n.len(), 1, "{pk}");
        assert_eq!(n[0]["group"], G);
    }

    // context.message null: no notification, counted.
    let ev = event_json(
        "e0000000-0000-4000-8000-000000000020",
        "login",
        json!({"context": {"message": null}}),
    );
    let out = process(&e, &ev);
    assert!(values(&out.records, OutTopic::Notifications).is_empty());
    assert_eq!(out.null_body, 1);

    // A non-string hyperlink is str() of it.
    let ev = event_json(
        "e0000000-0000-4000-8000-000000000021",
        "login",
        json!({"context": {"hyperlink": 12.5, "hyperlink_label": false}}),
    );
    let n = values(&process(&e, &ev).records, OutTopic::Notifications);
    assert_eq!(
        (n[0]["hyperlink"].clone(), n[0]["hyperlink_label"].clone()),
        (json!("12.5"), json!("False"))
    );
}

/// `policies/process.py` `PolicyProcess.create_event` + `events/tasks.py`
/// `event_trigger_handler` (`User...filter(pk=event.user.get("pk")).first() or
/// get_anonymous_user()`) + `events/utils.py` `get_user`; `event_matcher/models.py` messages.
#[test]
fn item8_execution_records_as_authentik_writes_them() {
    let e = helpers::engine().with_anonymous_user_pk(json!(1));
    fire_setup(
        &e,
        json!({"name": "x", "action": "login", "client_ip": "192.0.2.10",
                          "execution_logging": true}),
        false,
        json!({"name": "r", "destination_group": G}),
    );
    let ev = event_json(
        "e0000000-0000-4000-8000-000000000030",
        "login",
        json!({"user": {"pk": 42, "username": "jane", "email": "j@x", "extra": 1}}),
    );
    let x = values(&process(&e, &ev).records, OutTopic::Executions);
    assert_eq!(
        x[0]["user"],
        json!({"username": "jane", "pk": 42, "email": "j@x"})
    );
    assert_eq!(
        x[0]["context"]["result"]["messages"],
        json!(["Action matched.", "Client IP matched."])
    );

    // No user: authentik's anonymous user; no `created`: the record's time, never null.
    let mut ev = event_json(
        "e0000000-0000-4000-8000-000000000031",
        "login",
        json!({"user": {}}),
    );
    ev.as_object_mut().expect("obj").remove("created");
    let x = values(&process(&e, &ev).records, OutTopic::Executions);
    assert_eq!(
        x[0]["user"],
        json!({"username": "AnonymousUser", "pk": 1, "email": "",
                                    "is_anonymous": true})
    );
    assert_eq!(
        x[0]["created"], "2024-01-01T00:00:00Z",
        "helpers::source's record time"
    );
}

/// `events/models.py` `EventAction` and the 2026.8.5 client's `AppEnum`: current values are
/// choices, and the seed's renamed ones stay accepted.
#[test]
fn item9_current_catalog_with_seed_aliases() {
    let e = engine();
    let mut c = Control::new(&e);
    for (i, (field, v)) in [
        ("action", "configuration_warning"),
        ("action", "export_ready"),
        ("app", "authentik.providers.rac"),
        ("app", "authentik.enterprise.providers.rac"),
    ]
    .iter()
    .enumerate()
    {
        let a = c.send(
            "POST",
            "/policies/event_matcher/",
            json!({"name": format!("n{i}"), *field: v}),
        );
        assert_eq!(a.status, 201, "{field}={v}: {}", a.body);
    }
}
