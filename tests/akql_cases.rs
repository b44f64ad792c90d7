//! AKQL (issue 17) against what authentik's own code does: `../shared/akql-cases.json` holds
//! events and queries evaluated by authentik (djangoql `apply_search` over
//! `Event.objects.filter(pk=event.pk)`, PostgreSQL 15, C.UTF-8, UTC). Each case is replayed
//! through the engine: a policy with the query, bound to one rule plainly and to another
//! negated, and every event processed.

mod helpers;

use helpers::{engine, process, Control};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn cases() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/akql-cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} (the shared directory beside the project): {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("akql-cases.json is JSON")
}

#[test]
fn every_case_measured_on_authentik_agrees() {
    let all = cases();
    let events = all["events"].as_array().expect("events");
    let cases = all["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 45 && events.len() >= 42,
        "the whole file is replayed"
    );
    let mut failures = Vec::new();
    for case in cases {
        let id = case["id"].as_str().expect("id");
        let query = &case["query"];
        let e = engine();
        let mut c = Control::new(&e);
        let post = c.send(
            "POST",
            "/policies/event_matcher/",
            json!({"name": id, "query": query, "execution_logging": true}),
        );
        match case["result"].as_str() {
            Some("write") => {
                let want = (
                    case["status"].as_u64().expect("status"),
                    case["body"].clone(),
                );
                if (post.status as u64, post.body.clone()) != want {
                    failures.push(format!(
                        "{id}: write answered {} {}",
                        post.status, post.body
                    ));
                }
                continue;
            }
            Some("matches") | Some("raises") => {}
            other => panic!("{id}: unknown result {other:?}"),
        }
        assert_eq!(
            post.status, 201,
            "{id}: the query is not checked on write: {}",
            post.body
        );
        assert_eq!(
            post.body["query"], *query,
            "{id}: responses carry the query"
        );
        let policy = post.body["pk"].as_str().expect("pk").to_string();
        let plain = c.rule(json!({"name": "plain"}));
        let negated = c.rule(json!({"name": "negated"}));
        c.create(
            "/policies/bindings/",
            json!({"policy": policy, "target": plain, "order": 0}),
        );
        c.create(
            "/policies/bindings/",
            json!({"policy": policy, "target": negated, "order": 0, "negate": true}),
        );
        let want: BTreeSet<String> = case["matches"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let raises = case["result"] == "raises";
        let mut got = BTreeSet::new();
        for ev in events {
            let pk = ev["pk"].as_str().expect("event pk").to_string();
            let out = process(&e, ev);
            assert!(out.invalid.is_none(), "{pk} is a valid event");
            let fired: BTreeSet<String> = out.fired.iter().map(|r| r.pk.to_string()).collect();
            if fired.contains(&plain) {
                got.insert(pk.clone());
            }
            if raises {
                // `PolicyProcess.run` catches the error: every binding false, negated too, and
                // no execution event.
                if !fired.is_empty() || out.executions != 0 {
                    failures.push(format!(
                        "{id}: raising query fired {fired:?} / {} executions for {pk}",
                        out.executions
                    ));
                }
            } else if fired.contains(&negated) == fired.contains(&plain) {
                failures.push(format!(
                    "{id}: the negated binding must be the opposite for {pk}"
                ));
            }
        }
        if !raises && got != want {
            let short = |s: &BTreeSet<String>| {
                s.iter()
                    .map(|p| p[p.len() - 2..].to_string())
                    .collect::<Vec<_>>()
            };
            failures.push(format!(
                "{id} `{}`: matched {:?}, authentik {:?}",
                query.as_str().unwrap_or_default(),
                short(&got),
                short(&want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// authentik `policies/event_matcher/tests.py` `test_match_query`: a login event, a policy
/// with `query='action = "login"'`: passing, messages `("Query matched.",)`.
#[test]
fn authentik_test_match_query() {
    let e = engine();
    let mut c = Control::new(&e);
    let p =
        c.policy(json!({"name": "q", "query": "action = \"login\"", "execution_logging": true}));
    let r = c.rule(json!({"name": "r"}));
    c.bind(&p, &r, 0);
    let ev = helpers::event_json("e1000000-0000-4000-8000-000000000001", "login", json!({}));
    let out = process(&e, &ev);
    assert_eq!(out.fired.len(), 1);
    let exec = helpers::values(&out.records, eventmatchd::engine::OutTopic::Executions)
        .into_iter()
        .find(|v| v["action"] == "policy_execution")
        .expect("an execution event");
    assert_eq!(exec["context"]["result"]["passing"], true);
    assert_eq!(
        exec["context"]["result"]["messages"],
        json!(["Query matched."])
    );
    let out = process(
        &e,
        &helpers::event_json("e1000000-0000-4000-8000-000000000002", "logout", json!({})),
    );
    assert!(out.fired.is_empty());
}

/// The README's AKQL examples compile.
#[test]
fn the_readme_examples_compile() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    let section = readme
        .split("### AKQL queries")
        .nth(1)
        .expect("an AKQL section");
    let block = section.split("```").nth(1).expect("an example block");
    let choices = eventmatchd::catalog::Catalog::default().action_choices();
    let mut n = 0;
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let q = eventmatchd::akql::Query::compile(line.trim(), &choices);
        assert!(q.error().is_none(), "{line}: {:?}", q.error());
        n += 1;
    }
    assert!(n >= 3, "the examples were found");
}
