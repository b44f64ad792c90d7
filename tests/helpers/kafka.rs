//! Broker-backed test helpers. The broker is a real Kafka-protocol broker (tansu) started by
//! `make test` (scripts/with-broker.sh), which exports its address as
//! `EVENTMATCHD_TEST_BROKERS`. Every test gets its own topics and groups; daemons run as the
//! real binary in a subprocess; every wait has a deadline.
#![allow(dead_code)]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Daemon settings whose group session expires 6 s after the member stops heartbeating
/// (librdkafka passthrough), so failover tests do not wait the default 45 s.
pub const FAST_FAILOVER: [(&str, &str); 2] = [
    (
        "EVENTMATCHD__KAFKA__PROPERTIES__SESSION__TIMEOUT__MS",
        "6000",
    ),
    (
        "EVENTMATCHD__KAFKA__PROPERTIES__HEARTBEAT__INTERVAL__MS",
        "1000",
    ),
];

pub fn brokers() -> String {
    std::env::var("EVENTMATCHD_TEST_BROKERS").unwrap_or_else(|_| {
        panic!(
            "broker-backed tests need a broker: run them with `make test`, which starts one \
             (or set EVENTMATCHD_TEST_BROKERS=127.0.0.1:PORT of a running tansu)"
        )
    })
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One test's topics and groups.
#[derive(Clone, Debug)]
pub struct TestEnv {
    pub brokers: String,
    pub events: String,
    pub control: String,
    pub notifications: String,
    pub results: String,
    pub dlq: String,
    pub executions: String,
    pub group: String,
    pub control_group: String,
    pub dir: PathBuf,
}

impl TestEnv {
    /// New topics (created with the real `eventmatchd create-topics`) and group names.
    pub fn new(name: &str, event_partitions: i32) -> TestEnv {
        Self::on(&brokers(), name, event_partitions)
    }

    /// The same on a given broker (e.g. librdkafka's mock cluster).
    pub fn on(brokers: &str, name: &str, event_partitions: i32) -> TestEnv {
        let env = Self::names(brokers, name);
        let out = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
            .args([
                "create-topics",
                "--partitions",
                &event_partitions.to_string(),
            ])
            .envs(env.vars(free_port()))
            .output()
            .expect("run create-topics");
        assert!(
            out.status.success(),
            "create-topics failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    /// The same on librdkafka's mock cluster, which has no CreateTopics: the topics are
    /// created through its own API.
    pub fn on_mock(
        cluster: &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
        name: &str,
        event_partitions: i32,
    ) -> TestEnv {
        let env = Self::names(&cluster.bootstrap_servers(), name);
        for (topic, parts) in env.topics(event_partitions) {
            cluster
                .create_topic(&topic, parts, 1)
                .expect("create topic");
        }
        env
    }

    /// Topic and group names only; the caller creates the topics (see [`TestEnv::topics`]).
    pub fn names(brokers: &str, name: &str) -> TestEnv {
        let id = unique(name);
        let dir = std::env::temp_dir().join(format!("eventmatchd-test-{id}"));
        std::fs::create_dir_all(&dir).expect("test dir");
        TestEnv {
            brokers: brokers.to_string(),
            events: format!("{id}.events"),
            control: format!("{id}.control"),
            notifications: format!("{id}.notifications"),
            results: format!("{id}.results"),
            dlq: format!("{id}.dlq"),
            executions: format!("{id}.executions"),
            group: format!("{id}-group"),
            control_group: format!("{id}-control"),
            dir,
        }
    }

    /// (topic, partitions) as `eventmatchd create-topics` creates them.
    pub fn topics(&self, event_partitions: i32) -> Vec<(String, i32)> {
        vec![
            (self.events.clone(), event_partitions),
            (self.control.clone(), 1),
            (self.notifications.clone(), event_partitions),
            (self.results.clone(), 1),
            (self.dlq.clone(), 1),
            (self.executions.clone(), event_partitions),
        ]
    }

    /// The daemon's configuration for this test, as environment variables.
    pub fn vars(&self, http_port: u16) -> Vec<(String, String)> {
        [
            ("KAFKA__BROKERS", self.brokers.clone()),
            ("KAFKA__GROUP_ID", self.group.clone()),
            ("KAFKA__CONTROL_GROUP_ID", self.control_group.clone()),
            ("TOPICS__EVENTS", self.events.clone()),
            ("TOPICS__CONTROL", self.control.clone()),
            ("TOPICS__NOTIFICATIONS", self.notifications.clone()),
            ("TOPICS__RESULTS", self.results.clone()),
            ("TOPICS__DLQ", self.dlq.clone()),
            ("TOPICS__EXECUTIONS", self.executions.clone()),
            ("HTTP__LISTEN", format!("127.0.0.1:{http_port}")),
            ("SHUTDOWN__DRAIN_TIMEOUT_SECS", "20".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("EVENTMATCHD__{k}"), v))
        .collect()
    }

    pub fn producer(&self) -> TestProducer {
        TestProducer::new(&self.brokers)
    }

    pub fn start_daemon(&self, name: &str) -> Daemon {
        Daemon::start(self, name, &[])
    }

    /// A daemon whose group session expires 6 s after it dies ([`FAST_FAILOVER`]).
    pub fn start_daemon_fast_failover(&self, name: &str) -> Daemon {
        let mut opts = FAST_FAILOVER.to_vec();
        // Every notification read back is logged: the kill -9 scenario uses it as evidence of
        // what the restarted daemon saw on the topic.
        opts.push((
            "RUST_LOG",
            "info,eventmatchd=debug,eventmatchd::daemon::readers=trace",
        ));
        Daemon::start(self, name, &opts)
    }
}

/// The daemon binary, running.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(env: &TestEnv, name: &str, extra: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let log = env.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_eventmatchd"))
            .arg("run")
            .envs(env.vars(port))
            .env(
                "RUST_LOG",
                std::env::var("EVENTMATCHD_TEST_LOG")
                    .unwrap_or_else(|_| "info,eventmatchd=debug".into()),
            )
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn eventmatchd");
        Daemon { child, port, log }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let r = client
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().unwrap_or_default()))
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited ({status}) before ready:\n{}", self.logs());
            }
            if let Some((200, _)) = self.get("/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon not ready within {timeout:?}:\n{}", self.logs());
    }

    pub fn healthz(&self) -> Option<u16> {
        self.get("/healthz").map(|(s, _)| s)
    }

    pub fn readyz(&self) -> Option<(u16, String)> {
        self.get("/readyz")
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one unlabelled (or exactly labelled) sample, e.g.
    /// `eventmatchd_policy_set_version` or `eventmatchd_events_invalid_total{reason="not_json"}`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
    }

    /// Waits until a metric reaches at least `at_least`.
    pub fn wait_metric(&self, sample: &str, at_least: f64, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(sample).unwrap_or(0.0);
            if v >= at_least || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) to the daemon process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Whether this instance currently emits control side effects (owns the control partition).
    pub fn owns_control(&self) -> bool {
        self.metric("eventmatchd_control_owner") == Some(1.0)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit (up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                self.kill9();
                panic!(
                    "daemon did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct TestProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl TestProducer {
    pub fn new(brokers: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .expect("producer");
        Self { producer }
    }

    pub fn send(&self, topic: &str, key: Option<&str>, value: &[u8]) {
        let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(value);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        let mut rec = rec;
        loop {
            match self.producer.send(rec) {
                Ok(()) => return,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "produce failed: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                    rec = r;
                }
            }
        }
    }

    /// A record without a value (a tombstone), as a CDC topic carries after a delete.
    pub fn send_tombstone(&self, topic: &str, key: &str) {
        let rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key);
        if let Err((e, _)) = self.producer.send(rec) {
            panic!("produce tombstone failed: {e}");
        }
    }

    pub fn send_json(&self, topic: &str, value: &Value) {
        let key = value.get("pk").and_then(Value::as_str);
        self.send(topic, key, value.to_string().as_bytes());
    }

    /// [`send_json`](Self::send_json) for each value, in order.
    pub fn send_all<V: std::borrow::Borrow<Value>>(
        &self,
        topic: &str,
        values: impl IntoIterator<Item = V>,
    ) {
        for v in values {
            self.send_json(topic, v.borrow());
        }
    }

    /// Waits until everything sent is acknowledged.
    pub fn flush(&self) {
        self.producer
            .flush(Duration::from_secs(30))
            .expect("flush test producer");
    }
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Option<Value>,
    pub raw: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

fn reader(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

fn partition_ids(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect()
}

/// Every record of a topic that no longer changes (its end found by reading, see [`ends`]).
pub fn read_all(brokers: &str, topic: &str) -> Vec<Rec> {
    let total: i64 = ends(brokers, topic).values().sum();
    let records = read(brokers, topic, total as usize, Duration::from_secs(60));
    assert_eq!(records.len() as i64, total, "read all of {topic}");
    records
}

/// Reads a topic from the beginning until `want` records arrived, or `timeout` passed.
pub fn read(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Rec> {
    read_until(brokers, topic, timeout, |recs| recs.len() >= want)
}

/// Reads a topic from the beginning until `done(records so far)`, or `timeout` passed.
pub fn read_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Rec]) -> bool,
) -> Vec<Rec> {
    let consumer = reader(brokers);
    let parts = partition_ids(&consumer, topic);
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !done(&out) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers.insert(
                            hd.key.to_string(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Rec {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().and_then(|p| serde_json::from_slice(p).ok()),
                    raw: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(e)) => panic!("read error on {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The latest record per key (what a compacted topic converges to).
/// How many records each key has (no key counts as "").
pub fn count_by_key(recs: &[Rec]) -> HashMap<String, usize> {
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for r in recs {
        *per_key
            .entry(r.key.clone().unwrap_or_default())
            .or_default() += 1;
    }
    per_key
}

pub fn latest_by_key(recs: &[Rec]) -> HashMap<String, Rec> {
    let mut sorted: Vec<&Rec> = recs.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut out = HashMap::new();
    for r in sorted {
        if let Some(k) = &r.key {
            out.insert(k.clone(), r.clone());
        }
    }
    out
}

/// Committed offsets of a group on a topic, per partition (-1 where none).
pub fn committed(brokers: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let parts = partition_ids(&consumer, topic);
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed");
    c.elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), o)
        })
        .collect()
}

/// The end (next offset to be written) of each partition, found by reading to the end of
/// the partition: tansu 0.6 answers ListOffsets with a stale end after multi-record batches.
pub fn ends(brokers: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("test-ends"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let parts = partition_ids(&consumer, topic);
    let mut tpl = TopicPartitionList::new();
    let mut out = HashMap::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
        out.insert(p, 0);
    }
    consumer.assign(&tpl).expect("assign");
    let mut open: std::collections::HashSet<i32> = out.keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !open.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.insert(m.partition(), m.offset() + 1);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    assert!(
        open.is_empty(),
        "no end of partition seen for {open:?} of {topic}"
    );
    out
}

/// Waits until the event group's committed offsets reach the end of the events topic (every
/// event processed and its outputs acknowledged); on timeout, says where each stood.
pub fn wait_events_committed(env: &TestEnv, timeout: Duration) -> Result<(), String> {
    let end = ends(&env.brokers, &env.events);
    if eventually(timeout, || {
        committed(&env.brokers, &env.group, &env.events) == end
    }) {
        Ok(())
    } else {
        Err(format!(
            "committed {:?}, end {end:?}",
            committed(&env.brokers, &env.group, &env.events)
        ))
    }
}

/// Polls `cond` until true or the deadline; returns whether it became true.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}
