//! Helper subcommands for operators and the README walk-through: create the topics, send
//! NDJSON records to a topic, and print what arrives on one.

use crate::config::Settings;
use crate::kafka;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::io::BufRead;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Setup(#[from] kafka::KafkaSetupError),
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
    #[error("delivery to {topic} failed: {error}")]
    Delivery { topic: String, error: String },
}

/// A topic named by its role (`events`, `control`, `notifications`, `results`, `dlq`,
/// `executions`) resolves to the configured name; anything else is taken literally.
pub fn resolve_topic(settings: &Settings, name: &str) -> String {
    let t = &settings.topics;
    match name {
        "events" => t.events.clone(),
        "control" => t.control.clone(),
        "notifications" => t.notifications.clone(),
        "results" => t.results.clone(),
        "dlq" => t.dlq.clone(),
        "executions" => t.executions.clone(),
        other => other.to_string(),
    }
}

/// Sends every non-blank line of `input` as one record (events are keyed by their `pk`).
pub async fn send(
    settings: &Settings,
    topic: &str,
    input: impl BufRead,
) -> Result<usize, ToolError> {
    let producer: FutureProducer = kafka::producer_config(settings).create()?;
    let topic = resolve_topic(settings, topic);
    let mut sent = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let key = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("pk").and_then(|p| p.as_str()).map(str::to_string));
        let mut rec: FutureRecord<'_, str, str> = FutureRecord::to(&topic).payload(line.as_str());
        if let Some(k) = key.as_deref() {
            rec = rec.key(k);
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| ToolError::Delivery {
                topic: topic.clone(),
                error: e.to_string(),
            })?;
        sent += 1;
    }
    Ok(sent)
}

/// Prints records of a topic as NDJSON `{"partition", "offset", "key", "value"}` until
/// `count` records were printed or nothing arrived for `idle`.
pub async fn tail(
    settings: &Settings,
    topic: &str,
    from_beginning: bool,
    count: Option<usize>,
    idle: Duration,
    mut out: impl std::io::Write,
) -> Result<usize, ToolError> {
    let topic = resolve_topic(settings, topic);
    let consumer = kafka::reader(settings, "tail-tool")?;
    let parts = tokio::task::block_in_place(|| {
        kafka::partitions(&consumer, "topic", &topic, Duration::from_secs(10))
    })?;
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        let start = if from_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        tpl.add_partition_offset(&topic, p, start)?;
    }
    consumer.assign(&tpl)?;
    let mut printed = 0;
    while count.is_none_or(|c| printed < c) {
        let Ok(msg) = tokio::time::timeout(idle, consumer.recv()).await else {
            break;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let value = msg
            .payload()
            .map(|v| match serde_json::from_slice::<serde_json::Value>(v) {
                Ok(json) => json,
                Err(_) => serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            })
            .unwrap_or(serde_json::Value::Null);
        let line = serde_json::json!({
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": value,
        });
        writeln!(out, "{line}")?;
        printed += 1;
    }
    Ok(printed)
}

/// `GET /{endpoint}` on the daemon's HTTP listener; returns the status code.
pub fn probe(listen: &str, endpoint: &str, timeout: Duration) -> Result<u16, std::io::Error> {
    http_get(listen, endpoint, timeout).map(|(status, _)| status)
}

/// `GET /{path}` on the daemon's HTTP listener: status code and body. An unspecified listen
/// address (`0.0.0.0`, `[::]`) is asked on loopback. Plain HTTP/1.0 over a socket: it runs as
/// a container health check (no HTTP client in the image) and inside async code (where a
/// blocking client may not start its own runtime).
pub fn http_get(
    listen: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), std::io::Error> {
    use std::io::{Error, ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
    let mut addr: SocketAddr = listen
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "no address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    write!(conn, "GET /{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    // HTTP/1.0: the server closes the connection after the response.
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // "HTTP/1.x NNN ..."
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "not an HTTP response"))?;
    Ok((status, body.to_string()))
}
