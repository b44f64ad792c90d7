//! What every API request passes before its handler, in this order: authentication (403,
//! before anything is read), the instance being caught up (503), the body limit (413, from
//! `Content-Length` at once or while reading) and the body timeout (408), then a permit of the
//! bound on requests in progress (503 after `api.write_timeout_secs`).

use super::{Api, ApiError};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;

pub async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    match admit(&api, req).await {
        Ok((req, permit)) => {
            let response = next.run(req).await;
            drop(permit);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn admit(
    api: &Arc<Api>,
    req: Request,
) -> Result<(Request, tokio::sync::SemaphorePermit<'_>), ApiError> {
    let principal = api
        .tokens
        .authenticate(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        )
        .map_err(|d| ApiError::detail(403, d.detail()))?;
    if api.backend.get().is_none() {
        return Err(ApiError::detail(
            503,
            "eventmatchd is starting: its policy set and notifications are not caught up yet.",
        ));
    }
    let too_large = || {
        ApiError::detail(
            413,
            format!(
                "Request body larger than the limit of {} bytes.",
                api.body_limit
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > api.body_limit as u64) {
        return Err(too_large());
    }
    let (mut parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, api.body_limit);
    let bytes: Bytes = match tokio::time::timeout(api.body_timeout, limited.collect()).await {
        Err(_) => return Err(ApiError::detail(408, "Request body not received in time.")),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) => return Err(ApiError::detail(400, "The request body could not be read.")),
        Ok(Ok(c)) => c.to_bytes(),
    };
    let permit = match tokio::time::timeout(api.write_timeout, api.permits.acquire()).await {
        Ok(Ok(p)) => p,
        _ => {
            return Err(ApiError::detail(
                503,
                "Too many requests in progress; retry later.",
            ))
        }
    };
    parts.extensions.insert(principal);
    Ok((Request::from_parts(parts, Body::from(bytes)), permit))
}
