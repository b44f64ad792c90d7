//! Prometheus metrics. One [`Metrics`] per daemon, registered in its own registry (so tests
//! can run several daemons in one process) and rendered by `GET /metrics`.
//!
//! Every metric is listed, with its labels, in the README's metrics reference; a test scrapes
//! a running daemon and checks the two agree.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub events_consumed: IntCounter,
    pub events_invalid: IntCounterVec,
    pub events_skipped: IntCounterVec,
    pub notifications_emitted: IntCounterVec,
    pub executions_emitted: IntCounter,
    pub notifications_dropped: IntCounterVec,
    pub seen_updates: IntCounter,
    pub notifications_healed: IntCounter,
    pub freezes: IntCounter,
    pub control_commands: IntCounterVec,
    pub control_side_effects: IntCounter,
    pub policy_set_version: IntGauge,
    pub policy_set_size: IntGaugeVec,
    pub policy_queries_invalid: IntGauge,
    pub notifications_held: IntGauge,
    pub consumer_lag: IntGaugeVec,
    pub processing_latency: Histogram,
    pub control_apply_latency: Histogram,
    pub producer_errors: IntCounter,
    pub group_lag: IntGaugeVec,
    pub stalled: IntGaugeVec,
    pub progress_age: prometheus::GaugeVec,
    pub commit_errors: IntCounterVec,
    pub group_rejoins: IntCounterVec,
    pub records_rejected: IntCounterVec,
    pub catch_up_seconds: prometheus::GaugeVec,
    pub ready: IntGauge,
    pub control_owner: IntGauge,
    pub batch_size: Histogram,
    pub uptime_seconds: Gauge,
    pub http_requests: IntCounterVec,
    pub http_request_duration: prometheus::HistogramVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; a bad one is a programming error caught by every test.
    r.expect("valid metric definition")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = must(IntCounter::new(name, help));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = must(IntGauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = must(Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(buckets),
            ));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let latency_buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let catch_up_seconds = must(prometheus::GaugeVec::new(
            Opts::new(
                "eventmatchd_catch_up_seconds",
                "Time spent at start reading a topic up to its end before serving",
            ),
            &["topic"],
        ));
        must(registry.register(Box::new(catch_up_seconds.clone())));
        let progress_age = must(prometheus::GaugeVec::new(
            Opts::new(
                "eventmatchd_progress_age_seconds",
                "Seconds since the component last finished work while holding partitions (0 when it holds none)",
            ),
            &["component"],
        ));
        must(registry.register(Box::new(progress_age.clone())));
        let uptime_seconds = must(Gauge::new(
            "eventmatchd_uptime_seconds",
            "Seconds since the daemon started",
        ));
        must(registry.register(Box::new(uptime_seconds.clone())));
        let http_request_duration = must(prometheus::HistogramVec::new(
            HistogramOpts::new(
                "eventmatchd_http_request_duration_seconds",
                "HTTP request latency (headers received to response), by route template and method",
            )
            .buckets(latency_buckets.clone()),
            &["route", "method"],
        ));
        must(registry.register(Box::new(http_request_duration.clone())));
        let m = Metrics {
            http_request_duration,
            http_requests: counter_vec(
                "eventmatchd_http_requests_total",
                "HTTP requests answered, by route template (never the raw path), method and status",
                &["route", "method", "status"],
            ),
            events_consumed: counter(
                "eventmatchd_events_consumed_total",
                "Event records consumed from the events topic",
            ),
            events_invalid: counter_vec(
                "eventmatchd_events_invalid_total",
                "Invalid event records sent to the dead-letter topic, by reason",
                &["reason"],
            ),
            events_skipped: counter_vec(
                "eventmatchd_events_skipped_total",
                "Records of the event topic that are not events (CDC tombstones, updates, deletes, truncates, messages), by reason; never dead-lettered",
                &["reason"],
            ),
            notifications_emitted: counter_vec(
                "eventmatchd_notifications_emitted_total",
                "New notifications produced, by severity and rule name",
                &["severity", "rule"],
            ),
            executions_emitted: counter(
                "eventmatchd_policy_executions_emitted_total",
                "policy_execution events produced for policies with execution_logging",
            ),
            notifications_dropped: counter_vec(
                "eventmatchd_notifications_dropped_total",
                "Notifications a fired rule could not make, by reason (null_body: context.message is null)",
                &["reason"],
            ),
            freezes: counter(
                "eventmatchd_freezes_total",
                "Times this process did not run for at least half the group session timeout (SIGSTOP, a paused VM, a starved host)",
            ),
            notifications_healed: counter(
                "eventmatchd_notifications_healed_total",
                "Notification states re-emitted by the control owner because an older state was written after them (a zombie instance's late write)",
            ),
            seen_updates: counter(
                "eventmatchd_seen_updates_total",
                "Notification records re-emitted by PATCH or mark_all_seen",
            ),
            control_commands: counter_vec(
                "eventmatchd_control_commands_total",
                "Control commands applied by this instance, by resource, method and status",
                &["resource", "method", "status"],
            ),
            control_side_effects: counter(
                "eventmatchd_control_side_effects_total",
                "Control commands whose side effects (result record, notification updates) this instance emitted",
            ),
            policy_set_version: gauge(
                "eventmatchd_policy_set_version",
                "Version of the policy set in use",
            ),
            policy_set_size: gauge_vec(
                "eventmatchd_policy_set_size",
                "Objects in the policy set in use, by kind (policies, rules, bindings)",
                &["kind"],
            ),
            policy_queries_invalid: gauge(
                "eventmatchd_policy_queries_invalid",
                "Policies in the set in use whose AKQL query does not compile (their bindings are false for every event)",
            ),
            notifications_held: gauge(
                "eventmatchd_notifications_held",
                "Notifications held in memory for seen updates and replay safety",
            ),
            consumer_lag: gauge_vec(
                "eventmatchd_consumer_lag",
                "Records between the committed offset and the end of each events partition",
                &["topic", "partition"],
            ),
            processing_latency: histogram(
                "eventmatchd_processing_latency_seconds",
                "Event record timestamp to its outputs being acknowledged by the broker",
                latency_buckets.clone(),
            ),
            control_apply_latency: histogram(
                "eventmatchd_control_apply_latency_seconds",
                "Control record timestamp to the command being visible to matching",
                latency_buckets,
            ),
            records_rejected: counter_vec(
                "eventmatchd_records_rejected_total",
                "Output records the broker or librdkafka refused permanently (too large, invalid), by output topic; replaced by a compact dead letter or a 413 result",
                &["topic"],
            ),
            group_lag: gauge_vec(
                "eventmatchd_group_lag",
                "End offset minus the group's committed offset, per partition, read by the watchdog from the broker (independent of the pipeline)",
                &["group", "topic", "partition"],
            ),
            stalled: gauge_vec(
                "eventmatchd_stalled",
                "1 while the component holds partitions with lag and has made no progress for watchdog.deadline_secs",
                &["component"],
            ),
            progress_age,
            group_rejoins: counter_vec(
                "eventmatchd_group_rejoins_total",
                "Times this instance left and joined a group again because the group made no progress while it held none of its partitions",
                &["component"],
            ),
            commit_errors: counter_vec(
                "eventmatchd_commit_errors_total",
                "Offset commits that failed, by consumer group",
                &["group"],
            ),
            producer_errors: counter(
                "eventmatchd_producer_errors_total",
                "Failed deliveries (each is retried until it succeeds)",
            ),
            catch_up_seconds,
            ready: gauge(
                "eventmatchd_ready",
                "1 when caught up and connected (what /readyz answers), else 0",
            ),
            control_owner: gauge(
                "eventmatchd_control_owner",
                "1 while this instance owns the control partition in the control group and emits side effects",
            ),
            batch_size: histogram(
                "eventmatchd_batch_size",
                "Event records processed per batch",
                vec![1.0, 10.0, 100.0, 1000.0, 10000.0],
            ),
            uptime_seconds,
            registry,
        };
        // Counters whose label values are known up front start at 0, so that they are
        // exported (and `rate`/`increase` see their first increment) before anything happens.
        for topic in ["notifications", "results", "dlq", "executions"] {
            m.records_rejected.with_label_values(&[topic]);
        }
        for component in ["pipeline", "control_owner"] {
            m.group_rejoins.with_label_values(&[component]);
        }
        m.notifications_dropped.with_label_values(&["null_body"]);
        for reason in crate::events::EventError::REASONS {
            m.events_invalid.with_label_values(&[reason]);
        }
        for reason in crate::ingest::SKIP_REASONS {
            m.events_skipped.with_label_values(&[reason]);
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Names of every registered metric family.
    pub fn names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format_with_labels() {
        let m = Metrics::new();
        m.events_invalid.with_label_values(&["not_json"]).inc();
        m.notifications_emitted
            .with_label_values(&["alert", "security"])
            .inc_by(2);
        let text = m.render();
        assert!(text.contains("eventmatchd_events_invalid_total{reason=\"not_json\"} 1"));
        assert!(text.contains(
            "eventmatchd_notifications_emitted_total{rule=\"security\",severity=\"alert\"} 2"
        ));
        assert!(text.contains("# TYPE eventmatchd_processing_latency_seconds histogram"));
    }

    #[test]
    fn two_instances_do_not_collide() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.events_consumed.inc();
        assert!(b.render().contains("eventmatchd_events_consumed_total 0"));
    }
}
