//! The record path without Kafka (BENCHMARKS.md §2): event bytes in, notification bytes out,
//! through `Engine::process_event`, exactly what the daemon's pipeline calls per record.
//! 1,000 policies; 5% of events fire a rule. Also: where the time goes (parse, match, render)
//! and allocations per event.

mod common;

use common::workload::{policy_set, EventGen};
use common::Counting;
use criterion::{BatchSize, Throughput};
use eventmatchd::engine::Engine;
use eventmatchd::events::Event;
use eventmatchd::ingest::{ingest, Format, Ingested};
use eventmatchd::notify;
use eventmatchd::policyset::PolicySet;
use eventmatchd::rules::NotificationRule;
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::Arc;

#[global_allocator]
static ALLOC: Counting = Counting;

const POLICIES: usize = 1_000;
const EVENTS: usize = 8192;
const MATCH_RATE: f64 = 0.05;

/// Bytes out of one pass: every record value the engine returned.
fn full_pass(engine: &Engine, events: &[Vec<u8>]) -> usize {
    let src = common::source();
    let mut bytes = 0;
    for e in events {
        let out = engine.process_event(black_box(e), &src);
        bytes += out
            .records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .sum::<usize>();
    }
    bytes
}

fn parse_pass(events: &[Vec<u8>]) -> usize {
    events
        .iter()
        .map(|e| Event::parse(black_box(e)).map_or(0, |ev| ev.action.len()))
        .sum()
}

/// Input format → Event: `ingest` (shape detection, CDC conversion) then the event parser, as
/// `Engine::process_record` does before matching.
fn shape_pass(format: Format, records: &[Vec<u8>]) -> usize {
    records
        .iter()
        .map(|r| match ingest(format, Some(black_box(r))) {
            Ok(Ingested::Event(b)) => Event::parse(&b).map_or(0, |ev| ev.action.len()),
            _ => 0,
        })
        .sum()
}

/// The workload's events as Debezium would send them: (envelope, envelope with schemas,
/// unwrapped row). jsonb columns as PostgreSQL's text, timestamps as ZonedTimestamp strings.
fn cdc_shapes(events: &[Vec<u8>]) -> [Vec<Vec<u8>>; 3] {
    let text = |v: &Value| {
        let mut s = String::new();
        eventmatchd::akql::pg::jsonb_out(v, &mut s);
        s
    };
    let mut out: [Vec<Vec<u8>>; 3] = Default::default();
    for e in events {
        let v: Value = serde_json::from_slice(e).expect("workload event");
        let row = json!({
            "event_uuid": v["pk"], "user": text(&v["user"]), "action": v["action"], "app": v["app"],
            "context": text(&v["context"]), "client_ip": v["client_ip"], "created": v["created"],
            "expires": v["expires"], "expiring": true, "brand": text(&v["brand"]),
        });
        let source = json!({"version": "2.7.3.Final", "connector": "postgresql", "name": "authentik",
            "ts_ms": 1726236342171i64, "snapshot": "false", "db": "authentik", "schema": "public",
            "table": "authentik_events_event", "txId": 1042, "lsn": 24023128, "xmin": null});
        let env = json!({"before": null, "after": row, "source": source, "op": "c", "ts_ms": 1726236342180i64});
        out[0].push(serde_json::to_vec(&env).unwrap_or_default());
        out[1].push(serde_json::to_vec(&json!({"schema": {"type": "struct", "name": "authentik.public.authentik_events_event.Envelope", "optional": false, "fields": []}, "payload": env})).unwrap_or_default());
        out[2].push(serde_json::to_vec(&row).unwrap_or_default());
    }
    out
}

fn match_pass(set: &PolicySet, parsed: &[Event]) -> usize {
    parsed
        .iter()
        .map(|e| set.matcher().evaluate(black_box(e)).fired.len())
        .sum()
}

/// Render and serialize the notifications of the events that fired, with the rules they
/// fired (the part of `process_event` after matching, without the index).
fn render_pass(fired: &[(&Event, Vec<Arc<NotificationRule>>)]) -> usize {
    let mut bytes = 0;
    for (e, rules) in fired {
        let r = notify::render(e, chrono::DateTime::UNIX_EPOCH);
        for rule in rules {
            for n in notify::build(rule, e, &r) {
                bytes += black_box(n.to_bytes()).len();
            }
        }
    }
    bytes
}

fn main() {
    let set = Arc::new(policy_set(POLICIES));
    let mut gen = EventGen::new(POLICIES, MATCH_RATE, 7);
    let events: Vec<Vec<u8>> = (0..EVENTS).map(|_| gen.bytes()).collect();
    let parsed: Vec<Event> = events
        .iter()
        .map(|b| Event::parse(b).expect("valid workload event"))
        .collect();
    let fired: Vec<(&Event, Vec<Arc<NotificationRule>>)> = parsed
        .iter()
        .map(|e| (e, set.matcher().evaluate(e).fired))
        .filter(|(_, rules)| !rules.is_empty())
        .collect();
    let mean_size = events.iter().map(Vec::len).sum::<usize>() as f64 / EVENTS as f64;
    let rate = fired.len() as f64 / EVENTS as f64;
    assert!((0.03..0.07).contains(&rate), "match rate {rate}");

    let mut c = common::criterion();
    {
        let mut g = c.benchmark_group("record_path");
        g.throughput(Throughput::Elements(EVENTS as u64));
        g.bench_function("bytes_to_notification_bytes", |b| {
            b.iter_batched(
                || common::engine(set.clone()),
                |engine| {
                    black_box(full_pass(&engine, &events));
                    engine // dropped outside the timed part
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("parse", |b| b.iter(|| parse_pass(&events)));
        g.bench_function("match", |b| b.iter(|| match_pass(&set, &parsed)));
        g.finish();
        let mut g = c.benchmark_group("record_path_render");
        g.throughput(Throughput::Elements(fired.len() as u64));
        g.bench_function("render_fired_events", |b| b.iter(|| render_pass(&fired)));
        g.finish();
    }

    if common::profiling() {
        return;
    }
    println!(
        "\nrecord path summary: {EVENTS} events of {mean_size:.0} bytes on average, \
         {POLICIES} policies, {:.1}% fire a rule (medians of interleaved runs)",
        rate * 100.0
    );
    let mut full = || {
        let e = common::engine(set.clone());
        black_box(full_pass(&e, &events));
    };
    let mut parse = || {
        black_box(parse_pass(&events));
    };
    let mut matching = || {
        black_box(match_pass(&set, &parsed));
    };
    let mut render = || {
        black_box(render_pass(&fired));
    };
    let t = common::interleaved(
        &[EVENTS, EVENTS, EVENTS, EVENTS],
        15,
        &mut [&mut full, &mut parse, &mut matching, &mut render],
    );
    let (full_ns, parse_ns, match_ns, render_ns) = (t[0], t[1], t[2], t[3]);
    println!(
        "  whole path {full_ns:.0} ns/event ({:.0} k events/s): parse {parse_ns:.0} ns ({:.0}%), \
         match {match_ns:.0} ns ({:.0}%), render+serialize {render_ns:.0} ns/event averaged over all \
         events ({:.0}%; {:.0} ns per firing event), rest (index, records) {:.0} ns",
        1e6 / full_ns,
        100.0 * parse_ns / full_ns,
        100.0 * match_ns / full_ns,
        100.0 * render_ns / full_ns,
        render_ns / rate,
        full_ns - parse_ns - match_ns - render_ns,
    );

    let e = common::engine(set.clone());
    let (_, full_allocs) = common::count_allocations(|| full_pass(&e, &events));
    let (_, parse_allocs) = common::count_allocations(|| parse_pass(&events));
    let (_, match_allocs) = common::count_allocations(|| match_pass(&set, &parsed));
    let (_, render_allocs) = common::count_allocations(|| render_pass(&fired));
    let per = |n: u64, d: usize| n as f64 / d as f64;
    println!(
        "  allocations: {:.1} per event on the whole path; parse {:.1} per event, match {:.2} per \
         event, render {:.1} per firing event",
        per(full_allocs, EVENTS),
        per(parse_allocs, EVENTS),
        per(match_allocs, EVENTS),
        per(render_allocs, fired.len()),
    );
    // Input formats (issue 16): record → Event for each shape, side by side with the native
    // record read as `authentik` (no detection) and as `auto`.
    let [envelope, schemas, unwrapped] = cdc_shapes(&events);
    let mut native_plain = || {
        black_box(shape_pass(Format::Authentik, &events));
    };
    let mut native_auto = || {
        black_box(shape_pass(Format::Auto, &events));
    };
    let mut env_auto = || {
        black_box(shape_pass(Format::Auto, &envelope));
    };
    let mut schemas_auto = || {
        black_box(shape_pass(Format::Auto, &schemas));
    };
    let mut row_auto = || {
        black_box(shape_pass(Format::Auto, &unwrapped));
    };
    let f = common::interleaved(
        &[EVENTS; 5],
        11,
        &mut [
            &mut native_plain,
            &mut native_auto,
            &mut env_auto,
            &mut schemas_auto,
            &mut row_auto,
        ],
    );
    let size = |rs: &[Vec<u8>]| rs.iter().map(Vec::len).sum::<usize>() / rs.len();
    println!(
        "  input formats (record -> Event, ns/event): native as `authentik` {:.0} ({} B); native as `auto` {:.0} ({:.2}x); \
         Debezium envelope {:.0} ({} B, {:.2}x); with schemas {:.0} ({} B, {:.2}x); unwrapped row {:.0} ({} B, {:.2}x)",
        f[0],
        size(&events),
        f[1],
        f[1] / f[0],
        f[2],
        size(&envelope),
        f[2] / f[0],
        f[3],
        size(&schemas),
        f[3] / f[0],
        f[4],
        size(&unwrapped),
        f[4] / f[0],
    );
    common::report(
        "record path events/s on one core",
        format!("{:.0} k", 1e6 / full_ns),
        ">= 400 k",
        1e6 / full_ns >= 400.0,
    );
    c.final_summary();
}
