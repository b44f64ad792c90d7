//! Invalid configuration stops the daemon at start with a message naming the key; `--help`
//! lists the subcommands the README uses.

use std::process::Command;

fn run(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run eventmatchd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_key() {
    for (var, value, key) in [
        ("EVENTMATCHD__KAFKA__BROKERS", "no-port", "kafka.brokers"),
        ("EVENTMATCHD__HTTP__LISTEN", "nowhere", "http.listen"),
        ("EVENTMATCHD__TOPICS__EVENTS", "authentik.control", "topics"),
        (
            "EVENTMATCHD__SHUTDOWN__DRAIN_TIMEOUT_SECS",
            "soon",
            "drain_timeout_secs",
        ),
        ("EVENTMATCHD__KAFKA__NOPE", "x", "nope"),
    ] {
        let (ok, stderr) = run(&[(var, value)], &["run"]);
        assert!(!ok, "{var}={value} must stop the start");
        assert!(stderr.contains(key), "{var}={value}: {stderr}");
    }
    let (ok, stderr) = run(&[], &["--config", "/nonexistent.toml", "run"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
}

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
        .arg("--help")
        .output()
        .expect("help");
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["run", "replay", "create-topics", "send", "tail"] {
        assert!(text.contains(sub), "--help lacks {sub}: {text}");
    }
}
