//! The resource handlers behind [`super::execute`]: policies, rules and bindings against the
//! current snapshot (DRF's create/update/partial_update/destroy with authentik's validation),
//! and notification commands against the index. Pure.

use super::{
    invalid, not_found, CommandSource, Method, NotificationEffect, Response, Route,
    BINDING_DIRECTORY_UNSUPPORTED, BINDING_TARGETS_MANY, BINDING_TARGETS_NONE,
};
use crate::akql::Query;
use crate::catalog::Catalog;
use crate::index::{NotificationIndex, NotificationPatch, PatchOutcome};
use crate::policy::EventMatcherPolicy;
use crate::policyset::{self, PolicySet, PolicySetBuilder};
use crate::rules::{NotificationRule, PolicyBinding, Severity};
use crate::validate::{Errors, Field, Reader, NON_FIELD, REQUIRED};
use serde_json::{Map, Value};
use std::sync::Arc;
use uuid::Uuid;

pub(super) struct Ctx<'a> {
    pub(super) current: &'a PolicySet,
    pub(super) catalog: &'a Catalog,
    pub(super) next: Option<PolicySet>,
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
        objects: fn(&PolicySet) -> &policyset::Map<T>,
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

    pub(super) fn policy(
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

    pub(super) fn rule(
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

    pub(super) fn binding(
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

pub(super) fn notification(
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

pub(super) fn mark_all_seen(
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
