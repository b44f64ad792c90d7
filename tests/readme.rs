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
