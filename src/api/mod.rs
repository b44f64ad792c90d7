//! authentik's REST API v3 for the resources eventmatchd owns, served on `http.listen`
//! (README "HTTP API"): event matcher policies, notification rules, policy bindings and
//! notifications, with authentik's paths, envelopes, filters, status codes and token
//! authentication, so that authentik's own clients (`authentik-client`, `@goauthentik/api`)
//! drive eventmatchd unchanged.
//!
//! * [`auth`]: bearer tokens from `[[api.tokens]]` (pure).
//! * [`list`]: query parameters, pagination, ordering and search as DRF does them (pure).
//! * [`select`]: each resource's list filters and detail views over a snapshot (pure).
//! * [`roundtrip`]: writes as control commands; their results read back by id (Kafka).
//! * [`guard`]: what every API request passes first: authentication, readiness, the body
//!   limit and timeout, the bound on requests in progress.
//! * [`handlers`]: the routes.
//!
//! Reads come from this instance's snapshot and notification index: consistent with the
//! version it has applied, which after a write through this instance includes that write.

pub mod auth;
pub mod guard;
pub mod handlers;
pub mod list;
pub mod roundtrip;
pub mod select;

use crate::config::Settings;
use crate::engine::Engine;
use crate::metrics::Metrics;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use roundtrip::ControlClient;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// An answer other than success: a status and authentik's JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    pub fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }

    /// `{"detail": ...}`, DRF's shape for errors not about one field.
    pub fn detail(status: u16, detail: impl Into<String>) -> Self {
        Self::new(status, json!({ "detail": detail.into() }))
    }

    pub fn not_found() -> Self {
        Self::detail(404, "Not found.")
    }
}

/// A JSON response (no body for 204).
pub fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// What the API reads and writes through; set once the instance has caught up with its
/// topics (until then every API request is 503).
pub struct Backend {
    pub engine: Arc<Engine>,
    pub control: Arc<ControlClient>,
}

/// The API's shared state.
pub struct Api {
    pub tokens: auth::Tokens,
    pub sizes: select::Sizes,
    pub body_limit: usize,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    /// Requests in progress; a request takes a permit only once its body is read, so a slow
    /// client never holds one.
    pub permits: Semaphore,
    /// Set once by the daemon when it is caught up; read by every request.
    pub backend: OnceLock<Backend>,
    pub stop: watch::Receiver<bool>,
}

impl Api {
    /// The API of these settings, or `None` when no token is configured (the API is off).
    pub fn new(settings: &Settings, stop: watch::Receiver<bool>) -> Option<Arc<Api>> {
        // Checked when the settings were loaded: a key file unreadable now is an empty list.
        let tokens = settings.api.resolve_tokens().unwrap_or_default();
        if tokens.is_empty() {
            return None;
        }
        Some(Arc::new(Api {
            tokens: auth::Tokens::new(tokens),
            sizes: select::Sizes {
                default: settings.api.default_page_size,
                max: settings.api.max_page_size,
            },
            body_limit: settings.api.body_limit_bytes,
            body_timeout: Duration::from_secs(settings.http.body_timeout_secs),
            write_timeout: Duration::from_secs(settings.api.write_timeout_secs),
            permits: Semaphore::new(settings.api.max_concurrent_requests),
            backend: OnceLock::new(),
            stop,
        }))
    }

    pub fn router(self: &Arc<Self>, metrics: Metrics) -> axum::Router {
        handlers::router(self.clone(), metrics)
    }
}
