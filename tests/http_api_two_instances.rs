//! Two instances, one control owner: a write sent to the other instance is answered (the owner
//! emits the result, the serving instance reads it back) and a GET on either shows it; a
//! notification PATCHed through the non-owner reads back seen on both.

mod helpers;

use helpers::api::{self, Api, USER_PK};
use helpers::kafka::{eventually, TestEnv};
use helpers::workload::login_event;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn a_write_to_the_instance_that_does_not_own_control_is_answered_and_seen_by_both() {
    let env = TestEnv::new("api-two", 2);
    let (owning, other) = api::start_pair(&env, &[]);
    let (a_owner, a_other) = (Api::admin(&owning), Api::admin(&other));

    let policy = a_other.expect(
        201,
        "POST",
        "/api/v3/policies/event_matcher/",
        Some(&json!({"name": "logins", "action": "login"})),
    );
    let p = policy["pk"].as_str().expect("pk").to_string();
    // Read-your-writes on the instance that served it; the owner applied it before emitting.
    assert_eq!(
        a_other.expect(
            200,
            "GET",
            &format!("/api/v3/policies/event_matcher/{p}/"),
            None
        ),
        policy
    );
    assert_eq!(
        a_owner.expect(
            200,
            "GET",
            &format!("/api/v3/policies/event_matcher/{p}/"),
            None
        ),
        policy
    );
    let rule = a_other.expect(
        201,
        "POST",
        "/api/v3/events/rules/",
        Some(&json!({"name": "to the user", "destination_event_user": true})),
    );
    a_other.expect(
        201,
        "POST",
        "/api/v3/policies/bindings/",
        Some(&json!({"policy": p, "target": rule["pk"], "order": 0})),
    );

    let producer = env.producer();
    producer.send_json(
        &env.events,
        &login_event("e2000000-0000-4000-8000-000000000001", USER_PK as u64),
    );
    producer.flush();
    let list = |a: &Api| a.get("/api/v3/events/notifications/").1;
    assert!(
        eventually(Duration::from_secs(30), || list(&a_other)["pagination"]
            ["count"]
            == 1
            && list(&a_owner)["pagination"]["count"] == 1),
        "the notification on both: {} / {}",
        list(&a_other),
        list(&a_owner)
    );
    let n: Value = list(&a_other)["results"][0].clone();
    let path = format!(
        "/api/v3/events/notifications/{}/",
        n["pk"].as_str().expect("pk")
    );
    let user = Api::new(&other, Some(api::USER_KEY));
    let seen = user.expect(200, "PATCH", &path, Some(&json!({"seen": true})));
    assert_eq!(seen["seen"], true);
    // The serving instance waited for its own notification tail: seen at once, every time.
    assert_eq!(user.expect(200, "GET", &path, None)["seen"], true);
    for i in 0..60 {
        let want = i % 2 == 1;
        user.expect(200, "PATCH", &path, Some(&json!({"seen": want})));
        let got = user.expect(200, "GET", &path, None);
        assert_eq!(got["seen"], want, "round {i}: a GET right after the PATCH");
        let p_body = json!({"execution_logging": want});
        a_other.expect(
            200,
            "PATCH",
            &format!("/api/v3/policies/event_matcher/{p}/"),
            Some(&p_body),
        );
        let got = a_other.expect(
            200,
            "GET",
            &format!("/api/v3/policies/event_matcher/{p}/"),
            None,
        );
        assert_eq!(
            got["execution_logging"], want,
            "round {i}: a GET right after the policy PATCH"
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || a_owner.get(&path).1["seen"]
            == true),
        "the owner holds it seen"
    );
}
