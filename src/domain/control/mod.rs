//! Control commands (SPEC §2.3): the envelope, routing, validation, and applying a command to
//! a policy set. Pure: [`execute`] takes the current snapshot and returns the next one (if the
//! command changed it) and the response; notification commands act on the
//! [`NotificationIndex`] and report the records to emit.
//!
//! The handlers of each resource are in [`resources`].
//!
//! An invalid command changes nothing: every check runs against the current snapshot before
//! the next one is built, and a command either yields a whole new version or none.

mod resources;

use crate::catalog::Catalog;
use crate::index::NotificationIndex;
use crate::notify::Notification;
use crate::policyset::PolicySet;
use crate::validate::{python_type, Errors, REQUIRED};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use uuid::Uuid;

/// authentik `PolicyBindingSerializer.validate`, for a rule's targets ('group', 'policy', 'user').
pub const BINDING_TARGETS_NONE: &str = "One of 'group', 'policy', 'user' must be set.";
pub const BINDING_TARGETS_MANY: &str = "Only one of 'group', 'policy', 'user' can be set.";
/// A group or user binding, which authentik accepts but eventmatchd cannot evaluate.
pub const BINDING_DIRECTORY_UNSUPPORTED: &str =
    "eventmatchd evaluates policy bindings only: it has no user or group directory.";

/// Namespace of pks derived for a POST without `pk`: `uuid5(NS, "{partition}/{offset}")`.
pub const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x3b8c_52d4_1e6f_4a7b_8c9d_0e1f_2a3b_4c5d);

/// Where a command record came from; a POST without `pk` derives it from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSource {
    pub partition: i32,
    pub offset: i64,
}

impl CommandSource {
    pub fn derived_pk(&self) -> Uuid {
        Uuid::new_v5(
            &COMMAND_NAMESPACE,
            format!("{}/{}", self.partition, self.offset).as_bytes(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// The resource a path names; the label used in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Policy,
    Rule,
    Binding,
    Notification,
    Unknown,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Policy => "policy",
            Resource::Rule => "rule",
            Resource::Binding => "binding",
            Resource::Notification => "notification",
            Resource::Unknown => "unknown",
        }
    }
}

/// A routed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Policies,
    Policy(Uuid),
    Rules,
    Rule(Uuid),
    Bindings,
    Binding(Uuid),
    Notifications,
    Notification(Uuid),
    MarkAllSeen,
}

impl Route {
    /// Parses an API path. The `/api/v3` prefix and the trailing slash are optional.
    /// `Err(())` is a 404: an unknown path or a malformed uuid.
    ///
    /// ```
    /// use eventmatchd::control::Route;
    /// assert_eq!(Route::parse("/api/v3/events/notifications/mark_all_seen/"), Ok(Route::MarkAllSeen));
    /// assert!(matches!(Route::parse("/events/rules/6b0f9c4e-0000-4000-8000-000000000000"), Ok(Route::Rule(_))));
    /// assert_eq!(Route::parse("/events/rules/not-a-uuid/"), Err(()));
    /// ```
    #[allow(clippy::result_unit_err)]
    pub fn parse(path: &str) -> Result<Route, ()> {
        let path = path.strip_prefix("/api/v3").unwrap_or(path);
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let id = |s: &str| Uuid::parse_str(s).map_err(|_| ());
        match parts.as_slice() {
            ["policies", "event_matcher"] => Ok(Route::Policies),
            ["policies", "event_matcher", u] => Ok(Route::Policy(id(u)?)),
            ["events", "rules"] => Ok(Route::Rules),
            ["events", "rules", u] => Ok(Route::Rule(id(u)?)),
            ["policies", "bindings"] => Ok(Route::Bindings),
            ["policies", "bindings", u] => Ok(Route::Binding(id(u)?)),
            ["events", "notifications"] => Ok(Route::Notifications),
            ["events", "notifications", "mark_all_seen"] => Ok(Route::MarkAllSeen),
            ["events", "notifications", u] => Ok(Route::Notification(id(u)?)),
            _ => Err(()),
        }
    }

    /// The uuid of a detail route.
    pub fn id(self) -> Option<Uuid> {
        match self {
            Route::Policy(u) | Route::Rule(u) | Route::Binding(u) | Route::Notification(u) => {
                Some(u)
            }
            _ => None,
        }
    }

    pub fn resource(self) -> Resource {
        match self {
            Route::Policies | Route::Policy(_) => Resource::Policy,
            Route::Rules | Route::Rule(_) => Resource::Rule,
            Route::Bindings | Route::Binding(_) => Resource::Binding,
            Route::Notifications | Route::Notification(_) | Route::MarkAllSeen => {
                Resource::Notification
            }
        }
    }

    fn allows(self, m: Method) -> bool {
        match self {
            Route::Policies | Route::Rules | Route::Bindings | Route::MarkAllSeen => {
                m == Method::Post
            }
            Route::Policy(_) | Route::Rule(_) | Route::Binding(_) => {
                matches!(m, Method::Put | Method::Patch | Method::Delete)
            }
            // authentik's NotificationViewSet is an UpdateModelMixin: PUT is allowed, and with
            // every writable field optional it has PATCH's effect.
            Route::Notification(_) => matches!(m, Method::Put | Method::Patch | Method::Delete),
            Route::Notifications => false,
        }
    }
}

/// The result record of one command (SPEC §2.3).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandResult {
    pub id: Value,
    pub method: Value,
    pub path: Value,
    pub status: u16,
    pub body: Value,
    pub version: u64,
}

/// A notification record a command causes: a new state, or a tombstone for a DELETE.
#[derive(Debug, Clone, PartialEq)]
pub enum NotificationEffect {
    Upsert(Arc<Notification>),
    Tombstone(Uuid),
}

/// Everything one command did.
#[derive(Debug)]
pub struct CommandOutcome {
    pub result: CommandResult,
    /// The next snapshot, when the command changed the policy set.
    pub next: Option<PolicySet>,
    pub effects: Vec<NotificationEffect>,
    pub resource: Resource,
    /// The method as sent ("POST", ..., or what an invalid command carried), for metrics.
    pub method_label: String,
}

pub(crate) struct Response {
    status: u16,
    body: Value,
}

fn not_found() -> Response {
    Response {
        status: 404,
        body: json!({"detail": "Not found."}),
    }
}

fn invalid(errors: Errors) -> Response {
    Response {
        status: 400,
        body: errors.to_value(),
    }
}

/// Whether a record is a command on a notification (seen PATCH, DELETE, `mark_all_seen`).
/// Those act on the notification index rather than the policy set, so the daemon applies them
/// only where it emits their effects. Unparsable records are not.
///
/// The record is read exactly as [`execute`] reads it (a `Value`, so a repeated `"path"` key
/// means its last value for both): the two can never disagree on what a command is.
pub fn is_notification_command(payload: &[u8]) -> bool {
    serde_json::from_slice::<Value>(payload)
        .ok()
        .as_ref()
        .and_then(|v| v.get("path"))
        .and_then(Value::as_str)
        .and_then(|p| Route::parse(p).ok())
        .is_some_and(|r| r.resource() == Resource::Notification)
}

/// The methods that become a metrics label as they are; anything else is "other", so the
/// label set stays bounded whatever a control record carries.
fn method_label(method: &str) -> String {
    match method {
        "POST" | "PUT" | "PATCH" | "DELETE" | "GET" | "HEAD" | "OPTIONS" => method.to_string(),
        _ => "other".to_string(),
    }
}

/// Parses, validates and applies one control record.
pub fn execute(
    current: &PolicySet,
    index: &NotificationIndex,
    catalog: &Catalog,
    payload: &[u8],
    source: CommandSource,
    max_value_bytes: usize,
    time: Option<chrono::DateTime<chrono::Utc>>,
) -> CommandOutcome {
    let mut out = CommandOutcome {
        result: CommandResult {
            id: Value::Null,
            method: Value::Null,
            path: Value::Null,
            status: 400,
            body: Value::Null,
            version: current.version(),
        },
        next: None,
        effects: Vec::new(),
        resource: Resource::Unknown,
        method_label: "invalid".into(),
    };
    let envelope: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            out.result.body = Errors::non_field(format!("JSON parse error - {e}")).to_value();
            return out;
        }
    };
    let Value::Object(envelope) = envelope else {
        out.result.body = Errors::non_field(format!(
            "Invalid data. Expected a dictionary, but got {}.",
            python_type(&envelope)
        ))
        .to_value();
        return out;
    };
    out.result.id = envelope.get("id").cloned().unwrap_or(Value::Null);
    out.result.method = envelope.get("method").cloned().unwrap_or(Value::Null);
    out.result.path = envelope.get("path").cloned().unwrap_or(Value::Null);

    let mut errors = Errors::default();
    let method = match envelope.get("method") {
        Some(Value::String(m)) => Some(m.to_ascii_uppercase()),
        Some(_) => {
            errors.add("method", "Not a valid string.");
            None
        }
        None => {
            errors.add("method", REQUIRED);
            None
        }
    };
    let path = match envelope.get("path") {
        Some(Value::String(p)) => Some(p.as_str()),
        Some(_) => {
            errors.add("path", "Not a valid string.");
            None
        }
        None => {
            errors.add("path", REQUIRED);
            None
        }
    };
    let (Some(method), Some(path)) = (method, path) else {
        out.result.body = errors.to_value();
        return out;
    };
    out.method_label = method_label(&method);

    let Ok(route) = Route::parse(path) else {
        let r = not_found();
        out.result.status = r.status;
        out.result.body = r.body;
        return out;
    };
    out.resource = route.resource();
    let m = match method.as_str() {
        "POST" => Some(Method::Post),
        "PUT" => Some(Method::Put),
        "PATCH" => Some(Method::Patch),
        "DELETE" => Some(Method::Delete),
        _ => None,
    };
    let Some(m) = m.filter(|m| route.allows(*m)) else {
        out.result.status = 405;
        out.result.body = json!({"detail": format!("Method \"{method}\" not allowed.")});
        return out;
    };

    let empty = Map::new();
    let body = match envelope.get("body") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(b)) => b,
        Some(other) if m != Method::Delete => {
            let r = invalid(Errors::non_field(format!(
                "Invalid data. Expected a dictionary, but got {}.",
                python_type(other)
            )));
            out.result.status = r.status;
            out.result.body = r.body;
            return out;
        }
        Some(_) => &empty,
    };

    let mut ctx = Ctx {
        current,
        catalog,
        next: None,
    };
    let response = match route {
        Route::Policies | Route::Policy(_) => ctx.policy(route, m, body, source),
        Route::Rules | Route::Rule(_) => ctx.rule(route, m, body, source),
        Route::Bindings | Route::Binding(_) => ctx.binding(route, m, body, source),
        // The state a notification command makes is versioned by its position in the control
        // log (+1: 0 is a notification as created), see `crate::index`.
        Route::Notification(pk) => notification(
            index,
            pk,
            m,
            body,
            &mut out.effects,
            max_value_bytes,
            source.offset.max(0) as u64 + 1,
        ),
        Route::MarkAllSeen => mark_all_seen(
            index,
            body,
            &mut out.effects,
            source.offset.max(0) as u64 + 1,
            time,
        ),
        Route::Notifications => not_found(),
    };
    out.result.status = response.status;
    out.result.body = response.body;
    if let Some(next) = ctx.next {
        out.result.version = next.version();
        out.next = Some(next);
    }
    out
}

use resources::{mark_all_seen, notification, Ctx};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_commands_are_recognised() {
        assert!(is_notification_command(
            br#"{"method":"PATCH","path":"/events/notifications/6b0f9c4e-0000-4000-8000-000000000000/","body":{"seen":true}}"#
        ));
        assert!(is_notification_command(
            br#"{"method":"POST","path":"/api/v3/events/notifications/mark_all_seen/"}"#
        ));
        assert!(!is_notification_command(
            br#"{"method":"POST","path":"/events/rules/"}"#
        ));
        assert!(!is_notification_command(b"garbage"));
        // A repeated "path" means its last value, as `execute` reads it.
        let twice = br#"{"method":"PATCH","path":"/events/rules/6b0f9c4e-0000-4000-8000-000000000000/","path":"/events/notifications/6b0f9c4e-0000-4000-8000-000000000000/","body":{}}"#;
        assert!(is_notification_command(twice));
        let twice = br#"{"method":"PATCH","path":"/events/notifications/6b0f9c4e-0000-4000-8000-000000000000/","path":"/events/rules/6b0f9c4e-0000-4000-8000-000000000000/","body":{}}"#;
        assert!(!is_notification_command(twice));
        assert!(!is_notification_command(br#"{"path": 5}"#));
    }

    #[test]
    fn routes_parse_with_and_without_prefix_and_slash() {
        let u = "6b0f9c4e-0000-4000-8000-000000000000";
        assert_eq!(
            Route::parse(&format!("/api/v3/policies/bindings/{u}")),
            Ok(Route::Binding(Uuid::parse_str(u).expect("uuid")))
        );
        assert_eq!(Route::parse("/events/rules/"), Ok(Route::Rules));
        assert_eq!(Route::parse("/events/rules/x/"), Err(()));
        assert_eq!(Route::parse("/events/rules/a/b/"), Err(()));
    }
}
