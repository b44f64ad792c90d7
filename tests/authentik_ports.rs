//! authentik's own test cases, ported as replay fixtures (`tests/data/authentik/`). Each
//! fixture is named `<authentik test file>__<test name>`; the table below states what the
//! authentik test asserts, in eventmatchd's terms (a notification record where authentik's
//! transport is called, a `policy_execution` record's `result` where authentik checks
//! `PolicyResult`), and the fixture's replay output must also equal its reviewed golden file
//! (`UPDATE_GOLDEN=1 cargo test --test authentik_ports` rewrites them; review the diff).
//!
//! Sources (goauthentik/authentik): `authentik/policies/event_matcher/tests.py`,
//! `authentik/events/tests/test_notifications.py`, `authentik/policies/tests/test_engine.py`.
//! Adapted where authentik's test bypasses its serializer: `app="foo"` and `model="foo.bar"`
//! are not API choices, so the ports use `authentik.core` and `authentik_core.user`; group
//! membership is out of scope, so a group destination is one record with `group` set.
//! Not portable: `test_invalid` (a request without an event). `test_match_query` (AKQL) is
//! ported in `tests/akql_cases.rs`.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/authentik");

/// What the authentik test asserts.
struct Expect {
    fixture: &'static str,
    notifications: usize,
    /// `(passing, messages)` of each execution record, in order.
    executions: &'static [(bool, &'static [&'static str])],
}

const CASES: &[Expect] = &[
    // event_matcher/tests.py: `response.passing` and `response.messages`.
    Expect {
        fixture: "event_matcher__test_match_action",
        notifications: 1,
        executions: &[(true, &["Action matched."])],
    },
    Expect {
        fixture: "event_matcher__test_match_client_ip",
        notifications: 1,
        executions: &[(true, &["Client IP matched."])],
    },
    Expect {
        fixture: "event_matcher__test_match_app",
        notifications: 1,
        executions: &[(true, &["App matched."])],
    },
    Expect {
        fixture: "event_matcher__test_match_model",
        notifications: 1,
        executions: &[(true, &["Model matched."])],
    },
    Expect {
        fixture: "event_matcher__test_drop",
        notifications: 0,
        executions: &[(false, &["Client IP matched."])],
    },
    Expect {
        fixture: "event_matcher__test_drop_multiple",
        notifications: 0,
        executions: &[(false, &["Client IP matched.", "App matched."])],
    },
    Expect {
        fixture: "event_matcher__test_multiple",
        notifications: 1,
        executions: &[(true, &["Client IP matched.", "App matched."])],
    },
    // events/tests/test_notifications.py: `execute_mock.call_count`.
    Expect {
        fixture: "notifications__test_trigger_empty",
        notifications: 0,
        executions: &[],
    },
    Expect {
        fixture: "notifications__test_trigger_single",
        notifications: 1,
        executions: &[],
    },
    Expect {
        fixture: "notifications__test_trigger_event_user",
        notifications: 1,
        executions: &[],
    },
    Expect {
        fixture: "notifications__test_trigger_no_group",
        notifications: 0,
        executions: &[],
    },
    // The notification, then its mark_all_seen update.
    Expect {
        fixture: "notifications__test_api_mark_all_seen",
        notifications: 2,
        executions: &[],
    },
    // policies/tests/test_engine.py: `result.passing` of the rule's engine (mode any).
    Expect {
        fixture: "engine__test_engine_mode_any_static",
        notifications: 1,
        executions: &[],
    },
    Expect {
        fixture: "engine__test_engine_negate",
        notifications: 0,
        executions: &[(false, &["Action matched."])],
    },
    // A policy that raises (here: `passes_model` on a non-dict `context.model`) is false
    // even negated, and logs no execution.
    Expect {
        fixture: "engine__test_engine_policy_error",
        notifications: 0,
        executions: &[],
    },
];

fn replay(path: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
        .arg("replay")
        .arg(path)
        .env_remove("EVENTMATCHD__CATALOG__EXTRA_APPS")
        .output()
        .expect("run eventmatchd replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("command answered"),
        "{}: every fixture command is valid: {stderr}",
        path.display()
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn records(output: &str, topic: &str) -> Vec<Value> {
    output
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|l| l["topic"] == topic)
        .map(|l| l["value"].clone())
        .collect()
}

#[test]
fn every_fixture_has_an_expectation() {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            n.strip_suffix(".ndjson")
                .filter(|s| !s.ends_with(".expected"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    let mut expected: Vec<String> = CASES.iter().map(|c| c.fixture.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn authentik_test_cases_hold() {
    for case in CASES {
        let input = Path::new(DIR).join(format!("{}.ndjson", case.fixture));
        let golden = Path::new(DIR).join(format!("{}.expected.ndjson", case.fixture));
        let out = replay(&input);

        let notifications = records(&out, "notifications");
        assert_eq!(
            notifications.len(),
            case.notifications,
            "{}: notifications",
            case.fixture
        );
        let executions: Vec<(bool, Vec<String>)> = records(&out, "executions")
            .iter()
            .map(|e| {
                let r = &e["context"]["result"];
                let msgs = r["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .map(|m| m.as_str().expect("message").to_string())
                    .collect();
                (r["passing"].as_bool().expect("passing"), msgs)
            })
            .collect();
        let want: Vec<(bool, Vec<String>)> = case
            .executions
            .iter()
            .map(|(p, m)| (*p, m.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(executions, want, "{}: executions", case.fixture);

        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &out).expect("write golden");
        }
        let want = std::fs::read_to_string(&golden).expect("golden file");
        assert_eq!(
            out, want,
            "{}: output differs from its golden",
            case.fixture
        );
    }
}

/// `test_trigger_event_user` checks `notification.user == user`; `test_api_mark_all_seen`
/// that nothing of the user's is left unseen.
#[test]
fn user_destination_and_mark_all_seen() {
    let out = replay(&Path::new(DIR).join("notifications__test_trigger_event_user.ndjson"));
    let n = records(&out, "notifications");
    assert_eq!(n[0]["user"]["pk"], 5);
    assert_eq!(n[0]["group"], Value::Null);

    let out = replay(&Path::new(DIR).join("notifications__test_api_mark_all_seen.ndjson"));
    let n = records(&out, "notifications");
    assert_eq!(
        (n[0]["seen"].clone(), n[1]["seen"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(n[0]["pk"], n[1]["pk"]);
    let results = records(&out, "results");
    assert_eq!(results.last().expect("result")["status"], 204);
}
