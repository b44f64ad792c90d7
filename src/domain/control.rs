//! Control commands (SPEC §2.3): the envelope, routing, validation, and applying a command to
//! a policy set. Pure: [`execute`] takes the current snapshot and returns the next one (if the
//! command changed it) and the response; notification commands act on the
//! [`NotificationIndex`] and report the records to emit.
//!
//! An invalid command changes nothing: every check runs against the current snapshot before
//! the next one is built, and a command either yields a whole new version or none.

use crate::akql::Query;
use crate::catalog::Catalog;
use crate::index::{NotificationIndex, NotificationPatch, PatchOutcome};
use crate::notify::Notification;
use crate::policy::EventMatcherPolicy;
use crate::policyset::{PolicySet, PolicySetBuilder};
use crate::rules::{NotificationRule, PolicyBinding, Severity};
use crate::validate::{python_type, Errors, Field, Reader, NON_FIELD, REQUIRED};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
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

struct Response {
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

struct Ctx<'a> {
    current: &'a PolicySet,
    catalog: &'a Catalog,
    next: Option<PolicySet>,
}

fn saved(existed: bool, body: Value) -> Response {
    Response {
        status: if existed { 200 } else { 201 },
        body,
    }
}

impl Ctx<'_> {
    /// The object a detail route names (`None` for a list route). Ends the command early with
    /// a 404 for an unknown object, and for a DELETE of a known one with the deletion itself
    /// (its cascade included) as the next version and a 204.
    fn existing<T>(
        &mut self,
        route: Route,
        m: Method,
        objects: fn(&PolicySet) -> &BTreeMap<Uuid, Arc<T>>,
        remove: fn(&mut PolicySetBuilder, &Uuid) -> bool,
    ) -> Result<Option<Arc<T>>, Response> {
        let Some(pk) = route.id() else {
            return Ok(None);
        };
        let found = objects(self.current)
            .get(&pk)
            .cloned()
            .ok_or_else(not_found)?;
        if m == Method::Delete {
            let mut b = self.current.builder();
            remove(&mut b, &pk);
            self.commit(b);
            return Err(Response {
                status: 204,
                body: Value::Null,
            });
        }
        Ok(Some(found))
    }

    /// Builds and keeps the next version.
    fn commit(&mut self, b: PolicySetBuilder) -> &PolicySet {
        self.next
            .insert(b.build(self.current.version().saturating_add(1)))
    }

    /// The pk of a POST: the body's, or one derived from the record's position.
    fn new_pk(
        r: &mut Reader<'_>,
        source: CommandSource,
        exists: impl Fn(&Uuid) -> bool,
        what: &str,
    ) -> Option<Uuid> {
        let pk = match r.uuid("pk", true) {
            Field::Set(pk) => pk,
            _ => source.derived_pk(),
        };
        if exists(&pk) {
            r.errors
                .add("pk", format!("{what} with this pk already exists."));
            return None;
        }
        Some(pk)
    }

    fn policy(
        &mut self,
        route: Route,
        m: Method,
        body: &Map<String, Value>,
        source: CommandSource,
    ) -> Response {
        let existing = match self.existing(
            route,
            m,
            PolicySet::policies,
            PolicySetBuilder::remove_policy,
        ) {
            Ok(e) => e,
            Err(done) => return done,
        };
        let mut r = Reader::new(body);
        let full = m != Method::Patch;
        let name = r.string("name", false, false);
        r.require("name", &name, full);
        let execution_logging = r.boolean("execution_logging");
        let catalog = self.catalog;
        let action = r.choice("action", true, |v| catalog.is_action(v));
        let client_ip = r.string("client_ip", true, false);
        let app = r.choice("app", true, |v| catalog.is_app(v));
        let model = r.choice("model", true, |v| catalog.is_model(v));
        // authentik 2026.5's AKQL criterion: nullable text, the query itself not checked on
        // write (authentik stores what does not compile; evaluating it raises).
        let query = r.string("query", true, false);
        let pk = match &existing {
            Some(p) => Some(p.pk),
            None => Ctx::new_pk(
                &mut r,
                source,
                |pk| self.current.policies().contains_key(pk),
                "event matcher policy",
            ),
        };
        // authentik: `Policy.name` is `unique=True` (DRF's UniqueValidator message).
        if let (Field::Set(n), Some(pk)) = (&name, pk) {
            if self
                .current
                .policy_by_name(n)
                .is_some_and(|other| other.pk != pk)
            {
                r.errors
                    .add("name", "policy with this name already exists.");
            }
        }
        let (Some(pk), true) = (pk, r.errors.is_empty()) else {
            return invalid(r.errors);
        };
        // PATCH and PUT start from the stored policy (DRF sets only the fields sent; PUT
        // differs by requiring the required ones); POST from the defaults.
        let base = match &existing {
            Some(p) => (**p).clone(),
            None => EventMatcherPolicy::new(pk, String::new()),
        };
        let policy = EventMatcherPolicy {
            pk,
            name: name.patch(base.name),
            execution_logging: execution_logging.patch(base.execution_logging),
            action: action.patch_nullable(base.action),
            client_ip: client_ip.patch_nullable(base.client_ip),
            app: app.patch_nullable(base.app),
            model: model.patch_nullable(base.model),
            query: match query {
                Field::Absent => base.query,
                Field::Null => None,
                // Unchanged text keeps the compiled query: a write recompiles only what changed.
                Field::Set(text) if base.query.as_ref().is_some_and(|q| q.text() == text) => {
                    base.query
                }
                Field::Set(text) => {
                    let q = Query::compile(&text, &catalog.action_choices());
                    if let Some(e) = q.error() {
                        tracing::warn!(policy = %pk, error = %e, "the policy's AKQL query does not compile: its bindings evaluate to false (as in authentik) until it is fixed");
                    }
                    Some(Arc::new(q))
                }
            },
        };
        let mut b = self.current.builder();
        b.put_policy(policy);
        let next = self.commit(b);
        let body = next
            .policies()
            .get(&pk)
            .map(|p| serde_json::to_value(p.response(next.bound_to(&pk))).unwrap_or_default())
            .unwrap_or_default();
        saved(existing.is_some(), body)
    }

    fn rule(
        &mut self,
        route: Route,
        m: Method,
        body: &Map<String, Value>,
        source: CommandSource,
    ) -> Response {
        let existing =
            match self.existing(route, m, PolicySet::rules, PolicySetBuilder::remove_rule) {
                Ok(e) => e,
                Err(done) => return done,
            };
        let mut r = Reader::new(body);
        let full = m != Method::Patch;
        let name = r.string("name", false, false);
        r.require("name", &name, full);
        let severity = r.choice("severity", false, |v| Severity::parse(v).is_some());
        // `group` is the field's name in authentik <= 2025.6 and its clients.
        let destination_group = if body.contains_key("destination_group") {
            r.uuid("destination_group", true)
        } else {
            r.uuid("group", true)
        };
        let transports = r.uuid_list("transports");
        let destination_event_user = r.boolean("destination_event_user");
        let enabled = r.boolean("enabled");
        let pk = match &existing {
            Some(rule) => Some(rule.pk),
            None => Ctx::new_pk(
                &mut r,
                source,
                |pk| self.current.rules().contains_key(pk),
                "notification rule",
            ),
        };
        if let (Field::Set(n), Some(pk)) = (&name, pk) {
            if self
                .current
                .rule_by_name(n)
                .is_some_and(|other| other.pk != pk)
            {
                r.errors
                    .add("name", "notification rule with this name already exists.");
            }
        }
        let (Some(pk), true) = (pk, r.errors.is_empty()) else {
            return invalid(r.errors);
        };
        let base = match &existing {
            Some(rule) => (**rule).clone(),
            None => NotificationRule::new(pk, String::new()),
        };
        let severity = match severity {
            Field::Set(s) => Severity::parse(&s).unwrap_or(base.severity),
            _ => base.severity,
        };
        let rule = NotificationRule {
            pk,
            name: name.patch(base.name),
            severity,
            destination_group: destination_group.patch_nullable(base.destination_group),
            destination_event_user: destination_event_user.patch(base.destination_event_user),
            enabled: enabled.patch(base.enabled),
            transports: transports.patch(base.transports),
        };
        let body = serde_json::to_value(rule.response()).unwrap_or_default();
        let mut b = self.current.builder();
        b.put_rule(rule);
        self.commit(b);
        saved(existing.is_some(), body)
    }

    fn binding(
        &mut self,
        route: Route,
        m: Method,
        body: &Map<String, Value>,
        source: CommandSource,
    ) -> Response {
        let existing = match self.existing(
            route,
            m,
            PolicySet::bindings,
            PolicySetBuilder::remove_binding,
        ) {
            Ok(e) => e,
            Err(done) => return done,
        };
        let mut r = Reader::new(body);
        let full = m != Method::Patch;
        // authentik's `policy`, `group` and `user` are nullable; exactly one must be set
        // (checked below, on the binding as it would be saved).
        let policy = r.uuid("policy", true);
        let group = r.uuid("group", true);
        let user = match body.get("user") {
            None | Some(Value::Null) => Field::Null,
            Some(v) => Field::Set(v.clone()),
        };
        let target = r.uuid("target", false);
        r.require("target", &target, full);
        let negate = r.boolean("negate");
        let enabled = r.boolean("enabled");
        let order = r.int32("order");
        r.require("order", &order, full);
        let failure_result = r.boolean("failure_result");
        let timeout = r.int_range("timeout", 0, i32::MAX as i64);
        for (key, field, exists) in [
            (
                "policy",
                &policy,
                &(|u: &Uuid| self.current.policies().contains_key(u)) as &dyn Fn(&Uuid) -> bool,
            ),
            ("target", &target, &|u: &Uuid| {
                self.current.rules().contains_key(u)
            }),
        ] {
            if let Field::Set(u) = field {
                if !exists(u) {
                    r.errors
                        .add(key, format!("Invalid pk \"{u}\" - object does not exist."));
                }
            }
        }
        let pk = match &existing {
            Some(b) => Some(b.pk),
            None => Ctx::new_pk(
                &mut r,
                source,
                |pk| self.current.bindings().contains_key(pk),
                "policy binding",
            ),
        };
        let (Some(pk), true) = (pk, r.errors.is_empty()) else {
            return invalid(r.errors);
        };
        // authentik `PolicyBindingSerializer.validate`: the supported targets of a rule,
        // sorted; exactly one set. A PATCH is checked on the binding it would leave.
        let policy = match (policy, &existing) {
            (Field::Absent, Some(b)) => Some(b.policy),
            (Field::Set(u), _) => Some(u),
            _ => None,
        };
        let set = [group.is_set(), policy.is_some(), user.is_set()];
        match set.iter().filter(|s| **s).count() {
            0 => return invalid(Errors::non_field(BINDING_TARGETS_NONE)),
            1 => {}
            _ => return invalid(Errors::non_field(BINDING_TARGETS_MANY)),
        }
        let Some(policy) = policy else {
            // A group or user binding: valid in authentik, but eventmatchd has no directory to
            // evaluate it against.
            let field = if set[0] { "group" } else { "user" };
            return invalid(Errors::single(field, BINDING_DIRECTORY_UNSUPPORTED));
        };
        let base = match &existing {
            Some(b) => (**b).clone(),
            None => PolicyBinding::new(pk, Uuid::nil(), Uuid::nil(), 0),
        };
        let binding = PolicyBinding {
            pk,
            policy,
            target: target.patch(base.target),
            negate: negate.patch(base.negate),
            enabled: enabled.patch(base.enabled),
            order: order.patch(base.order),
            failure_result: failure_result.patch(base.failure_result),
            timeout: timeout.patch(base.timeout),
        };
        // authentik: unique_together = ("policy", "target", "order").
        let clash = self.current.bindings().values().any(|other| {
            other.pk != pk
                && other.policy == binding.policy
                && other.target == binding.target
                && other.order == binding.order
        });
        if clash {
            return invalid(Errors::single(
                NON_FIELD,
                "The fields policy, target, order must make a unique set.",
            ));
        }
        let mut b = self.current.builder();
        b.put_binding(binding.clone());
        let next = self.commit(b);
        let policy_obj = next
            .policies()
            .get(&binding.policy)
            .map(|p| p.base_response(next.bound_to(&p.pk)));
        let body = serde_json::to_value(binding.response(policy_obj)).unwrap_or_default();
        saved(existing.is_some(), body)
    }
}

fn notification(
    index: &NotificationIndex,
    pk: Uuid,
    m: Method,
    body: &Map<String, Value>,
    effects: &mut Vec<NotificationEffect>,
    max_value_bytes: usize,
    version: u64,
) -> Response {
    if m == Method::Delete {
        return match index.remove(&pk) {
            Some(_) => {
                effects.push(NotificationEffect::Tombstone(pk));
                Response {
                    status: 204,
                    body: Value::Null,
                }
            }
            None => not_found(),
        };
    }
    // Only these are writable; body, severity, created, pk, event (and anything else) are
    // read-only or unknown and ignored, as the API does.
    let mut r = Reader::new(body);
    let seen = r.boolean("seen");
    // authentik: `Notification.hyperlink` is a TextField with `max_length=4096`.
    let hyperlink = r.string_max("hyperlink", true, true, Some(4096));
    let hyperlink_label = r.string("hyperlink_label", true, true);
    if index.get(&pk).is_none() {
        return not_found();
    }
    if !r.errors.is_empty() {
        return invalid(r.errors);
    }
    let opt = |f: Field<String>| match f {
        Field::Absent => None,
        Field::Null => Some(None),
        Field::Set(s) => Some(Some(s)),
    };
    let patch = NotificationPatch {
        seen: match seen {
            Field::Set(b) => Some(b),
            _ => None,
        },
        hyperlink: opt(hyperlink),
        hyperlink_label: opt(hyperlink_label),
        version,
    };
    let before = index.get(&pk);
    match index.patch(&pk, &patch) {
        PatchOutcome::Updated(n) if n.to_bytes().len() > max_value_bytes => {
            // The new state could never be written to the notification topic: put the old one
            // back and say why, instead of holding a state nobody else will ever see.
            if let Some(before) = before {
                index.put_back((*before).clone());
            }
            Response {
                status: 413,
                body: crate::engine::too_large_body(n.to_bytes().len(), max_value_bytes),
            }
        }
        PatchOutcome::Updated(n) => {
            let body = serde_json::to_value(&*n).unwrap_or_default();
            effects.push(NotificationEffect::Upsert(n));
            Response { status: 200, body }
        }
        PatchOutcome::NotFound => not_found(),
    }
}

fn mark_all_seen(
    index: &NotificationIndex,
    body: &Map<String, Value>,
    effects: &mut Vec<NotificationEffect>,
    version: u64,
    time: Option<chrono::DateTime<chrono::Utc>>,
) -> Response {
    let user = match body.get("user") {
        None => return invalid(Errors::single("user", REQUIRED)),
        Some(v) => match crate::events::user_key(v) {
            Some(k) => k,
            None => {
                return invalid(Errors::single(
                    "user",
                    "A user pk (integer or string) is required.",
                ))
            }
        },
    };
    // authentik marks what is unseen when the request is made: a command replayed later
    // (offsets lost, a new control group) must not mark notifications created after it.
    for n in index.mark_all_seen(&user, version, time) {
        effects.push(NotificationEffect::Upsert(n));
    }
    Response {
        status: 204,
        body: Value::Null,
    }
}

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
