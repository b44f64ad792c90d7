//! The HTTP listener: `GET /metrics`, `GET /healthz`, `GET /readyz` and, when tokens are
//! configured, the authentik API ([`crate::api`]).
//!
//! Served connection by connection (hyper) rather than by `axum::serve`, for what a listener
//! open to clients needs: a header timeout (also the idle limit between requests on a kept-alive
//! connection), a bound on open connections, and a graceful end on shutdown.

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
use std::time::Duration;
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

/// The methods that become a metrics label as they are.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every request by its route template (`MatchedPath`, never the raw path: pks would
/// make the label set unbounded) and observes its latency.
async fn track(
    State(metrics): State<Metrics>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), method, response.status().as_str()])
        .inc();
    metrics
        .http_request_duration
        .with_label_values(&[route.as_str(), method])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The whole application: health and metrics, the API when there is one, every route counted.
pub fn app(metrics: Metrics, health: Arc<Health>, api: Option<&Arc<crate::api::Api>>) -> Router {
    let mut app = router(metrics.clone(), health);
    if let Some(api) = api {
        app = app.merge(api.router(metrics.clone()));
    }
    app.layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Listener limits (`[http]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves until shutdown; open connections then finish their current request (bounded by the
/// daemon's drain deadline, after which the runtime ends them).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        // A connection slot first: past the bound, new connections wait in the accept queue.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are a client's (reset, malformed request, header timeout).
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
