//! The HTTP API's benchmark through a broker (BENCHMARKS.md §7); `scripts/bench-api.sh` builds
//! it, starts a tansu broker and runs it. Against the release daemon (a child process) on fresh
//! topics, in one run:
//!
//! 1. policy PATCH round trip through HTTP (request in → command on the control topic → result
//!    read back → this instance applied it → response), side by side with
//! 2. the same command's bare control-topic round trip (produce, read its result by id), in
//!    alternating blocks, so the ratio is the HTTP layer's and read-your-writes' share;
//! 3. notification `seen` PATCH round trip through HTTP;
//! 4. listing one user's notifications (`?user=U`, 100 of them) out of 10,000 held, and an
//!    admin's unfiltered page of 100.

#[path = "../benches/common/mod.rs"]
mod common;

use anyhow::{bail, Context};
use clap::Parser;
use common::process::{percentile, DaemonProcess};
use eventmatchd::config::Settings;
use eventmatchd::kafka;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "bench-admin-key";

#[derive(Parser)]
struct Args {
    #[arg(long)]
    brokers: String,
    #[arg(long, default_value = "target/release/eventmatchd")]
    daemon: PathBuf,
    /// Round trips per kind (split into alternating blocks of 50).
    #[arg(long, default_value_t = 400)]
    patches: usize,
    /// Notifications held for the list measurement (100 per user).
    #[arg(long, default_value_t = 10_000)]
    notifications: usize,
    #[arg(long, default_value_t = 200)]
    lists: usize,
    #[arg(long, default_value = "target/bench-api")]
    work_dir: PathBuf,
}

/// Milliseconds p50 / p99 of a sample.
fn p50_p99(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .client
            .request(m, format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {KEY}"));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (s, v) = self.call(method, path, body).await?;
        if s != status {
            bail!("{method} {path}: {s} {v}");
        }
        Ok(v)
    }
}

/// The bare control-topic round trip: the command produced, its result read back by id.
async fn bare_round_trip(
    producer: &FutureProducer,
    results: &StreamConsumer,
    topic: &str,
    command: &Value,
) -> anyhow::Result<()> {
    let id = command["id"].as_str().unwrap_or_default().to_string();
    let payload = command.to_string();
    producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(10), results.recv()).await? {
            Ok(m) => m,
            // The reader settings report each partition's end; not an error here.
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
        if v["id"] == json!(id) {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::create_dir_all(&args.work_dir)?;
    let config = args.work_dir.join("eventmatchd.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
brokers = "{b}"
group_id = "bench-api-{run}"
control_group_id = "bench-api-{run}-control"
[topics]
events = "bench-api-{run}.events"
control = "bench-api-{run}.control"
notifications = "bench-api-{run}.notifications"
results = "bench-api-{run}.results"
dlq = "bench-api-{run}.dlq"
executions = "bench-api-{run}.executions"
[http]
listen = "127.0.0.1:{port}"
[[api.tokens]]
key = "{KEY}"
user = 1
admin = true
"#,
            b = args.brokers
        ),
    )?;
    let settings = Settings::load(Some(&config), std::iter::empty())?;
    let t = settings.topics.clone();
    kafka::create_topics(&settings, 1, 1).await?;
    let log = std::fs::File::create(args.work_dir.join("eventmatchd.log"))?;
    let _daemon = DaemonProcess(
        Command::new(&args.daemon)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", args.daemon.display()))?,
    );
    let http = Http {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
    };
    let ready_by = Instant::now() + Duration::from_secs(120);
    while http
        .client
        .get(format!("{}/readyz", http.base))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        if Instant::now() > ready_by {
            bail!("the daemon was not ready within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("bench-api: broker {} · run {run}", args.brokers);

    let producer: FutureProducer = kafka::producer_config(&settings).create()?;
    let results: StreamConsumer = kafka::reader_config(&settings, "bench-results").create()?;
    let (_, end) = results.fetch_watermarks(&t.results, 0, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.results, 0, Offset::Offset(end))?;
    results.assign(&tpl)?;

    let policy = http
        .expect(
            201,
            "POST",
            "/api/v3/policies/event_matcher/",
            Some(&json!({"name": "bench", "action": "login"})),
        )
        .await?;
    let p = policy["pk"].as_str().unwrap_or_default().to_string();
    let (mut via_http, mut bare) = (Vec::new(), Vec::new());
    let mut i = 0;
    while via_http.len() < args.patches {
        for _ in 0..50 {
            let t0 = Instant::now();
            http.expect(
                200,
                "PATCH",
                &format!("/api/v3/policies/event_matcher/{p}/"),
                Some(&json!({"execution_logging": i % 2 == 0})),
            )
            .await?;
            via_http.push(t0.elapsed().as_secs_f64() * 1e3);
            i += 1;
        }
        for _ in 0..50 {
            let cmd = json!({"id": format!("bench-{i}"), "method": "PATCH", "path": format!("/policies/event_matcher/{p}/"), "body": {"execution_logging": i % 2 == 0}});
            let t0 = Instant::now();
            bare_round_trip(&producer, &results, &t.control, &cmd).await?;
            bare.push(t0.elapsed().as_secs_f64() * 1e3);
            i += 1;
        }
    }
    let (h50, h99) = p50_p99(via_http);
    let (b50, b99) = p50_p99(bare);
    println!(
        "  policy PATCH via HTTP:          p50 {h50:.2} ms · p99 {h99:.2} ms ({} round trips)",
        args.patches
    );
    println!("  same command, bare control topic: p50 {b50:.2} ms · p99 {b99:.2} ms");
    println!("SUMMARY policy PATCH round trip p50 {h50:.2} ms p99 {h99:.2} ms; {:.2}x the bare control-topic round trip at p50", h50 / b50);

    // Notifications: 100 per user.
    let rule = http
        .expect(
            201,
            "POST",
            "/api/v3/events/rules/",
            Some(&json!({"name": "bench rule", "destination_event_user": true})),
        )
        .await?;
    http.expect(
        201,
        "POST",
        "/api/v3/policies/bindings/",
        Some(&json!({"policy": p, "target": rule["pk"], "order": 0})),
    )
    .await?;
    let users = (args.notifications / 100).max(1);
    let mut pending = Vec::new();
    for n in 0..args.notifications {
        let event = json!({"pk": uuid::Uuid::new_v4(), "user": {"pk": 1000 + (n % users)}, "action": "login",
            "app": "authentik.events.signals", "context": {}, "client_ip": "10.0.0.1",
            "created": "2026-12-01T00:00:00Z", "expires": "2099-01-01T00:00:00Z"})
        .to_string();
        pending.push(
            producer
                .send_result(FutureRecord::<(), _>::to(&t.events).payload(&event))
                .map_err(|(e, _)| e)?,
        );
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    let held_by = Instant::now() + Duration::from_secs(300);
    loop {
        let v = http
            .expect(
                200,
                "GET",
                "/api/v3/events/notifications/?page_size=1",
                None,
            )
            .await?;
        if v["pagination"]["count"].as_u64() == Some(args.notifications as u64) {
            break;
        }
        if Instant::now() > held_by {
            bail!(
                "{} notifications were not all held within 5 minutes: {v}",
                args.notifications
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = http
        .expect(
            200,
            "GET",
            "/api/v3/events/notifications/?user=1000&page_size=100",
            None,
        )
        .await?;
    let pks: Vec<String> = page["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|n| n["pk"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut seen = Vec::new();
    for pk in pks.iter().cycle().take(args.patches.min(pks.len() * 4)) {
        let t0 = Instant::now();
        http.expect(
            200,
            "PATCH",
            &format!("/api/v3/events/notifications/{pk}/"),
            Some(&json!({"seen": seen.len() % 2 == 0})),
        )
        .await?;
        seen.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (s50, s99) = p50_p99(seen);
    println!("  notification seen PATCH via HTTP: p50 {s50:.2} ms · p99 {s99:.2} ms");
    let (mut by_user, mut all) = (Vec::new(), Vec::new());
    for k in 0..args.lists {
        let t0 = Instant::now();
        let v = http
            .expect(
                200,
                "GET",
                &format!(
                    "/api/v3/events/notifications/?user={}&page_size=100",
                    1000 + (k % users)
                ),
                None,
            )
            .await?;
        by_user.push(t0.elapsed().as_secs_f64() * 1e3);
        if v["pagination"]["count"].as_u64() != Some(100) {
            bail!(
                "user {} has {} notifications",
                1000 + (k % users),
                v["pagination"]["count"]
            );
        }
        let t0 = Instant::now();
        http.expect(
            200,
            "GET",
            "/api/v3/events/notifications/?page_size=100",
            None,
        )
        .await?;
        all.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (u50, u99) = p50_p99(by_user);
    let (a50, a99) = p50_p99(all);
    println!(
        "  list ?user=U (100 of {} held):  p50 {u50:.2} ms · p99 {u99:.2} ms",
        args.notifications
    );
    println!("  list, admin, unfiltered page of 100: p50 {a50:.2} ms · p99 {a99:.2} ms");
    println!("SUMMARY notification list by user ({} held) p50 {u50:.2} ms p99 {u99:.2} ms; seen PATCH p50 {s50:.2} ms p99 {s99:.2} ms", args.notifications);
    Ok(())
}
