//! `eventmatchd replay` on the committed sample: the output must equal the reviewed golden file
//! byte for byte. After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test replay_golden` and review the diff.

use std::io::Write;
use std::process::{Command, Stdio};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/replay_sample.ndjson"
);
const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/replay_sample.expected.ndjson"
);

fn replay(args: &[&str], stdin: Option<&[u8]>) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
        .arg("replay")
        .args(args)
        .env_remove("EVENTMATCHD__CATALOG__EXTRA_APPS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run eventmatchd");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

#[test]
fn replay_of_the_sample_matches_the_golden_file() {
    let (out, err) = replay(&[SAMPLE], None);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &out).expect("write golden");
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file");
    assert_eq!(out, golden, "replay output differs from {GOLDEN}");
    assert!(err.contains("line 10: invalid event (not_json)"), "{err}");
    assert!(
        err.contains("7 events (2 invalid, 0 skipped), 11 commands"),
        "{err}"
    );
}

#[test]
fn golden_file_shows_every_record_kind() {
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file");
    let records: Vec<serde_json::Value> = golden
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let count =
        |pred: &dyn Fn(&serde_json::Value) -> bool| records.iter().filter(|r| pred(r)).count();
    for topic in ["notifications", "results", "dlq", "executions"] {
        assert!(count(&|r| r["topic"] == topic) > 0, "no {topic} record");
    }
    assert!(
        count(&|r| r["topic"] == "notifications" && r["value"].is_null()) == 1,
        "one tombstone"
    );
    assert!(
        count(&|r| r["topic"] == "notifications" && r["value"]["seen"] == true) >= 2,
        "seen updates"
    );
    for status in [200, 201, 204, 400, 404, 405] {
        assert!(
            count(&|r| r["value"]["status"] == status) > 0,
            "no {status} result"
        );
    }
}

#[test]
fn replay_reads_stdin_when_file_is_dash_or_absent() {
    let sample = std::fs::read(SAMPLE).expect("sample");
    let golden = std::fs::read_to_string(GOLDEN).expect("golden file");
    assert_eq!(replay(&["-"], Some(&sample)).0, golden);
    assert_eq!(replay(&[], Some(&sample)).0, golden);
}

#[test]
fn replay_survives_any_garbage() {
    let junk: &[u8] =
        b"\x00\xff\n[]\n{}\n{\"method\": 1, \"path\": []}\n\n   \nnull\n{\"pk\": 5}\n";
    let (out, err) = replay(&["-"], Some(junk));
    let kinds: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["topic"]
                .as_str()
                .expect("topic")
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        // `null` is a tombstone (README "Replaying a file"): skipped, not dead-lettered.
        ["dlq", "dlq", "dlq", "results", "dlq"],
        "{out}"
    );
    assert!(
        err.contains("5 events (4 invalid, 1 skipped), 1 commands"),
        "{err}"
    );
}
