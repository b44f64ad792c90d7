//! A write whose result does not come in time: 504 with the command's position, and the command
//! is not lost (it is on the control topic; every instance applies it, and the owner answers it
//! once it runs again). Also: without a token the API is off.

mod helpers;

use helpers::api::{self, Api};
use helpers::kafka::{Daemon, TestEnv};
use serde_json::json;
use std::time::Duration;

#[test]
fn a_write_past_its_deadline_is_504_and_not_lost() {
    let env = TestEnv::new("api-deadline", 1);
    let timeout = [("EVENTMATCHD__API__WRITE_TIMEOUT_SECS", "2")];
    let (owning, other) = api::start_pair(&env, &timeout);
    let a = Api::admin(&other);
    a.expect(
        201,
        "POST",
        "/api/v3/policies/event_matcher/",
        Some(&json!({"name": "before"})),
    );

    // The owner paused: nobody writes results.
    owning.signal("-STOP");
    let late = a.expect(
        504,
        "POST",
        "/api/v3/policies/event_matcher/",
        Some(&json!({"name": "late"})),
    );
    owning.signal("-CONT");
    let detail = late["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("control topic (partition 0, offset 1)")
            && detail.contains("will still be applied"),
        "{late}"
    );
    // Not lost: applied by every instance from the topic (this one did not even need the owner).
    let listed = a.get("/api/v3/policies/event_matcher/?name=late").1;
    assert_eq!(listed["pagination"]["count"], 1, "{listed}");
    // The owner, running again, answers it on the results topic.
    let results =
        helpers::kafka::read_until(&env.brokers, &env.results, Duration::from_secs(30), |r| {
            r.len() >= 2
        });
    assert_eq!(results.len(), 2, "both commands answered");
    assert_eq!(
        results[1].value.as_ref().map(|v| v["status"].clone()),
        Some(json!(201))
    );
    // And the API goes on.
    a.expect(
        201,
        "POST",
        "/api/v3/policies/event_matcher/",
        Some(&json!({"name": "after"})),
    );
}

#[test]
fn without_a_token_the_api_is_off() {
    let env = TestEnv::new("api-off", 1);
    let mut d = Daemon::start(&env, "d1", &[]);
    d.wait_ready(Duration::from_secs(60));
    let (status, _) =
        Api::new(&d, Some(api::ADMIN_KEY)).call("GET", "/api/v3/policies/event_matcher/", None);
    assert_eq!(status, 404);
    assert_eq!(
        d.readyz().map(|r| r.0),
        Some(200),
        "the rest of the listener serves"
    );
}
