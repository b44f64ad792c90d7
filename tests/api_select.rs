//! The API's list views without a broker: filters, scoping and ordering over an engine's
//! snapshot and notification index, as authentik's viewsets declare them.

mod helpers;

use eventmatchd::api::auth::Principal;
use eventmatchd::api::list::Params;
use eventmatchd::api::select::{self, Sizes};
use eventmatchd::engine::RecordSource;
use helpers::{engine, Control};
use serde_json::{json, Value};

const SIZES: Sizes = Sizes {
    default: 20,
    max: 100,
};

fn params(q: &str) -> Params {
    Params::parse(Some(q))
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x[key].to_string().trim_matches('"').to_string())
        .collect()
}

#[test]
fn binding_filters_follow_policy_binding_filter() {
    let e = engine();
    let mut c = Control::new(&e);
    let p1 = c.create(
        "/policies/event_matcher/",
        json!({"name": "p1", "action": "login"}),
    );
    let p2 = c.create("/policies/event_matcher/", json!({"name": "other"}));
    let r1 = c.create("/events/rules/", json!({"name": "r1"}));
    let r2 = c.create("/events/rules/", json!({"name": "r2"}));
    let r3 = c.create("/events/rules/", json!({"name": "r3"}));
    for (p, r, order) in [(&p1, &r1, 5), (&p2, &r1, 1), (&p1, &r2, 3), (&p2, &r3, 0)] {
        c.create(
            "/policies/bindings/",
            json!({"policy": p, "target": r, "order": order}),
        );
    }
    let set = e.snapshot();
    let list = |q: &str| select::bindings(&set, &params(q), SIZES);
    let all = list("").expect("list");
    assert_eq!(
        names(&all, "order"),
        vec!["0", "1", "3", "5"],
        "default order: order, pk"
    );
    let v = list(&format!("target_in={r1}&target_in={r2}")).expect("target_in");
    assert_eq!(names(&v, "order"), vec!["1", "3", "5"]);
    let v = list(&format!("policy={p1}&ordering=-order")).expect("policy");
    assert_eq!(names(&v, "order"), vec!["5", "3"]);
    assert_eq!(
        list("search=OTH").expect("search")["pagination"]["count"],
        2,
        "search is the policy's name"
    );
    assert_eq!(list("order=3").expect("order")["pagination"]["count"], 1);
    let unknown = "00000000-0000-4000-8000-000000000000";
    let e1 = list(&format!("target_in={r1}&target_in={unknown}")).expect_err("unknown target");
    assert_eq!(
        (e1.status, e1.body),
        (
            400,
            json!({"target_in": [format!("Select a valid choice. {unknown} is not one of the available choices.")]})
        )
    );
    let e2 = list(&format!("policy={unknown}")).expect_err("unknown policy");
    assert_eq!(
        e2.body,
        json!({"policy": ["Select a valid choice. That choice is not one of the available choices."]})
    );
    assert_eq!(
        list("order=x").expect_err("order").body,
        json!({"order": ["Enter a number."]})
    );
}

#[test]
fn rule_filters_and_group_names() {
    let e = engine();
    let mut c = Control::new(&e);
    c.create(
        "/events/rules/",
        json!({"name": "b alerts", "severity": "alert"}),
    );
    c.create(
        "/events/rules/",
        json!({"name": "a notices", "severity": "notice"}),
    );
    let set = e.snapshot();
    let list = |q: &str| select::rules(&set, &params(q), SIZES);
    assert_eq!(
        names(&list("").expect("all"), "name"),
        vec!["a notices", "b alerts"]
    );
    assert_eq!(
        names(&list("severity=alert").expect("alert"), "name"),
        vec!["b alerts"]
    );
    assert_eq!(
        list("destination_group__name=admins").expect("group")["pagination"]["count"],
        0,
        "no rule has a group"
    );
    assert_eq!(list("severity=loud").expect_err("choice").status, 400);
}

#[test]
fn notifications_are_scoped_to_their_user_and_filtered() {
    let e = engine();
    let mut c = Control::new(&e);
    for cmd in helpers::workload::login_to_user(1) {
        let a = c.raw(cmd.to_string().as_bytes());
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let src = RecordSource {
        topic: "events",
        partition: 0,
        offset: 0,
        key: None,
        timestamp: chrono::Utc::now(),
    };
    // Created out of order, one of them in another time zone: lists order by the instant.
    let created = [
        "2024-09-13T14:05:42.170Z",
        "2024-09-13T16:00:00+02:00",
        "2024-09-12T00:00:00Z",
    ];
    for (i, user) in [7u64, 7, 8].iter().enumerate() {
        let mut ev =
            helpers::workload::login_event(&format!("e3000000-0000-4000-8000-{i:012}"), *user);
        ev["created"] = json!(created[i]);
        let out = e.process_event(ev.to_string().as_bytes(), &src);
        assert_eq!(out.notifications.len(), 1, "{ev}");
    }
    let admin = Principal {
        user: 1,
        admin: true,
    };
    let seven = Principal {
        user: 7,
        admin: false,
    };
    let list = |who: &Principal, q: &str| select::notifications(e.index(), who, &params(q), SIZES);
    assert_eq!(list(&admin, "").expect("all")["pagination"]["count"], 3);
    assert_eq!(list(&admin, "user=8").expect("8")["pagination"]["count"], 1);
    let mine = list(&seven, "").expect("mine");
    assert_eq!(mine["pagination"]["count"], 2);
    assert!(mine["results"]
        .as_array()
        .expect("r")
        .iter()
        .all(|n| n["user"]["pk"] == 7));
    assert_eq!(
        list(&seven, "user=8").expect("not mine")["pagination"]["count"],
        0
    );
    assert_eq!(
        list(&seven, "seen=true").expect("seen")["pagination"]["count"],
        0
    );
    assert_eq!(
        list(&seven, "seen=maybe").expect("ignored")["pagination"]["count"],
        2,
        "not a boolean: no filter"
    );
    let ev = "e3000000-0000-4000-8000-000000000001";
    assert_eq!(
        list(&admin, &format!("event={ev}")).expect("event")["pagination"]["count"],
        1
    );
    assert_eq!(
        list(&admin, "severity=nope").expect_err("severity").status,
        400
    );
    assert_eq!(list(&admin, "user=x").expect_err("user").status, 400);
    // By time: event 2 (the 12th), event 1 (14:00 UTC), event 0 (14:05 UTC); the page-only
    // path (index fields) and the render-everything path (an ordering on a rendered field)
    // agree.
    let events = |v: &Value| -> Vec<String> {
        v["results"]
            .as_array()
            .expect("r")
            .iter()
            .map(|n| n["event"]["pk"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let by_time = events(&list(&admin, "").expect("default order"));
    let want: Vec<String> = [2, 1, 0]
        .iter()
        .map(|i| format!("e3000000-0000-4000-8000-{i:012}"))
        .collect();
    assert_eq!(by_time, want);
    let rendered = events(&list(&admin, "ordering=created,pk,hyperlink").expect("rendered path"));
    assert_eq!(rendered, want);
    let desc = events(&list(&admin, "ordering=-created").expect("desc"));
    assert_eq!(desc, want.iter().rev().cloned().collect::<Vec<_>>());
    let n = &mine["results"][0];
    let held = e
        .index()
        .get(&n["pk"].as_str().expect("pk").parse().expect("uuid"))
        .expect("held");
    assert!(select::may_see(&seven, &held));
    assert!(!select::may_see(
        &Principal {
            user: 8,
            admin: false
        },
        &held
    ));
}
