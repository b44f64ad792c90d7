//! End-to-end benchmark through a broker (BENCHMARKS.md §4); `scripts/bench-e2e.sh` builds it,
//! starts a tansu broker and runs it. On fresh topics of one run it measures:
//!
//! 1. the broker's ceiling: a bare rdkafka consumer built from the daemon's own group-consumer
//!    settings (`kafka::group_config`), reading the N events and doing nothing with them;
//! 2. the daemon (the release binary, as a child process): events/s from the first event
//!    consumed (its `eventmatchd_events_consumed_total` leaves 0) to the last offset committed
//!    (the group's committed offsets reach the end of every partition);
//! 3. the ceiling again, so the ratio compares the daemon with the mean of a run before and
//!    after it;
//! 4. latency at a fixed rate with the daemon caught up: events produced at `--rate` per
//!    second for `--latency-secs`, each carrying its send time; a reader on the notification
//!    topic takes, for each notification, receive time minus send time.
//!
//! The workload is the benches' (benches/common/workload.rs): 1,000 policies, ~700-byte
//! events, 5% firing a rule.

#[path = "../benches/common/mod.rs"]
mod common;

use common::process::{percentile, DaemonProcess};
use common::workload;

use anyhow::{bail, Context};
use clap::Parser;
use eventmatchd::config::Settings;
use eventmatchd::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    /// Bootstrap address of the broker (127.0.0.1:PORT for tansu).
    #[arg(long)]
    brokers: String,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/eventmatchd")]
    daemon: PathBuf,
    /// Events for the throughput runs.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    #[arg(long, default_value_t = 1_000)]
    policies: usize,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Extra librdkafka properties for the daemon (`name=value`, repeatable), to try settings.
    #[arg(long = "daemon-property", value_name = "NAME=VALUE")]
    daemon_properties: Vec<String>,
    /// The broker's process id, to report its CPU time per phase (scripts/bench-e2e.sh passes
    /// it).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Where the daemon's config file and log go.
    #[arg(long, default_value = "target/bench-e2e")]
    work_dir: PathBuf,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The daemon's configuration for this run: fresh topic and group names, a free HTTP port,
/// and a 100 ms auto-commit interval so "last committed" is measured to 0.1 s (the default,
/// 1 s, would add up to a second to a run of a few seconds).
fn write_config(args: &Args, run: &str, http_port: u16) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.work_dir)?;
    let path = args.work_dir.join("eventmatchd.toml");
    let mut extra = String::new();
    for p in &args.daemon_properties {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--daemon-property {p:?} is not NAME=VALUE");
        };
        extra.push_str(&format!("{k:?} = {v:?}\n"));
    }
    let toml = format!(
        r#"[kafka]
brokers = "{brokers}"
group_id = "bench-{run}"
control_group_id = "bench-{run}-control"

[kafka.properties]
"auto.commit.interval.ms" = 100
{extra}
[topics]
events = "bench-{run}.events"
control = "bench-{run}.control"
notifications = "bench-{run}.notifications"
results = "bench-{run}.results"
dlq = "bench-{run}.dlq"
executions = "bench-{run}.executions"

[http]
listen = "127.0.0.1:{http_port}"
"#,
        brokers = args.brokers
    );
    std::fs::write(&path, toml)?;
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    values: impl Iterator<Item = Vec<u8>>,
) -> anyhow::Result<HashMap<i32, i64>> {
    // Deliveries are awaited in windows so memory stays bounded.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut pending = Vec::new();
    let mut values = values.peekable();
    while values.peek().is_some() {
        for v in values.by_ref().take(10_000) {
            let sent = producer.send_result(FutureRecord::<(), _>::to(topic).payload(&v));
            pending.push(sent.map_err(|(e, _)| e));
        }
        for p in pending.drain(..) {
            let delivery = p?.await?.map_err(|(e, _)| e)?;
            let (partition, offset) = (delivery.partition, delivery.offset);
            let end = ends.entry(partition).or_insert(0);
            *end = (*end).max(offset + 1);
        }
    }
    Ok(ends)
}

/// A bare consumer with the daemon's group settings: reads `total` records, returns the time
/// from the first to the last.
async fn raw_consume(
    settings: &Settings,
    topic: &str,
    group: &str,
    total: usize,
) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = kafka::group_config(settings, group, "").create()?;
    consumer.subscribe(&[topic])?;
    let mut first = None;
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while n < total {
        if Instant::now() > deadline {
            bail!("raw consumer read only {n} of {total} records");
        }
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("raw consumer stalled")??;
        first.get_or_insert_with(Instant::now);
        std::hint::black_box(m.payload().map(<[u8]>::len));
        n += 1;
    }
    let elapsed = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    consumer.unsubscribe();
    Ok(elapsed)
}

/// One ceiling measurement: the bare consumer's time for all events, with its CPU use and the
/// broker's printed.
async fn raw_phase(
    settings: &Settings,
    args: &Args,
    topic: &str,
    group: &str,
) -> anyhow::Result<f64> {
    let (c0, b0) = (cpu_secs(None), cpu_secs(args.broker_pid));
    let secs = raw_consume(settings, topic, group, args.events).await?;
    let cpu = CpuUse {
        consumer: cpu_secs(None) - c0,
        broker: cpu_secs(args.broker_pid) - b0,
    };
    println!(
        "  raw consumer: {:.0} events/s; {}",
        args.events as f64 / secs,
        cpu.line(args.events)
    );
    Ok(secs)
}

/// One unlabelled sample from the daemon's /metrics.
fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = eventmatchd::tools::http_get(
        &format!("127.0.0.1:{port}"),
        "metrics",
        Duration::from_secs(2),
    )
    .ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn committed_total(checker: &BaseConsumer, topic: &str, ends: &HashMap<i32, i64>) -> i64 {
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition(topic, *p);
    }
    match checker.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(c) => c
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum(),
        Err(_) => 0,
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc (Linux; clock ticks of
/// 1/100 s, the kernel's USER_HZ on every mainstream architecture).
fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time of one phase, per event, for the consuming process and the broker.
struct CpuUse {
    consumer: f64,
    broker: f64,
}

impl CpuUse {
    fn line(&self, events: usize) -> String {
        let us = |s: f64| s * 1e6 / events as f64;
        format!(
            "CPU {:.1} µs/event in the consumer, {:.1} µs/event in the broker",
            us(self.consumer),
            us(self.broker)
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = format!("{:x}", now_us());
    let http_port = free_port()?;
    let config = write_config(&args, &run, http_port)?;
    let settings = Settings::load(Some(&config), std::iter::empty())?;
    let t = &settings.topics;
    println!(
        "bench-e2e: broker {} · {} events · {} policies · {} partitions · run {run}",
        args.brokers, args.events, args.policies, args.partitions
    );

    kafka::create_topics(&settings, args.partitions, 1).await?;
    let producer: FutureProducer = kafka::producer_config(&settings).create()?;
    let commands = workload::commands(args.policies);
    let n_commands = commands.len();
    produce_all(
        &producer,
        &t.control,
        commands.into_iter().map(|c| c.to_string().into_bytes()),
    )
    .await?;
    let mut gen = workload::EventGen::new(args.policies, 0.05, 1);
    let t0 = Instant::now();
    let ends = produce_all(&producer, &t.events, (0..args.events).map(|_| gen.bytes())).await?;
    let total: i64 = ends.values().sum();
    println!(
        "  produced {n_commands} control commands and {total} events ({:.0} events/s)",
        total as f64 / t0.elapsed().as_secs_f64()
    );

    // 1. The ceiling, before.
    let raw1 = raw_phase(&settings, &args, &t.events, &format!("bench-{run}-raw1")).await?;

    // 2. The daemon.
    let log = std::fs::File::create(args.work_dir.join("eventmatchd.log"))?;
    let child = Command::new(&args.daemon)
        .arg("--config")
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", args.daemon.display()))?;
    let daemon = DaemonProcess(child);
    let daemon_pid = Some(daemon.0.id());
    let b0 = cpu_secs(args.broker_pid);
    let checker: BaseConsumer =
        kafka::group_config(&settings, &settings.kafka.group_id, "").create()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_consumed = None;
    let last_committed;
    loop {
        if Instant::now() > deadline {
            bail!("the daemon did not commit every event within 10 minutes");
        }
        if first_consumed.is_none()
            && metric(http_port, "eventmatchd_events_consumed_total").is_some_and(|v| v > 0.0)
        {
            first_consumed = Some(Instant::now());
        }
        if first_consumed.is_some() && committed_total(&checker, &t.events, &ends) >= total {
            last_committed = Instant::now();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let daemon_secs = first_consumed
        .map(|f| (last_committed - f).as_secs_f64())
        .unwrap_or(f64::NAN);
    let emitted = metric(http_port, "eventmatchd_notifications_emitted_total");
    // Includes the daemon's start-up (reading the control topic): a small share at 1M events.
    let daemon_cpu = CpuUse {
        consumer: cpu_secs(daemon_pid),
        broker: cpu_secs(args.broker_pid) - b0,
    };
    println!(
        "  daemon: {:.0} events/s (first consumed to last committed, {:.2} s); {}",
        total as f64 / daemon_secs,
        daemon_secs,
        daemon_cpu.line(args.events)
    );

    // 3. The ceiling, after.
    let raw2 = raw_phase(&settings, &args, &t.events, &format!("bench-{run}-raw2")).await?;
    let raw_rate = args.events as f64 / ((raw1 + raw2) / 2.0);
    let daemon_rate = total as f64 / daemon_secs;

    // 4. Latency at a fixed rate, the daemon caught up.
    let reader: StreamConsumer = kafka::reader_config(&settings, "bench-latency")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let parts = kafka::partitions(
        &reader,
        "topics.notifications",
        &t.notifications,
        Duration::from_secs(10),
    )?;
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition_offset(&t.notifications, p, Offset::End)?;
    }
    reader.assign(&tpl)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latency_events = (args.rate * args.latency_secs) as usize;
    let collector = tokio::spawn(async move {
        let mut samples = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(args.latency_secs + 30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Ok(m)) =
                tokio::time::timeout(left.min(Duration::from_secs(5)), reader.recv()).await
            else {
                break;
            };
            let received = now_us();
            let sent = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                .and_then(|v| v["event"]["context"]["bench_sent_us"].as_u64());
            if let Some(sent) = sent {
                samples.push(received.saturating_sub(sent) as f64 / 1000.0);
            }
        }
        samples
    });
    let mut gen = workload::EventGen::new(args.policies, 0.05, 2);
    let start = Instant::now();
    let mut deliveries = Vec::with_capacity(latency_events);
    for i in 0..latency_events {
        // Paced against the schedule, not the previous send, so a slow moment is caught up.
        let due = start + Duration::from_micros(i as u64 * 1_000_000 / args.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let mut v = gen.value();
        v["context"]["bench_sent_us"] = Value::from(now_us());
        let bytes = v.to_string();
        let sent_at = Instant::now();
        match producer.send_result(FutureRecord::<(), _>::to(&t.events).payload(&bytes)) {
            // Awaited in a task of its own, so the acknowledgement time is when it arrives.
            Ok(d) => deliveries.push(tokio::spawn(async move {
                d.await.ok().and_then(|r| r.ok())?;
                Some(sent_at.elapsed().as_secs_f64() * 1e3)
            })),
            Err((e, _)) => bail!("produce failed: {e}"),
        }
    }
    let sent_secs = start.elapsed().as_secs_f64();
    let mut acks = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        match d.await? {
            Some(ms) => acks.push(ms),
            None => bail!("an event of the latency run was not acknowledged"),
        }
    }
    acks.sort_by(|a, b| a.total_cmp(b));
    producer.flush(Duration::from_secs(10))?;
    let mut samples = collector.await?;
    samples.sort_by(|a, b| a.total_cmp(b));
    let rss = common::rss_bytes(Some(daemon.0.id())).map(common::mib);
    drop(daemon);

    println!(
        "  latency at {} events/s ({latency_events} events sent in {sent_secs:.1} s, {} notifications \
         read): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        args.rate,
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "  of which the broker's produce acknowledgement (acks=all, linger 2 ms) for the events: \
         p50 {:.1} ms, p99 {:.1} ms (a notification pays it again on its way out)",
        percentile(&acks, 0.50),
        percentile(&acks, 0.99)
    );
    if let Some(rss) = rss {
        println!("  daemon RSS at the end: {rss:.0} MiB");
    }
    if let Some(e) = emitted {
        println!("  notifications emitted in the throughput run: {e:.0}");
    }
    let ratio = daemon_rate / raw_rate;
    println!(
        "SUMMARY end-to-end throughput vs raw consume: {:.0}% ({daemon_rate:.0} vs {raw_rate:.0} events/s) (target >= 60%) {}",
        ratio * 100.0,
        if ratio >= 0.6 { "MET" } else { "MISSED" }
    );
    let p99 = percentile(&samples, 0.99);
    println!(
        "SUMMARY p99 latency at {} events/s: {p99:.1} ms (target <= 50 ms) {}",
        args.rate,
        if p99 <= 50.0 { "MET" } else { "MISSED" }
    );
    if samples.len() < latency_events / 40 {
        bail!(
            "only {} notifications came back for {latency_events} events; the daemon log is in {}",
            samples.len(),
            args.work_dir.display()
        );
    }
    Ok(())
}
