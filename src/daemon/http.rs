//! `GET /metrics`, `GET /healthz` and `GET /readyz`.

use crate::metrics::Metrics;
use crate::watchdog::Beat;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What `/readyz` and `/healthz` report. Each flag is written by the task that owns that
/// condition and read by the HTTP handler; atomics, since they are independent booleans.
#[derive(Debug, Default)]
pub struct Health {
    /// The policy set and the notification index have caught up with their topics.
    pub caught_up: AtomicBool,
    /// The event pipeline task is running (cleared when it ends, for whatever reason).
    pub consuming: AtomicBool,
    /// The last broker metadata request succeeded.
    pub connected: AtomicBool,
    /// The event pipeline's progress (set once, when it starts).
    pub pipeline: std::sync::OnceLock<Arc<Beat>>,
    /// The control owner's progress (set once, when it starts).
    pub owner: std::sync::OnceLock<Arc<Beat>>,
}

impl Health {
    fn stalled(&self) -> bool {
        [&self.pipeline, &self.owner]
            .iter()
            .any(|b| b.get().is_some_and(|b| b.stalled()))
    }

    /// Ready: caught up, connected, the pipeline running and a member of its group (it has
    /// received an assignment, an empty one included), and nothing stalled.
    pub fn ready(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
            && self.consuming.load(Ordering::SeqCst)
            && self.connected.load(Ordering::SeqCst)
            && self
                .pipeline
                .get()
                .is_some_and(|b| b.joined() && !b.orphaned())
            && !self.stalled()
    }

    /// Alive: not stalled (see [`crate::watchdog`]).
    pub fn alive(&self) -> bool {
        !self.stalled()
    }

    fn report(&self) -> serde_json::Value {
        json!({
            "ready": self.ready(),
            "caught_up": self.caught_up.load(Ordering::SeqCst),
            "consuming": self.consuming.load(Ordering::SeqCst),
            "connected": self.connected.load(Ordering::SeqCst),
            "event_partitions": self.pipeline.get().map(|b| b.held().len()),
            "control_owner": self.owner.get().map(|b| !b.held().is_empty()),
            "stalled": self.stalled(),
            "orphaned": self.pipeline.get().is_some_and(|b| b.orphaned()),
        })
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
    started: std::time::Instant,
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics
        .uptime_seconds
        .set(s.started.elapsed().as_secs_f64());
    s.metrics.ready.set(i64::from(s.health.ready()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "stalled: no progress while work is waiting (see the logs and eventmatchd_stalled)\n",
        )
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let status = if s.health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(s.health.report()))
}

pub fn router(metrics_: Metrics, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics: metrics_,
            health,
            started: std::time::Instant::now(),
        })
}

/// Serves until shutdown.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(metrics, health);
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "http server failed");
    }
}
