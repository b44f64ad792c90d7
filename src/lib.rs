//! eventmatchd: authentik's event notification pipeline (event matcher policies, notification
//! rules, seen flags) as a Kafka sidecar. See `README.md` and `../shared/SPEC.md`.
//!
//! # Layout
//!
//! [`domain`] is the pure logic, no I/O (unit-tested without a broker):
//! * [`catalog`]: the API's enum lists (actions, apps, models), extendable by configuration.
//! * [`events`]: parsing and validating Event records.
//! * [`pyrepr`]: Python's `repr`, for notification bodies rendered as authentik renders them.
//! * [`policy`]: event matcher policies and their matching semantics.
//! * [`rules`]: notification rules and policy bindings.
//! * [`policyset`]: the immutable, versioned snapshot of policies, rules and bindings.
//! * [`matcher`]: rule evaluation compiled per snapshot (an index by criteria, plus the
//!   linear reference it is tested against).
//! * [`notify`]: building notifications and their deterministic pks.
//! * [`index`]: the held notifications (versions, deleted markers, eviction).
//! * [`validate`]: request-body validation with authentik's error shape and messages.
//! * [`control`]: control commands: envelope, routes, create/patch/replace/delete.
//! * [`engine`]: the state behind `arc-swap` and the two operations on it (process an event,
//!   apply a command), returning the records to produce.
//!
//! [`ingest`] (pure too) turns each input format (authentik's own shape, Debezium CDC) into
//! the record the engine takes.
//!
//! [`akql`] (pure too) is the policies' `query` language: parser, authentik's schema,
//! PostgreSQL's semantics.
//!
//! [`daemon`] is the Kafka/HTTP runtime: `run(settings, shutdown)` (start-up order, tasks,
//! drain on shutdown) and
//! * [`readers`]: the control and notification topics, read in full by every instance.
//! * [`pipeline`]: the event consumer group, at-least-once.
//! * [`effects`]: control side effects, emitted once by the control partition's owner.
//! * [`kafka`]: client settings, the output producer (permanent errors reported, retriable
//!   ones retried), topic creation.
//! * [`metrics`], [`http`]: Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` server.
//! * [`freeze`]: knowing that this process was stopped long enough to lose its partitions.
//! * [`watchdog`]: group lag from committed offsets, "no progress while work waits", group
//!   rejoins.
//!
//! The other edges, used by `main`:
//! * [`config`]: settings from `config/default.toml`, a file and the environment.
//! * [`replay`]: the offline NDJSON driver behind `eventmatchd replay`.
//! * [`tools`]: helper subcommands (send, tail, probe).
//!
//! Every module is also reachable at the crate root (`eventmatchd::engine`, ...), the paths the
//! tests, benches and examples use.
//!
//! Outside `src/`: `benches/` (criterion benches and their workload, BENCHMARKS.md),
//! `examples/bench_e2e.rs` (the end-to-end bench), `deploy/` (topics, Prometheus, Grafana,
//! Kubernetes; checked by `tests/deploy.rs`).

pub mod akql;
pub mod api;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod ingest;
pub mod replay;
pub mod tools;

pub use daemon::{effects, freeze, http, kafka, metrics, pipeline, readers, watchdog};
pub use domain::{
    catalog, control, engine, events, index, matcher, notify, policy, policyset, pyrepr, rules,
    validate,
};
