//! The README's examples are real: its replay example output is what the binary prints.

use std::process::Command;

#[test]
fn readme_replay_example_matches_the_binary() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let out = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
        .args([
            "replay",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/replay_quickstart.ndjson"
            ),
        ])
        .output()
        .expect("run replay");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 5);
    for line in stdout.lines() {
        assert!(readme.contains(line), "README lacks the output line {line}");
    }
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    for line in stderr.lines() {
        assert!(readme.contains(line), "README lacks the stderr line {line}");
    }
}

/// Metric names in the README's metrics reference table.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `eventmatchd_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("eventmatchd_{name}"))
        .collect()
}

#[test]
fn readme_metrics_reference_lists_exactly_the_registered_metrics() {
    let m = eventmatchd::metrics::Metrics::new();
    // Labelled families only appear once they have a child.
    m.events_invalid.with_label_values(&["x"]);
    m.notifications_emitted.with_label_values(&["x", "y"]);
    m.control_commands.with_label_values(&["x", "y", "z"]);
    m.policy_set_size.with_label_values(&["x"]);
    m.consumer_lag.with_label_values(&["x", "0"]);
    m.catch_up_seconds.with_label_values(&["x"]);
    m.notifications_dropped.with_label_values(&["x"]);
    m.records_rejected.with_label_values(&["x"]);
    m.group_lag.with_label_values(&["g", "t", "0"]);
    m.stalled.with_label_values(&["x"]);
    m.progress_age.with_label_values(&["x"]);
    m.commit_errors.with_label_values(&["x"]);
    m.group_rejoins.with_label_values(&["x"]);
    m.http_requests.with_label_values(&["/r", "GET", "200"]);
    m.http_request_duration.with_label_values(&["/r", "GET"]);
    let registered: std::collections::BTreeSet<String> = m.names().into_iter().collect();
    assert_eq!(registered, documented_metrics());
}
