//! The daemon: wires the engine to Kafka and runs until shutdown.
//!
//! Start-up order (SPEC §3): serve health at once (not ready); wait for the broker and the
//! topics; read the control topic to its end (the policy set) and the notification topic to
//! its end (the notification index); only then join the event consumer group and the control
//! group, and report ready. Shutdown: stop consuming, let the current batch and control command
//! be acknowledged and committed, flush, all within `shutdown.drain_timeout_secs`.

pub mod effects;
pub mod freeze;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod readers;
pub mod watchdog;

use crate::config::Settings;
use crate::engine::Engine;
use effects::OwnerDeps;
use http::Health;
use kafka::{KafkaSetupError, Output};
use metrics::Metrics;
use pipeline::PipelineDeps;
use rdkafka::producer::Producer;
use readers::{Outbox, Progress, Reach};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("http.listen {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: settings.http.listen.clone(),
            source,
        })?;
    tracing::info!(
        listen = %settings.http.listen,
        brokers = %settings.kafka.brokers,
        group = %settings.kafka.group_id,
        control_group = %settings.kafka.control_group_id,
        // Property names only: values may hold credentials.
        properties = ?settings.kafka.librdkafka_properties().keys().collect::<Vec<_>>(),
        "starting eventmatchd"
    );
    let api = crate::api::Api::new(&settings, stop_rx.clone());
    if api.is_some() {
        tracing::info!(
            tokens = settings.api.tokens.len(),
            "authentik API on /api/v3/"
        );
    }
    let http_task = tokio::spawn(http::serve(
        listener,
        http::app(metrics.clone(), health.clone(), api.as_ref()),
        http::Limits {
            header_timeout: Duration::from_secs(settings.http.header_timeout_secs),
            max_connections: settings.http.max_connections,
        },
        stop_rx.clone(),
    ));
    let daemon = run_kafka(settings, metrics, health, api, stop_rx);
    tokio::pin!(daemon);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = &mut daemon => r,
        _ = &mut shutdown => {
            tracing::info!("shutdown requested: draining");
            let _ = stop_tx.send(true);
            daemon.await
        }
    };
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    result
}

/// Retries `f` until it succeeds or shutdown is requested (`None`).
async fn until_ok<T, E: std::fmt::Display>(
    what: &str,
    stop: &mut watch::Receiver<bool>,
    mut f: impl FnMut() -> Result<T, E>,
) -> Option<T> {
    loop {
        match tokio::task::block_in_place(&mut f) {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %e, "waiting for {what}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

async fn run_kafka(
    settings: Settings,
    metrics: Metrics,
    health: Arc<Health>,
    api: Option<Arc<crate::api::Api>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let engine = Arc::new(
        Engine::new(settings.catalog(), settings.notifications.max_held)
            .with_anonymous_user_pk(settings.authentik.anonymous_user_pk())
            .with_max_record_bytes(settings.kafka.max_record_bytes())
            .with_gone_horizon(settings.notifications.deleted_horizon_secs as i64)
            .with_format(settings.events.format),
    );
    // The notification topic is read in topic order, not by age: evict by age once caught up.
    engine.index().pause_eviction();
    let output = Output::new(&settings, metrics.clone())?;
    let control_reader = kafka::reader(&settings, "control-reader")?;
    let tail = kafka::reader(&settings, "notification-tail")?;
    let probe = Arc::new(kafka::reader(&settings, "probe")?);
    let owner_beat = crate::watchdog::Beat::new();
    let pipeline_beat = crate::watchdog::Beat::new();
    let _ = health.owner.set(owner_beat.clone());
    let _ = health.pipeline.set(pipeline_beat.clone());
    let owner = effects::owner_consumer(&settings, metrics.clone(), owner_beat.clone())?;
    let t = settings.topics.clone();

    // Every topic must exist; the control and notification topics are read in full.
    let Some((control_parts, tail_parts, events_parts)) =
        until_ok("the broker and topics", &mut stop, || {
            for (key, name) in t.all() {
                kafka::partitions(&probe, key, name, METADATA_TIMEOUT)?;
            }
            Ok::<_, KafkaSetupError>((
                kafka::partitions(&probe, "topics.control", &t.control, METADATA_TIMEOUT)?,
                kafka::partitions(
                    &probe,
                    "topics.notifications",
                    &t.notifications,
                    METADATA_TIMEOUT,
                )?,
                kafka::partitions(&probe, "topics.events", &t.events, METADATA_TIMEOUT)?,
            ))
        })
        .await
    else {
        return Ok(());
    };
    if control_parts.len() > 1 {
        tracing::warn!(partitions = control_parts.len(), topic = %t.control, "the control topic should have one partition: commands in different partitions have no order between them");
    }
    health.connected.store(true, Ordering::SeqCst);

    let outbox = Arc::new(Outbox::default());
    let Some(floor) = until_ok("the control group's offsets", &mut stop, || {
        effects::committed_floor(&owner, &t.control, &control_parts)
    })
    .await
    else {
        return Ok(());
    };
    for (p, o) in &floor {
        outbox.set_floor(*p, *o);
    }
    let ends =
        |topic: &str, parts: &[i32]| kafka::high_watermarks(&probe, topic, parts, METADATA_TIMEOUT);
    let Some(control_end) = until_ok("control topic offsets", &mut stop, || {
        ends(&t.control, &control_parts)
    })
    .await
    else {
        return Ok(());
    };
    let Some(tail_end) = until_ok("notification topic offsets", &mut stop, || {
        ends(&t.notifications, &tail_parts)
    })
    .await
    else {
        return Ok(());
    };

    let mut tasks_early = Vec::new();
    let control_progress = Arc::new(Progress::default());
    let tail_progress = Arc::new(Progress::default());
    let tail_topic = t.notifications.clone();
    let probe_for_tail = probe.clone();
    let tail_parts_for_ends = tail_parts.clone();
    let tail_watermarks: Arc<
        dyn Fn() -> Option<std::collections::HashMap<i32, i64>> + Send + Sync,
    > = Arc::new(move || {
        kafka::high_watermarks(
            &probe_for_tail,
            &tail_topic,
            &tail_parts_for_ends,
            METADATA_TIMEOUT,
        )
        .ok()
    });
    // The API's writes: the results topic is read from its end as of now, before any write
    // can be taken.
    let mut api_backend = None;
    if api.is_some() {
        let client = Arc::new(crate::api::roundtrip::ControlClient::new(
            &settings,
            output.producer().clone(),
            engine.clone(),
            control_progress.clone(),
            tail_progress.clone(),
            tail_watermarks.clone(),
        ));
        let reader = tokio::task::block_in_place(|| {
            crate::api::roundtrip::results_reader(&settings, client.clone(), stop.clone())
        })?;
        tasks_early.push(tokio::spawn(reader));
        api_backend = Some(client);
    }
    readers::assign_all(&control_reader, &t.control, &control_parts)?;
    readers::assign_all(&tail, &t.notifications, &tail_parts)?;
    let mut tasks = tasks_early;
    tasks.push(tokio::spawn(readers::run_control_reader(
        control_reader,
        engine.clone(),
        metrics.clone(),
        control_progress.clone(),
        outbox.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(readers::run_notification_tail(
        tail,
        engine.clone(),
        metrics.clone(),
        tail_progress.clone(),
        stop.clone(),
    )));

    let started = Instant::now();
    if !control_progress
        .wait_for(&control_end, Reach::CaughtUp, &mut stop)
        .await
    {
        return join_all(tasks).await;
    }
    let control_secs = started.elapsed().as_secs_f64();
    metrics
        .catch_up_seconds
        .with_label_values(&["control"])
        .set(control_secs);
    readers::publish_policy_gauges(&engine, &metrics);
    let snap = engine.snapshot();
    tracing::info!(seconds = control_secs, commands = ?control_end, version = snap.version(), policies = snap.policies().len(), rules = snap.rules().len(), bindings = snap.bindings().len(), "policy set caught up");
    // Both readers started together; each time is from that start to caught up.
    if !tail_progress
        .wait_for(&tail_end, Reach::CaughtUp, &mut stop)
        .await
    {
        return join_all(tasks).await;
    }
    let tail_secs = started.elapsed().as_secs_f64();
    metrics
        .catch_up_seconds
        .with_label_values(&["notifications"])
        .set(tail_secs);
    tracing::info!(
        seconds = tail_secs,
        held = engine.index().len(),
        "notification index caught up"
    );
    let evicted = engine.index().evict_by_age();
    if evicted > 0 {
        tracing::info!(
            evicted,
            max = settings.notifications.max_held,
            "evicted the oldest notifications beyond notifications.max_held"
        );
    }
    health.caught_up.store(true, Ordering::SeqCst);

    if let (Some(api), Some(control)) = (&api, api_backend) {
        let _ = api.backend.set(crate::api::Backend {
            engine: engine.clone(),
            control,
        });
    }
    tasks.push(tokio::spawn(effects::run_control_owner(
        owner,
        OwnerDeps {
            settings: settings.clone(),
            engine: engine.clone(),
            metrics: metrics.clone(),
            output: output.clone(),
            control_progress: control_progress.clone(),
            outbox: outbox.clone(),
            control_partitions: control_parts.clone(),
            tail_progress: tail_progress.clone(),
            tail_watermarks: tail_watermarks.clone(),
            // A pause of half the session timeout may already have cost the membership (the
            // last heartbeat can be up to an interval older than the pause); after one, wait
            // two heartbeats for the coordinator's answer and the callback it causes.
            freeze: freeze::FreezeClock::start(
                settings.kafka.session_timeout() / 2,
                settings.kafka.heartbeat_interval() * 2 + Duration::from_secs(1),
                metrics.freezes.clone(),
            ),
        },
        stop.clone(),
    )));

    let events = pipeline::consumer(&settings, metrics.clone(), pipeline_beat.clone())?;
    let pipeline_health = health.clone();
    let pipeline_run = pipeline::run(
        events,
        PipelineDeps {
            settings: settings.clone(),
            engine: engine.clone(),
            metrics: metrics.clone(),
            output: output.clone(),
            tail_progress: tail_progress.clone(),
            tail_watermarks,
        },
        stop.clone(),
    );
    let pipeline_task = tokio::spawn(async move {
        pipeline_run.await;
        // However it ended, the instance is no longer consuming: not ready.
        pipeline_health.consuming.store(false, Ordering::SeqCst);
    });
    health.consuming.store(true, Ordering::SeqCst);
    tasks.push(tokio::spawn(crate::watchdog::run(
        settings.clone(),
        vec![
            crate::watchdog::Watched {
                name: "pipeline",
                beat: pipeline_beat,
                group: settings.kafka.group_id.clone(),
                topic: t.events.clone(),
                partitions: events_parts.clone(),
            },
            crate::watchdog::Watched {
                name: "control_owner",
                beat: owner_beat,
                group: settings.kafka.control_group_id.clone(),
                topic: t.control.clone(),
                partitions: control_parts.clone(),
            },
        ],
        metrics.clone(),
        stop.clone(),
    )));
    tracing::info!("ready");

    // Housekeeping: expire notifications, watch the broker connection.
    let sweep_every = Duration::from_secs(settings.notifications.sweep_interval_secs);
    let mut sweep = tokio::time::interval(sweep_every);
    let mut connectivity = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                let gone = engine.index().sweep_expired(chrono::Utc::now());
                if gone > 0 {
                    tracing::info!(expired = gone, "dropped notifications of expired events");
                }
                metrics.notifications_held.set(engine.index().len() as i64);
            }
            _ = connectivity.tick() => {
                let ok = tokio::task::block_in_place(|| {
                    output.producer().client().fetch_metadata(Some(&t.events), Duration::from_secs(3)).is_ok()
                });
                if ok != health.connected.swap(ok, Ordering::SeqCst) {
                    if ok { tracing::info!("broker reachable again") } else { tracing::warn!("broker unreachable") }
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Not ready any more: a load balancer or Kubernetes stops routing to a draining instance.
    health.consuming.store(false, Ordering::SeqCst);

    // Drain: the pipeline and the control owner finish their current work and commit.
    let deadline = Duration::from_secs(settings.shutdown.drain_timeout_secs);
    let drain_started = Instant::now();
    tasks.push(pipeline_task);
    if tokio::time::timeout(deadline, join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = deadline.as_secs(),
            "drain deadline passed; exiting with uncommitted work (it will be reprocessed)"
        );
    }
    let left = deadline
        .saturating_sub(drain_started.elapsed())
        .max(Duration::from_millis(100));
    if let Err(e) = output.flush(left) {
        tracing::warn!(error = %e, "flushing the producer");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) -> Result<(), DaemonError> {
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a daemon task failed");
        }
    }
    Ok(())
}
