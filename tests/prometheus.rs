//! Issue 13: the monitoring files are checked with the real Prometheus (Debian's package,
//! installed by `scripts/install-prometheus.sh`, which `make test` runs): `promtool check` on
//! the shipped scrape config and rules, `promtool test rules` on a unit test of every alert
//! (`deploy/prometheus/tests/`), and a real Prometheus scraping a running daemon on the real
//! broker, through which every PromQL expression of the Grafana dashboard and of the alert
//! rules is evaluated. Skipped, saying so, only where Prometheus is not installed.

mod helpers;

use helpers::kafka::{eventually, free_port, read_until, TestEnv};
use helpers::workload::{self, commands, expected};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn installed(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: {tool} is not installed (scripts/install-prometheus.sh installs Debian's prometheus package; `make test` runs it)"
        );
    }
    ok
}

/// Runs promtool; the error names the file and carries promtool's own output.
fn promtool(args: &[&str], file: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("promtool: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{}: promtool {}: {text}",
            file.display(),
            args.join(" ")
        ))
    }
}

fn yaml(path: &Path) -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(path).expect("read")).expect("YAML")
}

/// Alert name -> expression, from the shipped rules.
fn alerts() -> BTreeMap<String, String> {
    let rules = yaml(&root().join("deploy/prometheus/alerts.yml"));
    let mut out = BTreeMap::new();
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            out.insert(
                r["alert"].as_str().expect("alert").to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            );
        }
    }
    out
}

#[test]
fn promtool_checks_the_config_the_rules_and_a_unit_test_of_every_alert() {
    if !installed("promtool") {
        return;
    }
    let dir = root().join("deploy/prometheus");
    promtool(&["check", "config"], &dir.join("prometheus.yml"), &dir).expect("config");
    let rules = promtool(&["check", "rules"], &dir.join("alerts.yml"), &dir).expect("rules");
    assert!(
        rules.contains(&format!("{} rules found", alerts().len())),
        "{rules}"
    );
    let tests = dir.join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tests)
        .expect("deploy/prometheus/tests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    // Every alert is tested both ways: a case where it fires and one where it must not.
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for f in &files {
        promtool(&["test", "rules"], f, &tests).expect("alert unit tests");
        let t = yaml(f);
        for case in t["tests"].as_array().expect("tests") {
            for a in case["alert_rule_test"].as_array().expect("alert_rule_test") {
                let name = a["alertname"].as_str().expect("alertname").to_string();
                if a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()) {
                    fires.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    let all: BTreeSet<String> = alerts().into_keys().collect();
    assert_eq!(fires, all, "every alert has a case where it fires");
    assert_eq!(quiet, all, "every alert has a case where it must not fire");
}

#[test]
fn a_broken_rule_file_fails_naming_the_file() {
    if !installed("promtool") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("broken-alerts.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(\n",
    )
    .expect("write");
    let err = promtool(&["check", "rules"], &bad, dir.path()).expect_err("a parse error");
    assert!(err.contains("broken-alerts.yml"), "{err}");
}

struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// The shipped scrape config, pointed at `target`, scraping and evaluating every second,
    /// with the shipped rules.
    fn start(target: &str, dir: &Path) -> Prometheus {
        let mut cfg = yaml(&root().join("deploy/prometheus/prometheus.yml"));
        cfg["global"]["scrape_interval"] = json!("1s");
        cfg["global"]["evaluation_interval"] = json!("1s");
        cfg["rule_files"] = json!([root().join("deploy/prometheus/alerts.yml")]);
        cfg["scrape_configs"][0]["static_configs"][0]["targets"] = json!([target]);
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, yaml_serde::to_string(&cfg).expect("yaml")).expect("write");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port }
    }

    fn query(&self, expr: &str) -> Option<Vec<Value>> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let text = client
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", expr)])
            .send()
            .ok()?
            .text()
            .ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].as_array().cloned()
    }

    /// The value of a single-sample query.
    fn scalar(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr)?;
        r.first()?["value"][1].as_str()?.parse().ok()
    }
}

/// The dashboard's queries as Grafana sends them, `$__rate_interval` being at least four
/// scrape intervals: 1m here.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/dashboards/eventmatchd.json"))
            .expect("dashboard"),
    )
    .expect("JSON");
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "1m");
            out.push((format!("panel {}", p["title"]), expr));
        }
    }
    out
}

/// Alert expressions that are conditions: empty while nothing is wrong, which is the case in
/// this scenario (with the reason).
const QUIET_ALERTS: &[(&str, &str)] = &[
    ("EventmatchdNotReady", "the daemon is ready"),
    ("EventmatchdLagGrowing", "the lag is far below 10,000"),
    ("EventmatchdStalled", "nothing is stalled"),
    (
        "EventmatchdGroupLagGrowing",
        "the group lag is far below 10,000",
    ),
    ("EventmatchdProducerErrors", "no delivery fails"),
    ("EventmatchdOutputsRejected", "no record is refused"),
    ("EventmatchdSlow", "p99 is well under a second"),
    (
        "EventmatchdControlOwnerMissing",
        "the daemon owns the control partition",
    ),
    (
        "EventmatchdCatchUpSlow",
        "catch-up took well under a second",
    ),
];

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_every_query_returns_data() {
    if !installed("prometheus") {
        return;
    }
    let env = TestEnv::new("prom", 2);
    // The API on: the seen PATCH below goes through it, so its metrics have data.
    let tokens = helpers::api::tokens_json();
    let mut daemon = helpers::kafka::Daemon::start(
        &env,
        "d",
        &[
            ("EVENTMATCHD__WATCHDOG__INTERVAL_SECS", "1"),
            ("EVENTMATCHD__API__TOKENS", tokens.as_str()),
        ],
    );
    daemon.wait_ready(Duration::from_secs(60));
    let tmp = tempfile::tempdir().expect("tmp");
    let prom = Prometheus::start(&format!("127.0.0.1:{}", daemon.port), tmp.path());
    assert!(
        eventually(Duration::from_secs(30), || prom
            .scalar("up{job=\"eventmatchd\"}")
            == Some(1.0)),
        "Prometheus scrapes the daemon: {}",
        std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default()
    );

    // Traffic: the workload's policy set, 60 events, 3 invalid ones, one seen PATCH.
    let producer = env.producer();
    let mut cmds = commands();
    // A policy whose AKQL query does not compile (stored, as authentik does): the
    // invalid-query gauge and its alert must see it.
    cmds.push(
        json!({"id": "broken-query", "method": "POST", "path": "/policies/event_matcher/",
                     "body": {"name": "broken query", "query": "action = \"login\" and"}}),
    );
    producer.send_all(&env.control, &cmds);
    producer.flush();
    // Events are evaluated against the policy set of their time: apply the commands first.
    read_until(&env.brokers, &env.results, Duration::from_secs(30), |r| {
        r.len() >= cmds.len()
    });
    let events: Vec<Value> = (0..60).map(workload::event).collect();
    producer.send_all(&env.events, &events);
    producer.send(&env.events, None, b"not json");
    producer.send(&env.events, None, b"[1]");
    producer.send(&env.events, None, b"also not json");
    producer.flush();
    let want = expected(&cmds, events.iter().cloned());
    let notes = read_until(
        &env.brokers,
        &env.notifications,
        Duration::from_secs(30),
        |r| r.len() >= want.notifications.len(),
    );
    let pk = notes
        .first()
        .and_then(|r| r.key.clone())
        .expect("a notification");
    // Through the HTTP API: a control command like any other, and an HTTP request counted.
    let seen = helpers::api::Api::admin(&daemon).expect(
        200,
        "PATCH",
        &format!("/api/v3/events/notifications/{pk}/"),
        Some(&json!({"seen": true})),
    );
    assert_eq!(seen["seen"], true);

    // What Prometheus has agrees with what was sent.
    let agrees = || {
        prom.scalar("sum(eventmatchd_events_consumed_total)") == Some(63.0)
            && prom.scalar("sum(eventmatchd_notifications_emitted_total)")
                == Some(want.notifications.len() as f64)
            && prom.scalar("sum(eventmatchd_seen_updates_total)") == Some(1.0)
            && prom.scalar("max(eventmatchd_policy_queries_invalid)") == Some(1.0)
            && prom.scalar(
                r#"sum(eventmatchd_http_requests_total{route="/api/v3/events/notifications/{pk}/",method="PATCH",status="200"})"#,
            ) == Some(1.0)
    };
    assert!(
        eventually(Duration::from_secs(30), agrees),
        "events {:?}, notifications {:?} (want {}), seen {:?}",
        prom.scalar("sum(eventmatchd_events_consumed_total)"),
        prom.scalar("sum(eventmatchd_notifications_emitted_total)"),
        want.notifications.len(),
        prom.scalar("sum(eventmatchd_seen_updates_total)"),
    );
    assert_eq!(
        prom.scalar("max(eventmatchd_policy_queries_invalid)"),
        Some(1.0),
        "the broken query is counted"
    );
    let by_reason: BTreeMap<String, f64> = prom
        .query("sum by (reason) (eventmatchd_events_invalid_total) > 0")
        .expect("dead letters")
        .iter()
        .map(|s| {
            (
                s["metric"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(
        by_reason,
        BTreeMap::from([
            ("not_json".to_string(), 2.0),
            ("not_object".to_string(), 1.0)
        ])
    );
    // rate() over 1m needs two samples after the traffic.
    std::thread::sleep(Duration::from_secs(3));

    let mut empty = Vec::new();
    for (place, expr) in dashboard_queries() {
        match prom.query(&expr) {
            Some(r) if !r.is_empty() => {}
            _ => empty.push(format!("{place}: {expr}")),
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
    let quiet: BTreeMap<&str, &str> = QUIET_ALERTS.iter().copied().collect();
    for (name, expr) in alerts() {
        let r = prom.query(&expr).expect("query");
        match quiet.get(name.as_str()) {
            Some(why) => assert!(r.is_empty(), "{name} ({why}) returned {r:?}"),
            None => assert!(!r.is_empty(), "alert {name} returned no data: {expr}"),
        }
    }
    // The dead letters' alert expression sees this scenario's invalid events.
    assert!(!quiet.contains_key("EventmatchdDeadLetters"));
    assert!(daemon.terminate(Duration::from_secs(30)).success());
}
