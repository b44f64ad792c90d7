//! The authentik API over HTTP on the real broker: writes answered by their control command's
//! result and visible to a GET right after; notifications from events listed, marked seen,
//! `mark_all_seen`, deleted; owner scoping; pagination and filters; error shapes.

mod helpers;

use helpers::api::{self, Api, USER_PK};
use helpers::kafka::{eventually, TestEnv};
use helpers::workload::login_event;
use serde_json::{json, Value};
use std::time::Duration;

const POLICIES: &str = "/api/v3/policies/event_matcher/";
const RULES: &str = "/api/v3/events/rules/";
const BINDINGS: &str = "/api/v3/policies/bindings/";
const NOTIFICATIONS: &str = "/api/v3/events/notifications/";

fn count(v: &Value) -> u64 {
    v["pagination"]["count"].as_u64().unwrap_or(u64::MAX)
}

fn pk(v: &Value) -> String {
    v["pk"].as_str().expect("pk").to_string()
}

#[test]
fn writes_reads_and_notifications_through_the_api() {
    let env = TestEnv::new("api", 1);
    let d = api::start(&env, "d1", &[]);
    let admin = Api::admin(&d);
    let user = Api::new(&d, Some(api::USER_KEY));

    // Create: 201 and the result's body; a GET right after sees it (read-your-writes).
    let policy = admin.expect(
        201,
        "POST",
        POLICIES,
        Some(&json!({"name": "logins", "action": "login"})),
    );
    let p = pk(&policy);
    assert_eq!(policy["component"], "ak-policy-event-matcher-form");
    assert_eq!(policy["bound_to"], 0);
    let got = admin.expect(200, "GET", &format!("{POLICIES}{p}/"), None);
    assert_eq!(got, policy, "retrieve answers what create answered");

    // The seed's PATCH (every field), then back to a policy that matches logins.
    let seed = json!({"name": "seed patch", "execution_logging": true, "action": "login",
        "client_ip": "10.9.9.9", "app": "authentik.tenants", "model": "authentik_tenants.domain"});
    let patched = admin.expect(200, "PATCH", &format!("{POLICIES}{p}/"), Some(&seed));
    for k in [
        "name",
        "execution_logging",
        "action",
        "client_ip",
        "app",
        "model",
    ] {
        assert_eq!(patched[k], seed[k], "{k}");
    }
    let reset = json!({"name": "logins", "client_ip": null, "app": null, "model": null});
    admin.expect(200, "PATCH", &format!("{POLICIES}{p}/"), Some(&reset));
    // An empty PATCH body is `{}`: nothing changes.
    let (s, same) = admin.call("PATCH", &format!("{POLICIES}{p}/"), None);
    assert_eq!((s, same["name"].clone()), (200, json!("logins")));

    let rule = admin.expect(
        201,
        "POST",
        RULES,
        Some(&json!({"name": "to the user", "severity": "alert", "destination_event_user": true})),
    );
    let r = pk(&rule);
    let binding = admin.expect(
        201,
        "POST",
        BINDINGS,
        Some(&json!({"policy": p, "target": r, "order": 0})),
    );
    let b = pk(&binding);
    assert_eq!(binding["policy_obj"]["pk"], json!(p));
    let listed = admin.expect(200, "GET", &format!("{BINDINGS}?target={r}"), None);
    assert_eq!(count(&listed), 1, "{listed}");
    assert_eq!(
        admin.expect(200, "GET", &format!("{POLICIES}{p}/"), None)["bound_to"],
        1
    );

    // Validation errors are the result's 400, exactly.
    let bad = admin.expect(400, "POST", POLICIES, Some(&json!({"action": "nope"})));
    assert_eq!(bad["name"], json!(["This field is required."]));
    assert!(
        bad["action"][0]
            .as_str()
            .unwrap_or_default()
            .contains("is not a valid choice"),
        "{bad}"
    );
    // A body that is not JSON: DRF's parse error, never the body echoed back.
    let garbage = format!("{{\"name\": \"{}", "secret-looking-text ".repeat(500));
    let (s, e) = admin.call_raw("POST", POLICIES, "application/json", &garbage);
    let detail = e["detail"].as_str().unwrap_or_default();
    assert!(
        s == 400 && detail.starts_with("JSON parse error - ") && detail.len() < 300,
        "{s} {e}"
    );
    assert!(!detail.contains("secret-looking-text"), "{detail}");
    let (s, e) = admin.call_raw("POST", POLICIES, "text/plain", "name=x");
    assert_eq!(
        (s, e),
        (
            415,
            json!({"detail": "Unsupported media type \"text/plain\" in request."})
        )
    );
    let dup = admin.expect(400, "POST", POLICIES, Some(&json!({"name": "logins"})));
    assert_eq!(
        dup,
        json!({"name": ["policy with this name already exists."]})
    );

    // Events become notifications: three for user 7, one for user 8.
    let producer = env.producer();
    let events: Vec<String> = (0..4)
        .map(|i| format!("e1000000-0000-4000-8000-{i:012}"))
        .collect();
    for (i, e) in events.iter().enumerate() {
        producer.send_json(
            &env.events,
            &login_event(e, if i < 3 { USER_PK as u64 } else { 8 }),
        );
    }
    producer.flush();
    assert!(
        eventually(Duration::from_secs(30), || count(
            &admin.get(NOTIFICATIONS).1
        ) == 4),
        "4 notifications listed: {}",
        admin.get(NOTIFICATIONS).1
    );
    let all = admin.expect(200, "GET", &format!("{NOTIFICATIONS}?user=8"), None);
    assert_eq!(count(&all), 1);
    let others = pk(&all["results"][0]);

    // A non-admin sees its own notifications only, and nothing of the policy set.
    let mine = user.expect(200, "GET", NOTIFICATIONS, None);
    assert_eq!(count(&mine), 3);
    assert!(mine["results"]
        .as_array()
        .expect("results")
        .iter()
        .all(|n| n["user"]["pk"] == USER_PK));
    user.expect(404, "GET", &format!("{NOTIFICATIONS}{others}/"), None);
    user.expect(
        404,
        "PATCH",
        &format!("{NOTIFICATIONS}{others}/"),
        Some(&json!({"seen": true})),
    );
    user.expect(404, "DELETE", &format!("{NOTIFICATIONS}{others}/"), None);
    assert_eq!(
        count(&user.expect(200, "GET", &format!("{NOTIFICATIONS}?user=8"), None)),
        0
    );
    assert_eq!(count(&user.expect(200, "GET", POLICIES, None)), 0);
    user.expect(404, "GET", &format!("{POLICIES}{p}/"), None);
    let denied = user.expect(
        403,
        "PATCH",
        &format!("{POLICIES}{p}/"),
        Some(&json!({"name": "x"})),
    );
    assert_eq!(
        denied,
        json!({"detail": "You do not have permission to perform this action."})
    );

    // The seed's PATCH of a notification: seen, the full record back, and a GET agrees.
    let first = pk(&mine["results"][0]);
    let seen = user.expect(
        200,
        "PATCH",
        &format!("{NOTIFICATIONS}{first}/"),
        Some(&json!({"seen": true})),
    );
    assert_eq!(
        (seen["pk"].clone(), seen["seen"].clone()),
        (json!(first), json!(true))
    );
    assert_eq!(
        user.expect(200, "GET", &format!("{NOTIFICATIONS}{first}/"), None)["seen"],
        true
    );
    assert_eq!(
        count(&user.expect(200, "GET", &format!("{NOTIFICATIONS}?seen=false"), None)),
        2
    );

    // mark_all_seen: no body, the token's user only, 204.
    let (s, body) = user.call("POST", &format!("{NOTIFICATIONS}mark_all_seen/"), None);
    assert_eq!((s, body), (204, Value::Null));
    assert_eq!(
        count(&user.expect(200, "GET", &format!("{NOTIFICATIONS}?seen=false"), None)),
        0
    );
    let unseen = admin.expect(200, "GET", &format!("{NOTIFICATIONS}?seen=false"), None);
    assert_eq!(count(&unseen), 1, "user 8's is untouched: {unseen}");

    // DELETE: 204, then 404.
    let (s, _) = user.call("DELETE", &format!("{NOTIFICATIONS}{first}/"), None);
    assert_eq!(s, 204);
    user.expect(404, "GET", &format!("{NOTIFICATIONS}{first}/"), None);
    assert_eq!(count(&user.expect(200, "GET", NOTIFICATIONS, None)), 2);

    // used_by, 405, unknown pk, malformed pk.
    assert_eq!(
        admin.expect(200, "GET", &format!("{POLICIES}{p}/used_by/"), None),
        json!([])
    );
    let m = admin.expect(405, "PUT", POLICIES, Some(&json!({})));
    assert_eq!(m, json!({"detail": "Method \"PUT\" not allowed."}));
    admin.expect(405, "POST", NOTIFICATIONS, Some(&json!({})));
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        admin.expect(404, "GET", &format!("{RULES}{missing}/"), None),
        json!({"detail": "Not found."})
    );
    admin.expect(
        404,
        "PATCH",
        &format!("{RULES}{missing}/"),
        Some(&json!({"name": "x"})),
    );
    admin.expect(404, "GET", &format!("{RULES}not-a-uuid/"), None);

    // Deleting the binding: 204, gone, the policy no longer bound.
    let (s, _) = admin.call("DELETE", &format!("{BINDINGS}{b}/"), None);
    assert_eq!(s, 204);
    admin.expect(404, "GET", &format!("{BINDINGS}{b}/"), None);
    assert_eq!(
        admin.expect(200, "GET", &format!("{POLICIES}{p}/"), None)["bound_to"],
        0
    );
}

#[test]
fn lists_paginate_filter_and_order_as_authentik() {
    let env = TestEnv::new("api-list", 1);
    let d = api::start(&env, "d1", &[]);
    let admin = Api::admin(&d);
    for i in 0..26 {
        let action = if i % 2 == 0 { "login" } else { "logout" };
        admin.expect(
            201,
            "POST",
            POLICIES,
            Some(&json!({"name": format!("policy {i:02}"), "action": action})),
        );
    }
    let page1 = admin.expect(200, "GET", POLICIES, None);
    assert_eq!(
        page1["pagination"],
        json!({"next": 2, "previous": 0, "count": 26, "current": 1, "total_pages": 2, "start_index": 1, "end_index": 20})
    );
    assert_eq!(page1["autocomplete"], json!({}));
    assert_eq!(page1["results"][0]["name"], "policy 00", "ordered by name");
    let page2 = admin.expect(200, "GET", &format!("{POLICIES}?page=2"), None);
    assert_eq!(page2["results"].as_array().map(Vec::len), Some(6));
    assert_eq!(page2["pagination"]["next"], 0);
    assert_eq!(
        admin.expect(404, "GET", &format!("{POLICIES}?page=3"), None),
        json!({"detail": "Invalid page."})
    );
    let small = admin.expect(
        200,
        "GET",
        &format!("{POLICIES}?page_size=5&page=6&ordering=-name"),
        None,
    );
    assert_eq!(small["pagination"]["total_pages"], 6);
    assert_eq!(
        small["results"][0]["name"], "policy 00",
        "descending, last page"
    );
    let capped = admin.expect(200, "GET", &format!("{POLICIES}?page_size=1000"), None);
    assert_eq!(
        capped["results"].as_array().map(Vec::len),
        Some(26),
        "max page size 100"
    );
    assert_eq!(
        count(&admin.expect(200, "GET", &format!("{POLICIES}?action=logout"), None)),
        13
    );
    assert_eq!(
        count(&admin.expect(200, "GET", &format!("{POLICIES}?search=policy%2002"), None)),
        1
    );
    assert_eq!(
        count(&admin.expect(200, "GET", &format!("{POLICIES}?name=policy%2003"), None)),
        1
    );
    let bad = admin.expect(400, "GET", &format!("{POLICIES}?action=nope"), None);
    assert_eq!(
        bad,
        json!({"action": ["Select a valid choice. nope is not one of the available choices."]})
    );
}
