//! The deployment files are real: the Dockerfile, docker-compose.yml, the Kubernetes
//! manifests, the topic script, and the Prometheus and Grafana configuration parse, reference
//! files that exist, agree with each other and with the daemon, and name only metrics (and
//! labels) a running daemon exports. No container engine runs here, so the image itself is
//! not built; everything that can be checked without one is.

mod helpers;

use eventmatchd::config::Settings;
use helpers::kafka::{Daemon, TestEnv};
use helpers::workload;
use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Every YAML document of a file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel} should hold one document");
    docs.remove(0)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Topics: the daemon, the script, compose and Kubernetes agree.

/// Topic settings as (name -> (partitions or None for "the event partition count", configs)).
type Topics = BTreeMap<String, (Option<i64>, BTreeMap<String, String>)>;

/// What the daemon creates (`eventmatchd create-topics`), with the default topic names.
fn daemon_topics() -> Topics {
    let settings = Settings::load(None, std::iter::empty()).expect("defaults load");
    // Two different partition counts tell which topics follow the events topic's count.
    let a = eventmatchd::kafka::topic_specs(&settings, 7);
    let b = eventmatchd::kafka::topic_specs(&settings, 11);
    a.into_iter()
        .zip(b)
        .map(|((name, pa, cfg), (_, pb, _))| {
            let parts = (pa == pb).then_some(pa as i64);
            let cfg = cfg
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (name, (parts, cfg))
        })
        .collect()
}

/// What deploy/kafka/create-topics.sh creates: its `create NAME PARTITIONS CONFIG...` lines,
/// with `${VAR:-default}` names resolved to their defaults.
fn script_topics() -> Topics {
    let text = read("deploy/kafka/create-topics.sh");
    let default_re = Regex::new(r#"^([A-Z_]+)=\$\{[A-Z_]+:-([^}]*)\}"#).expect("regex");
    let defaults: HashMap<String, String> = text
        .lines()
        .filter_map(|l| default_re.captures(l))
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    let resolve = |word: &str| -> String {
        let w = word.trim_matches('"');
        match w.strip_prefix('$') {
            Some(var) => defaults
                .get(var)
                .cloned()
                .unwrap_or_else(|| panic!("no default for {var}")),
            None => w.to_string(),
        }
    };
    let mut out = Topics::new();
    for line in text.lines().filter(|l| l.starts_with("create ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let name = resolve(words[1]);
        let parts = if words[2].trim_matches('"') == "$PARTITIONS" {
            None
        } else {
            Some(resolve(words[2]).parse().expect("a partition count"))
        };
        let cfg = words[3..]
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("NAME=VALUE");
                (k.to_string(), v.to_string())
            })
            .collect();
        out.insert(name, (parts, cfg));
    }
    out
}

/// deploy/kubernetes/topics.yaml (Strimzi). Topics whose count equals the events topic's are
/// reported as following it.
fn strimzi_topics() -> Topics {
    let docs = yaml_docs("deploy/kubernetes/topics.yaml");
    let events_parts = docs
        .iter()
        .find(|d| s(&d["metadata"]["name"]) == "authentik.events")
        .and_then(|d| d["spec"]["partitions"].as_i64())
        .expect("the events topic");
    docs.iter()
        .map(|d| {
            assert_eq!(s(&d["kind"]), "KafkaTopic");
            let parts = d["spec"]["partitions"].as_i64().expect("partitions");
            let cfg = d["spec"]["config"]
                .as_object()
                .expect("config")
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect();
            let parts = if parts == events_parts && parts != 1 {
                None
            } else {
                Some(parts)
            };
            (s(&d["metadata"]["name"]).to_string(), (parts, cfg))
        })
        .collect()
}

/// `min.insync.replicas` follows the replication (the daemon's create-topics sets
/// `min(2, replication)`; the script takes MIN_INSYNC_REPLICAS): compared apart.
fn without_min_insync(mut t: Topics, want: &str, what: &str) -> Topics {
    for (name, (_, cfg)) in t.iter_mut() {
        assert_eq!(
            cfg.remove("min.insync.replicas").as_deref(),
            Some(want),
            "{what}: {name}"
        );
    }
    t
}

#[test]
fn topic_settings_agree_in_the_daemon_the_script_compose_and_kubernetes() {
    let daemon = daemon_topics();
    assert_eq!(daemon.len(), 6);
    assert_eq!(script_topics(), daemon, "deploy/kafka/create-topics.sh");
    // The script's `create` adds min.insync.replicas to every topic, 2 unless told otherwise.
    let script = read("deploy/kafka/create-topics.sh");
    assert!(script.contains("MIN_INSYNC_REPLICAS=${MIN_INSYNC_REPLICAS:-2}"));
    assert!(script.contains("\"min.insync.replicas=$MIN_INSYNC_REPLICAS\""));
    assert_eq!(
        without_min_insync(strimzi_topics(), "2", "strimzi"),
        daemon,
        "deploy/kubernetes/topics.yaml"
    );
    // Tombstones outlive the daemon's memory of deletions.
    let settings = Settings::load(None, std::iter::empty()).expect("defaults load");
    assert_eq!(
        daemon["authentik.notifications"].1["delete.retention.ms"],
        (settings.notifications.deleted_horizon_secs * 1000).to_string()
    );
    // The control topic never loses a command; the notification topic is compacted.
    let control = &daemon["authentik.control"];
    assert_eq!(control.0, Some(1));
    assert_eq!(control.1["retention.ms"], "-1");
    assert_eq!(control.1["retention.bytes"], "-1");
    assert_eq!(
        daemon["authentik.notifications"].1["cleanup.policy"],
        "compact"
    );

    // Compose creates them with that very script, on the broker eventmatchd uses, and the
    // daemon there keeps the default topic names the script defaults to.
    let compose = yaml("docker-compose.yml");
    let job = &compose["services"]["topics"];
    let entry: Vec<&str> = job["entrypoint"]
        .as_array()
        .expect("exec form")
        .iter()
        .map(s)
        .collect();
    let script_in_container = entry.last().copied().unwrap_or_default();
    let mount = job["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(s)
        .find_map(|v| {
            let (host, rest) = v.split_once(':')?;
            let target = rest.split(':').next()?;
            script_in_container
                .strip_prefix(target)
                .map(|file| format!("{host}{file}"))
        })
        .expect("the script's directory is mounted into the job");
    assert_eq!(
        Path::new(&mount),
        Path::new("./deploy/kafka/create-topics.sh")
    );
    let job_env = &job["environment"];
    let daemon_env = &compose["services"]["eventmatchd"]["environment"];
    assert_eq!(
        s(&job_env["BOOTSTRAP"]),
        s(&daemon_env["EVENTMATCHD__KAFKA__BROKERS"]),
        "topics are created on the broker the daemon uses"
    );
    assert!(s(&job_env["PARTITIONS"])
        .parse::<u32>()
        .is_ok_and(|p| p >= 1));
    let overrides: Vec<&String> = daemon_env
        .as_object()
        .expect("environment map")
        .keys()
        .filter(|k| k.starts_with("EVENTMATCHD__TOPICS__"))
        .collect();
    assert!(
        overrides.is_empty(),
        "topic names overridden in compose: {overrides:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Files exist, configuration loads.

#[test]
fn compose_services_reference_files_that_exist_and_a_valid_daemon_config() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    for name in ["kafka", "topics", "eventmatchd", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "service {name}");
    }
    assert!(s(&services["kafka"]["image"]).starts_with("apache/kafka:"));
    let kafka_env = &services["kafka"]["environment"];
    assert_eq!(
        s(&kafka_env["KAFKA_PROCESS_ROLES"]),
        "broker,controller",
        "KRaft, one node"
    );
    assert_eq!(s(&kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]), "false");
    assert!(
        !s(&kafka_env["CLUSTER_ID"]).is_empty(),
        "KRaft needs a cluster id"
    );
    let data = s(&kafka_env["KAFKA_LOG_DIRS"]);
    assert!(
        services["kafka"]["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|m| s(m).ends_with(&format!(":{data}")))),
        "the broker's log dir {data} is on a volume"
    );
    assert_eq!(
        s(&services["eventmatchd"]["depends_on"]["topics"]["condition"]),
        "service_completed_successfully"
    );
    assert_eq!(s(&services["eventmatchd"]["build"]), ".");
    assert!(root().join("Dockerfile").exists());
    for (name, svc) in services {
        for v in svc["volumes"].as_array().into_iter().flatten().map(s) {
            let host = v.split(':').next().unwrap_or_default();
            if host.starts_with("./") {
                assert!(
                    root().join(host).exists(),
                    "service {name} mounts missing {host}"
                );
            }
        }
    }
    // The daemon's environment is a valid configuration.
    let env: Vec<(String, String)> = services["eventmatchd"]["environment"]
        .as_object()
        .expect("environment map")
        .iter()
        .map(|(k, v)| (k.clone(), s(v).to_string()))
        .collect();
    let settings = Settings::load(None, env).expect("compose's environment is a valid config");
    let port = settings
        .http
        .listen
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        settings.http.listen.starts_with("0.0.0.0:"),
        "reachable from other containers"
    );
    let ports: Vec<&str> = services["eventmatchd"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(s)
        .collect();
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{ports:?} publish {port}"
    );

    // Prometheus scrapes that port and loads the alert rules compose mounts.
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let job = &prom["scrape_configs"][0];
    assert_eq!(s(&job["metrics_path"]), "/metrics");
    assert_eq!(
        s(&job["static_configs"][0]["targets"][0]),
        format!("eventmatchd:{port}")
    );
    // Rule files are relative to the config file, which compose mounts as
    // /etc/prometheus/prometheus.yml.
    let rule_file = format!("/etc/prometheus/{}", s(&prom["rule_files"][0]));
    let mounted: Vec<&str> = services["prometheus"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(s)
        .collect();
    assert!(
        mounted
            .iter()
            .any(|v| v.ends_with(&format!(":{rule_file}:ro"))),
        "{rule_file} is mounted"
    );

    // Grafana gets a datasource and the dashboard through provisioning.
    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(s(&ds["datasources"][0]["url"]), "http://prometheus:9090");
    let prov = yaml("deploy/grafana/provisioning/dashboards/eventmatchd.yml");
    let dash_dir = s(&prov["providers"][0]["options"]["path"]).to_string();
    let grafana_mounts: Vec<&str> = services["grafana"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(s)
        .collect();
    assert!(grafana_mounts.contains(&format!("./deploy/grafana/dashboards:{dash_dir}:ro").as_str()));
    let dash: Value = serde_json::from_str(&read("deploy/grafana/dashboards/eventmatchd.json"))
        .expect("dashboard JSON");
    let uid = s(&ds["datasources"][0]["uid"]);
    for p in dash["panels"].as_array().expect("panels") {
        assert_eq!(
            s(&p["datasource"]["uid"]),
            uid,
            "panel {} uses the provisioned datasource",
            p["title"]
        );
    }
}

#[test]
fn dockerfile_follows_the_documented_build() {
    let df = read("Dockerfile");
    let readme = read("README.md");
    let froms: Vec<&str> = df.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(
        froms.last().is_some_and(|f| f.contains("slim")),
        "small runtime image"
    );
    // The build stage's toolchain is the one Cargo.toml declares.
    let msrv = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("rust-version");
    assert!(
        df.contains(&format!("ARG RUST_VERSION={msrv}\n")),
        "Dockerfile builds with Rust {msrv}"
    );
    // The README's build command is the one the Dockerfile documents.
    let build = "docker build -t eventmatchd:0.1.0 .";
    assert!(df.contains(build) && readme.contains(build));
    // A release build with the ssl feature, which Cargo.toml has.
    assert!(df.contains("cargo build --release --locked --features ssl --bin eventmatchd"));
    assert!(read("Cargo.toml").contains("ssl = [\"rdkafka/ssl\"]"));
    // Non-root, exec-form entrypoint (SIGTERM reaches the daemon), a health check by the
    // binary itself.
    let user = df.lines().rfind(|l| l.starts_with("USER ")).expect("USER");
    assert!(!user.contains("root") && !user.ends_with(" 0") && !user.contains(" 0:"));
    assert!(df.contains(r#"ENTRYPOINT ["/usr/local/bin/eventmatchd"]"#));
    assert!(df.contains(r#"CMD ["/usr/local/bin/eventmatchd", "probe", "healthz"]"#));
    assert!(df.contains("HEALTHCHECK"));
    assert!(df.contains("EVENTMATCHD__HTTP__LISTEN=0.0.0.0:9464"));
    // Everything it copies exists.
    for line in df
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(root().join(src).exists(), "Dockerfile copies missing {src}");
        }
    }
    // The probe fails on a port where nothing listens.
    let out = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
        .args([
            "probe",
            "healthz",
            "--address",
            "127.0.0.1:1",
            "--timeout-secs",
            "1",
        ])
        .output()
        .expect("run probe");
    assert_eq!(out.status.code(), Some(1));
}

/// Kubernetes objects by kind.
fn manifests() -> HashMap<String, Vec<Value>> {
    let kust = yaml("deploy/kubernetes/kustomization.yaml");
    let mut by_kind: HashMap<String, Vec<Value>> = HashMap::new();
    for r in kust["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(s)
    {
        let rel = format!("deploy/kubernetes/{r}");
        assert!(
            root().join(&rel).exists(),
            "kustomization lists missing {r}"
        );
        for d in yaml_docs(&rel) {
            by_kind
                .entry(s(&d["kind"]).to_string())
                .or_default()
                .push(d);
        }
    }
    for f in kust["configMapGenerator"][0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(s)
    {
        assert!(
            root().join("deploy/kubernetes").join(f).exists(),
            "missing {f}"
        );
    }
    by_kind
}

fn matches_labels(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels[k] == *v))
}

fn mib(quantity: &str) -> f64 {
    let (n, unit) = quantity.split_at(
        quantity
            .find(|c: char| c.is_alphabetic())
            .unwrap_or(quantity.len()),
    );
    let n: f64 = n.parse().expect("a quantity");
    n * match unit {
        "Gi" => 1024.0,
        "Mi" => 1.0,
        other => panic!("unit {other}"),
    }
}

#[test]
fn kubernetes_sidecar_is_consistent() {
    let m = manifests();
    let dep = &m["Deployment"][0];
    let pod = &dep["spec"]["template"];
    assert!(matches_labels(
        &dep["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert!(containers.len() >= 2, "the daemon is a second container");
    let c = containers
        .iter()
        .find(|c| s(&c["name"]) == "eventmatchd")
        .expect("eventmatchd container");
    let port = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| s(&p["name"]) == "metrics")
        .and_then(|p| p["containerPort"].as_i64())
        .expect("a metrics port");
    assert_eq!(s(&c["livenessProbe"]["httpGet"]["path"]), "/healthz");
    // A sidecar's readiness is its pod's: a Kafka outage must not take authentik out of
    // service, so the sidecar has no readiness probe (README "Kubernetes sidecar").
    assert!(
        c["readinessProbe"].is_null(),
        "no readiness probe on the sidecar"
    );
    for probe in ["livenessProbe", "startupProbe"] {
        assert_eq!(s(&c[probe]["httpGet"]["port"]), "metrics", "{probe}");
    }
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(s(&ann["prometheus.io/scrape"]), "true");
    assert_eq!(s(&ann["prometheus.io/port"]), port.to_string());
    assert_eq!(s(&ann["prometheus.io/path"]), "/metrics");

    // The config file comes from the generated ConfigMap and loads, with the Secret's
    // credentials, as a valid configuration listening on that port.
    let args: Vec<&str> = c["args"].as_array().expect("args").iter().map(s).collect();
    let config_path = args[args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config")
        + 1];
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|v| s(&v["mountPath"]) == config_path)
        .expect("the config file is mounted");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("its volume");
    let kust = yaml("deploy/kubernetes/kustomization.yaml");
    assert_eq!(
        volume["configMap"]["name"],
        kust["configMapGenerator"][0]["name"]
    );
    let file = root().join("deploy/kubernetes").join(s(&mount["subPath"]));
    let secret = yaml("deploy/kubernetes/secret.example.yaml");
    let mut env = Vec::new();
    for e in c["env"].as_array().expect("env") {
        // The static member id comes from the pod's name (a container restart keeps it).
        if s(&e["name"]) == "EVENTMATCHD__KAFKA__INSTANCE_ID" {
            assert_eq!(s(&e["valueFrom"]["fieldRef"]["fieldPath"]), "metadata.name");
            env.push((
                s(&e["name"]).to_string(),
                "authentik-server-7d9f-x2x4q".to_string(),
            ));
            continue;
        }
        let r = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(
            r["name"], secret["metadata"]["name"],
            "the Secret it references"
        );
        let value = s(&secret["stringData"][s(&r["key"])]);
        assert!(!value.is_empty(), "key {} is in the Secret", r["key"]);
        env.push((s(&e["name"]).to_string(), value.to_string()));
    }
    assert!(
        env.iter()
            .any(|(k, _)| k == "EVENTMATCHD__KAFKA__INSTANCE_ID"),
        "static membership from the pod name"
    );
    let settings = Settings::load(Some(&file), env).expect("the Kubernetes config loads");
    assert_eq!(settings.kafka.instance_id, "authentik-server-7d9f-x2x4q");
    let tokens = settings
        .api
        .resolve_tokens()
        .expect("the example's API tokens load");
    assert_eq!(tokens.len(), 1, "the API tokens reach the daemon");
    let props = settings.kafka.librdkafka_properties();
    for key in [
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
    ] {
        assert!(props.contains_key(key), "librdkafka gets {key}");
    }
    assert!(settings.http.listen.ends_with(&format!(":{port}")));

    // Memory: the limit covers the held notifications at the measured ~1 KiB each
    // (BENCHMARKS.md §5: 1,022 bytes per notification) plus 256 MiB for the process.
    let limit = mib(s(&c["resources"]["limits"]["memory"]));
    let request = mib(s(&c["resources"]["requests"]["memory"]));
    let need = 256.0 + settings.notifications.max_held as f64 * 1022.0 / (1024.0 * 1024.0);
    assert!(
        request <= limit && need <= limit,
        "limit {limit} MiB, need {need:.0} MiB"
    );
    assert!(c["resources"]["requests"]["cpu"].is_string());

    // The Service, ServiceMonitor and PodDisruptionBudget select these pods and this port.
    let svc = &m["Service"][0];
    assert!(matches_labels(
        &svc["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let svc_port = &svc["spec"]["ports"][0];
    assert_eq!(s(&svc_port["targetPort"]), "metrics");
    let sm = &m["ServiceMonitor"][0];
    assert!(matches_labels(
        &sm["spec"]["selector"]["matchLabels"],
        &svc["metadata"]["labels"]
    ));
    assert_eq!(sm["spec"]["endpoints"][0]["port"], svc_port["name"]);
    let pdb = &m["PodDisruptionBudget"][0];
    assert!(matches_labels(
        &pdb["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    // The grace period outlasts the daemon's drain.
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    assert!(grace > settings.shutdown.drain_timeout_secs);
}

// ---------------------------------------------------------------------------------------
// Queries name only what a running daemon exports.

/// Sample names and, per sample name, the label names a scrape shows.
fn exported(scrape: &str) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if let Some(inner) = line
            .get(name_end..)
            .and_then(|r| r.strip_prefix('{'))
            .and_then(|r| r.split('}').next())
        {
            for pair in inner.split(',').filter(|p| !p.is_empty()) {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.to_string());
                }
            }
        }
    }
    out
}

/// Every PromQL expression of the dashboard and the alert rules, with where it is.
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dash: Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/eventmatchd.json")).expect("JSON");
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push((format!("panel {}", p["title"]), s(&t["expr"]).to_string()));
        }
    }
    let alerts = yaml("deploy/prometheus/alerts.yml");
    for g in alerts["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            out.push((
                format!("alert {}", s(&r["alert"])),
                s(&r["expr"]).to_string(),
            ));
        }
    }
    out
}

/// The README's metrics reference: metric -> documented label names.
fn documented_labels() -> HashMap<String, BTreeSet<String>> {
    let row = Regex::new(r"^\| `(eventmatchd_[a-z_]+)` \| [a-z]+ \|([^|]*)\|").expect("regex");
    let values = Regex::new(r"\([^)]*\)").expect("regex");
    let label = Regex::new(r"`([a-z_]+)`").expect("regex");
    read("README.md")
        .lines()
        .filter_map(|l| row.captures(l))
        .map(|c| {
            // Only the label names, not the values some rows give in parentheses.
            let names = values.replace_all(&c[2], "");
            let labels = label
                .captures_iter(&names)
                .map(|l| l[1].to_string())
                .collect();
            (c[1].to_string(), labels)
        })
        .collect()
}

#[test]
fn dashboards_and_alerts_query_only_what_a_running_daemon_exports() {
    let env = TestEnv::new("deploy", 2);
    let mut daemon = Daemon::start(&env, "deploy", &[]);
    daemon.wait_ready(Duration::from_secs(60));
    // The probe the image's HEALTHCHECK runs answers for a live daemon.
    for endpoint in ["healthz", "readyz"] {
        let status = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
            .args([
                "probe",
                endpoint,
                "--address",
                &format!("127.0.0.1:{}", daemon.port),
            ])
            .status()
            .expect("run probe");
        assert!(status.success(), "probe {endpoint}");
    }
    // Make every labelled family appear: commands, a firing event, an invalid event.
    let producer = env.producer();
    let commands = workload::commands();
    producer.send_all(&env.control, &commands);
    producer.flush();
    // Events are evaluated against the policy set of their time: sent before the commands are
    // applied, they fire nothing and the notification family never appears (seen once in CI).
    let version = daemon.wait_metric(
        "eventmatchd_policy_set_version",
        commands.len() as f64,
        Duration::from_secs(30),
    );
    assert_eq!(version, commands.len() as f64, "every command applied");
    producer.send_all(&env.events, (0..40).map(workload::event));
    producer.send(&env.events, None, b"not json");
    producer.flush();
    let families = [
        "eventmatchd_events_invalid_total{",
        "eventmatchd_notifications_emitted_total{",
        "eventmatchd_control_commands_total{",
        "eventmatchd_consumer_lag{",
    ];
    let scrape_has_all = || {
        let text = daemon.metrics();
        families.iter().all(|f| text.contains(f)).then_some(text)
    };
    let mut scrape = None;
    assert!(
        helpers::kafka::eventually(Duration::from_secs(60), || {
            scrape = scrape_has_all();
            scrape.is_some()
        }),
        "labelled metrics did not appear; scrape:\n{}",
        daemon.metrics()
    );
    let exported = exported(&scrape.unwrap_or_default());

    // Names: every eventmatchd_* in every query is a sample the daemon exports.
    let name_re = Regex::new(r"\beventmatchd_[a-z0-9_]+").expect("regex");
    let by_re = Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").expect("regex");
    let matcher_re = Regex::new(r"\{([^}]*)\}").expect("regex");
    let implicit: BTreeSet<&str> = ["le", "instance", "job"].into();
    let mut used = BTreeSet::new();
    for (place, expr) in queries() {
        let names: Vec<&str> = name_re.find_iter(&expr).map(|m| m.as_str()).collect();
        assert!(
            !names.is_empty(),
            "{place} queries no eventmatchd metric: {expr}"
        );
        let mut labels: BTreeSet<String> = BTreeSet::new();
        for n in &names {
            let l = exported
                .get(*n)
                .unwrap_or_else(|| panic!("{place} uses {n}, which the daemon does not export"));
            labels.extend(l.iter().cloned());
            used.insert(
                n.trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count")
                    .to_string(),
            );
        }
        // Labels: grouping and matchers use labels those metrics have.
        let grouped = by_re.captures_iter(&expr).flat_map(|c| {
            c[1].split(',')
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        });
        let matched = matcher_re.captures_iter(&expr).flat_map(|c| {
            c[1].split(',')
                .filter_map(|m| m.split(['=', '!', '~']).next())
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        });
        for l in grouped.chain(matched) {
            assert!(
                implicit.contains(l.as_str()) || labels.contains(&l),
                "{place} uses label {l} that {names:?} do not have"
            );
        }
    }
    // The dashboard covers what the issue asks for.
    for m in [
        "eventmatchd_events_consumed_total",
        "eventmatchd_consumer_lag",
        "eventmatchd_notifications_emitted_total",
        "eventmatchd_events_invalid_total",
        "eventmatchd_policy_set_version",
        "eventmatchd_processing_latency_seconds",
    ] {
        assert!(used.contains(m), "no query shows {m}");
    }

    // The README's metrics reference names each exported family with its labels.
    let documented = documented_labels();
    for (sample, labels) in &exported {
        if !sample.starts_with("eventmatchd_") {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                sample
                    .strip_suffix(suffix)
                    .filter(|f| documented.contains_key(*f))
            })
            .unwrap_or(sample);
        let doc = documented
            .get(family)
            .unwrap_or_else(|| panic!("README's metrics reference lacks {family}"));
        let own: BTreeSet<String> = labels.iter().filter(|l| *l != "le").cloned().collect();
        assert_eq!(&own, doc, "labels of {family} in the README");
    }
    daemon.terminate(Duration::from_secs(30));
}

/// Issue 16: `docker compose --profile cdc` runs PostgreSQL with logical decoding, Debezium's
/// Kafka Connect and a job registering the connector, whose records land on the daemon's
/// events topic in a shape the daemon reads (the images cannot run here: the files are
/// checked against each other).
#[test]
fn compose_cdc_profile_feeds_the_events_topic() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    for (name, svc) in services {
        let cdc = ["postgres", "connect", "connector"].contains(&name.as_str());
        let profiles: Vec<&str> = svc["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        assert_eq!(
            profiles == ["cdc"],
            cdc,
            "{name}: only the CDC services are in the cdc profile"
        );
    }
    let pg = &services["postgres"];
    assert!(
        pg["command"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| s(c) == "wal_level=logical"),
        "Debezium needs logical decoding"
    );
    let connect = &services["connect"];
    assert!(s(&connect["image"]).starts_with("quay.io/debezium/connect:"));
    assert_eq!(
        s(&connect["environment"]["BOOTSTRAP_SERVERS"]),
        "kafka:9092"
    );
    assert_eq!(
        s(&connect["depends_on"]["topics"]["condition"]),
        "service_completed_successfully",
        "the events topic exists before Connect writes to it"
    );
    let job = &services["connector"];
    let script = root().join("deploy/debezium/register.sh");
    let ok = Command::new("sh")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("sh -n");
    assert!(ok.success(), "register.sh parses");
    assert_eq!(s(&job["entrypoint"][1]), "/deploy/debezium/register.sh");
    let file = s(&job["environment"]["FILE"]).to_string();
    assert!(file.starts_with("/deploy/debezium/"));

    let connector: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root()
                .join("deploy/debezium")
                .join(file.trim_start_matches("/deploy/debezium/")),
        )
        .expect("connector file"),
    )
    .expect("connector file is JSON");
    let c = &connector["config"];
    let cs = |k: &str| {
        c[k].as_str()
            .unwrap_or_else(|| panic!("connector config {k}"))
            .to_string()
    };
    assert_eq!(
        cs("connector.class"),
        "io.debezium.connector.postgresql.PostgresConnector"
    );
    assert_eq!(cs("table.include.list"), "public.authentik_events_event");
    assert_eq!(cs("database.hostname"), "postgres");
    let pg_env = &pg["environment"];
    assert_eq!(cs("database.dbname"), s(&pg_env["POSTGRES_DB"]));
    assert_eq!(cs("database.user"), s(&pg_env["POSTGRES_USER"]));
    assert_eq!(cs("database.password"), s(&pg_env["POSTGRES_PASSWORD"]));
    assert_eq!(
        cs("value.converter"),
        "org.apache.kafka.connect.json.JsonConverter"
    );
    // The table's topic is routed onto the daemon's events topic.
    let settings = Settings::load(None, Vec::<(String, String)>::new()).expect("defaults");
    let table_topic = format!("{}.public.authentik_events_event", cs("topic.prefix"));
    let re = Regex::new(&format!("^(?:{})$", cs("transforms.route.regex"))).expect("route regex");
    assert!(re.is_match(&table_topic), "the route matches {table_topic}");
    assert_eq!(cs("transforms.route.replacement"), settings.topics.events);
    // The README shows this very connector.
    let readme = read("README.md");
    let shown = readme
        .split("## Feeding events")
        .nth(1)
        .and_then(|sec| sec.split("```json").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("README \"Feeding events\" shows the connector");
    let shown: serde_json::Value = serde_json::from_str(shown).expect("README's connector is JSON");
    assert_eq!(
        shown, connector,
        "README and deploy/debezium/authentik-events.json agree"
    );
    assert_ne!(
        settings.events.format,
        eventmatchd::ingest::Format::Authentik,
        "the daemon reads Debezium records by default"
    );
}
