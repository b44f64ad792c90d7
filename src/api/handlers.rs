//! The routes, under `/api/v3/`, trailing slash as authentik. Each resource has list, create,
//! retrieve, update (PUT), partial_update (PATCH), destroy and `used_by`; notifications have
//! no create and add `mark_all_seen/`.

use super::auth::{Denied, Principal};
use super::list::Params;
use super::roundtrip::{Applied, WriteError};
use super::select;
use super::{json_response, Api, ApiError, Backend};
use crate::control::{Resource, Route};
use crate::metrics::Metrics;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

type ApiState = State<Arc<Api>>;

pub fn router(api: Arc<Api>, _metrics: Metrics) -> Router {
    let mut r: Router<Arc<Api>> = Router::new();
    for (prefix, notifications) in [
        ("/api/v3/policies/event_matcher", false),
        ("/api/v3/events/rules", false),
        ("/api/v3/policies/bindings", false),
        ("/api/v3/events/notifications", true),
    ] {
        let list_route: MethodRouter<Arc<Api>> = if notifications {
            get(list)
        } else {
            get(list).post(write)
        };
        r = r
            .route(&format!("{prefix}/"), list_route.fallback(not_allowed))
            .route(
                &format!("{prefix}/{{pk}}/"),
                get(detail)
                    .put(write)
                    .patch(write)
                    .delete(write)
                    .fallback(not_allowed),
            )
            .route(
                &format!("{prefix}/{{pk}}/used_by/"),
                get(used_by).fallback(not_allowed),
            );
    }
    r = r
        .route(
            "/api/v3/events/notifications/mark_all_seen/",
            axum::routing::post(write).fallback(not_allowed),
        )
        .route("/api/v3/{*rest}", any(not_found))
        .route("/api/v3/", any(not_found));
    r.layer(axum::middleware::from_fn_with_state(
        api.clone(),
        super::guard::guard,
    ))
    // The guard enforces `api.body_limit_bytes`; axum's own default must not cut in first.
    .layer(DefaultBodyLimit::disable())
    .with_state(api)
}

fn backend(api: &Api) -> Result<&Backend, ApiError> {
    // The guard admitted the request only once the backend was set.
    api.backend
        .get()
        .ok_or_else(|| ApiError::detail(503, "eventmatchd is starting."))
}

/// The route of a path, 404 for a malformed pk (Django's URL patterns do not match it).
fn route(path: &str) -> Result<Route, ApiError> {
    Route::parse(path).map_err(|_| ApiError::not_found())
}

fn forbidden() -> ApiError {
    ApiError::detail(403, Denied::Permission.detail())
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn not_allowed(method: Method) -> ApiError {
    ApiError::detail(405, format!("Method \"{method}\" not allowed."))
}

async fn list(State(api): ApiState, Extension(who): Extension<Principal>, uri: Uri) -> Response {
    let run = || -> Result<Value, ApiError> {
        let b = backend(&api)?;
        let params = Params::parse(uri.query());
        let set = b.engine.snapshot();
        let empty = crate::policyset::PolicySet::empty();
        // Policies, rules and bindings are the admin's: anyone else lists none (authentik's
        // object permissions filter the list) and may change none.
        let visible = if who.admin { &*set } else { &empty };
        match route(uri.path())? {
            Route::Policies => select::policies(visible, b.engine.catalog(), &params, api.sizes),
            Route::Rules => select::rules(visible, &params, api.sizes),
            Route::Bindings => select::bindings(visible, &params, api.sizes),
            Route::Notifications => {
                select::notifications(b.engine.index(), &who, &params, api.sizes)
            }
            _ => Err(ApiError::not_found()),
        }
    };
    match run() {
        Ok(v) => json_response(200, &v),
        Err(e) => e.into_response(),
    }
}

/// The object a detail route names, as this principal may see it.
fn object(b: &Backend, who: &Principal, route: Route) -> Result<Value, ApiError> {
    let set = b.engine.snapshot();
    let found = match route {
        Route::Policy(pk) if who.admin => set
            .policies()
            .get(&pk)
            .map(|p| select::policy_body(&set, p)),
        Route::Rule(pk) if who.admin => set.rules().get(&pk).map(|r| select::rule_body(r)),
        Route::Binding(pk) if who.admin => set
            .bindings()
            .get(&pk)
            .map(|x| select::binding_body(&set, x)),
        Route::Notification(pk) => b
            .engine
            .index()
            .get(&pk)
            .filter(|n| select::may_see(who, n))
            .map(|n| select::notification_body(&n)),
        _ => None,
    };
    found.ok_or_else(ApiError::not_found)
}

async fn detail(State(api): ApiState, Extension(who): Extension<Principal>, uri: Uri) -> Response {
    match backend(&api).and_then(|b| object(b, &who, route(uri.path())?)) {
        Ok(v) => json_response(200, &v),
        Err(e) => e.into_response(),
    }
}

/// `used_by/`: what uses the object. Nothing in eventmatchd uses these objects in the sense
/// authentik means (its `UsedByMixin` follows foreign keys to other models): `[]`.
async fn used_by(State(api): ApiState, Extension(who): Extension<Principal>, uri: Uri) -> Response {
    let path = uri.path().trim_end_matches('/').trim_end_matches("used_by");
    match backend(&api).and_then(|b| object(b, &who, route(path)?)) {
        Ok(_) => json_response(200, &json!([])),
        Err(e) => e.into_response(),
    }
}

/// DRF parses a body only for a JSON content type; anything else with a body is 415.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        // An empty body is DRF's empty data: `{}`.
        return Ok(json!({}));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        let media = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" && !media.ends_with("+json") {
            let shown: String = ct.chars().take(100).collect();
            return Err(ApiError::detail(
                415,
                format!("Unsupported media type \"{shown}\" in request."),
            ));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's message names a position, never the input; cut it short all the same.
        let msg: String = e.to_string().chars().take(200).collect();
        ApiError::detail(400, format!("JSON parse error - {msg}"))
    })
}

async fn write(
    State(api): ApiState,
    Extension(who): Extension<Principal>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match write_inner(&api, who, method, uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn write_inner(
    api: &Api,
    who: Principal,
    method: Method,
    uri: Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = backend(api)?;
    let route = route(uri.path())?;
    let notification = route.resource() == Resource::Notification;
    if !notification && !who.admin {
        return Err(forbidden());
    }
    if let Route::Notification(pk) = route {
        // Someone else's notification does not exist for a non-admin (authentik's owner
        // filter); checked here, so no command is written for it.
        if !b
            .engine
            .index()
            .get(&pk)
            .is_some_and(|n| select::may_see(&who, &n))
        {
            return Err(ApiError::not_found());
        }
    }
    let command_body = match (route, &method) {
        // authentik marks the requesting user's notifications; the request has no body.
        (Route::MarkAllSeen, _) => Some(json!({ "user": who.user })),
        (_, &Method::DELETE) => None,
        _ => Some(parse_body(headers, &body)?),
    };
    let applied = match (route, &method) {
        (Route::Notification(pk), &Method::DELETE) => Applied::Deleted(pk),
        (Route::Notification(pk), _) => Applied::Notification(pk),
        (Route::MarkAllSeen, _) => Applied::Tail,
        _ => Applied::Control,
    };
    let answer = b
        .control
        .submit(
            method.as_str(),
            uri.path(),
            command_body,
            applied,
            api.stop.clone(),
        )
        .await
        .map_err(|e| {
            let status = match &e {
                WriteError::Timeout { .. } => 504,
                WriteError::Produce(k) if crate::kafka::is_too_large(k) => 413,
                _ => 503,
            };
            if status != 504 {
                tracing::warn!(error = %e, path = uri.path(), "API write failed");
            }
            ApiError::detail(status, e.to_string())
        })?;
    Ok(json_response(answer.status, &answer.body))
}
