//! `eventmatchd replay`: run NDJSON through the engine offline and print what the daemon
//! would produce, one NDJSON line per output record.
//!
//! A line that is a JSON object with both `method` and `path` is a control command; every
//! other non-blank line is an event record (an invalid one becomes a `dlq` record, as in the
//! daemon). Lines are processed in order, exactly as the daemon would process them if they
//! arrived in that order. Positions stand in for Kafka offsets: a control command's offset is
//! its position among the control lines (0-based), as it would be on the control topic, so a
//! POST without `pk` gets the pk the daemon would derive; an event's offset is its line
//! number (1-based), so a `dlq` record points back at the input line. A line that is exactly
//! `null` stands for a tombstone (a record without a value), as a CDC topic carries after a
//! delete; with `events.format` `debezium` or `auto` it is skipped.

use crate::control::CommandSource;
use crate::engine::{Engine, OutRecord, RecordSource};
use chrono::Utc;
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::{self, BufRead, Write};

/// The topic name replayed events carry in dead-letter envelopes.
pub const REPLAY_TOPIC: &str = "replay";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub events: u64,
    pub commands: u64,
    pub records: u64,
    pub invalid: u64,
    /// Records that are not events (CDC updates, deletes, tombstones...).
    pub skipped: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    topic: &'static str,
    key: Option<&'a str>,
    value: Option<&'a RawValue>,
}

fn is_command(line: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        method: Option<&'a RawValue>,
        #[serde(borrow)]
        path: Option<&'a RawValue>,
    }
    line.trim_start().starts_with('{')
        && serde_json::from_str::<Probe<'_>>(line)
            .map(|p| p.method.is_some() && p.path.is_some())
            .unwrap_or(false)
}

fn write_record(out: &mut impl Write, r: &OutRecord) -> io::Result<()> {
    // Every value the engine produces is JSON it serialized itself.
    let raw: Option<Box<RawValue>> = match &r.value {
        Some(bytes) => Some(
            serde_json::from_slice(bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        ),
        None => None,
    };
    let line = Line {
        topic: r.topic.as_str(),
        key: r.key.as_deref(),
        value: raw.as_deref(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Replays `input` through `engine`, writing output records to `out`. `warn` receives one
/// message per invalid input line (the CLI prints them to stderr).
pub fn run(
    engine: &Engine,
    input: impl BufRead,
    mut out: impl Write,
    mut warn: impl FnMut(String),
) -> io::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    for (i, line) in input.split(b'\n').enumerate() {
        let bytes = line?;
        let line_no = i as i64 + 1;
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(&bytes);
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let text = std::str::from_utf8(bytes).ok();
        let records = if text.is_some_and(is_command) {
            let source = CommandSource {
                partition: 0,
                offset: stats.commands as i64,
            };
            stats.commands += 1;
            let outcome = engine.apply_command(bytes, source);
            if outcome.status >= 400 {
                warn(format!(
                    "line {line_no}: command answered {}",
                    outcome.status
                ));
            }
            outcome.records
        } else {
            stats.events += 1;
            let src = RecordSource {
                topic: REPLAY_TOPIC,
                partition: 0,
                offset: line_no,
                key: None,
                timestamp: Utc::now(),
            };
            let value = (text.map(str::trim) != Some("null")).then_some(bytes);
            let outcome = engine.process_record(value, &src);
            if outcome.skipped.is_some() {
                stats.skipped += 1;
            }
            if let Some(err) = &outcome.invalid {
                stats.invalid += 1;
                warn(format!(
                    "line {line_no}: invalid event ({}): {err}",
                    err.reason()
                ));
            }
            outcome.records
        };
        for r in &records {
            write_record(&mut out, r)?;
            stats.records += 1;
        }
    }
    out.flush()?;
    Ok(stats)
}
