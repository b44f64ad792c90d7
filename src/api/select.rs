//! Reads: the list and detail views of each resource, from one policy-set snapshot or the
//! notification index. Filters are django-filter's as authentik's viewsets declare them
//! (`filterset_fields`, `PolicyBindingFilter`, `search_fields`, `ordering`). Pure.

use super::auth::Principal;
use super::list::{
    matches_search, ordering, page_size, paginate, search_terms, sort_by, Params, SortKey,
};
use super::ApiError;
use crate::catalog::Catalog;
use crate::index::NotificationIndex;
use crate::notify::Notification;
use crate::policy::EventMatcherPolicy;
use crate::policyset::PolicySet;
use crate::rules::{NotificationRule, PolicyBinding, Severity};
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

/// Page sizes (`api.default_page_size`, `api.max_page_size`).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub default: usize,
    pub max: usize,
}

const MODEL_CHOICE: &str =
    "Select a valid choice. That choice is not one of the available choices.";

fn invalid_choice(v: &str) -> String {
    format!("Select a valid choice. {v} is not one of the available choices.")
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(400, json!({ field: [message.into()] }))
}

/// django-filter's `BooleanFilter` (DRF's `BooleanWidget`): anything but true/false (any case)
/// or 1/0 is no filter at all.
fn boolean(params: &Params, key: &str) -> Option<bool> {
    match params.filter(key)?.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn choice(
    params: &Params,
    key: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<Option<String>, ApiError> {
    match params.filter(key) {
        None => Ok(None),
        Some(v) if valid(v) => Ok(Some(v.to_string())),
        Some(v) => Err(bad(key, invalid_choice(v))),
    }
}

/// A foreign key filter (`ModelChoiceFilter`): a pk of an object that exists.
fn model_choice(
    params: &Params,
    key: &str,
    exists: impl Fn(&Uuid) -> bool,
) -> Result<Option<Uuid>, ApiError> {
    match params.filter(key) {
        None => Ok(None),
        Some(v) => match Uuid::parse_str(v.trim()) {
            Ok(u) if exists(&u) => Ok(Some(u)),
            _ => Err(bad(key, MODEL_CHOICE)),
        },
    }
}

fn number(params: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    match params.filter(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad(key, "Enter a number.")),
    }
}

fn text(v: Option<&str>) -> SortKey {
    SortKey::from(v.map(str::to_string))
}

pub fn policy_body(set: &PolicySet, p: &EventMatcherPolicy) -> Value {
    serde_json::to_value(p.response(set.bound_to(&p.pk))).unwrap_or_default()
}

pub fn rule_body(r: &NotificationRule) -> Value {
    serde_json::to_value(r.response()).unwrap_or_default()
}

pub fn binding_body(set: &PolicySet, b: &PolicyBinding) -> Value {
    let policy_obj = set
        .policies()
        .get(&b.policy)
        .map(|p| p.base_response(set.bound_to(&p.pk)));
    serde_json::to_value(b.response(policy_obj)).unwrap_or_default()
}

pub fn notification_body(n: &Notification) -> Value {
    serde_json::to_value(n).unwrap_or_default()
}

/// `GET policies/event_matcher/`: `filterset_fields = "__all__"`, `search_fields = ["name"]`,
/// `ordering = ["name"]`.
pub fn policies(
    set: &PolicySet,
    catalog: &Catalog,
    params: &Params,
    sizes: Sizes,
) -> Result<Value, ApiError> {
    let name = params.filter("name");
    let action = choice(params, "action", |v| catalog.is_action(v))?;
    let app = choice(params, "app", |v| catalog.is_app(v))?;
    let model = choice(params, "model", |v| catalog.is_model(v))?;
    let client_ip = params.filter("client_ip");
    let query = params.filter("query");
    let logging = boolean(params, "execution_logging");
    let uuid = match params.filter("policy_uuid") {
        None => None,
        Some(v) => {
            Some(Uuid::parse_str(v.trim()).map_err(|_| bad("policy_uuid", "Enter a valid UUID."))?)
        }
    };
    let terms = search_terms(params);
    let mut items: Vec<&Arc<EventMatcherPolicy>> = set
        .policies()
        .values()
        .filter(|p| {
            name.is_none_or(|n| p.name == n)
                && action
                    .as_deref()
                    .is_none_or(|a| p.action.as_deref() == Some(a))
                && app.as_deref().is_none_or(|a| p.app.as_deref() == Some(a))
                && model
                    .as_deref()
                    .is_none_or(|m| p.model.as_deref() == Some(m))
                && client_ip.is_none_or(|c| p.client_ip.as_deref() == Some(c))
                && query.is_none_or(|q| p.query.as_ref().map(|x| x.text()) == Some(q))
                && logging.is_none_or(|l| p.execution_logging == l)
                && uuid.is_none_or(|u| p.pk == u)
                && matches_search(&terms, &[&p.name])
        })
        .collect();
    let valid = [
        "pk",
        "policy_uuid",
        "name",
        "execution_logging",
        "action",
        "app",
        "model",
        "client_ip",
        "query",
    ];
    let order = ordering(params, &valid, &["name"]);
    sort_by(&mut items, &order, |p, f| match f {
        "name" => SortKey::Text(p.name.clone()),
        "execution_logging" => SortKey::Bool(p.execution_logging),
        "action" => text(p.action.as_deref()),
        "app" => text(p.app.as_deref()),
        "model" => text(p.model.as_deref()),
        "client_ip" => text(p.client_ip.as_deref()),
        "query" => text(p.query.as_ref().map(|q| q.text())),
        _ => SortKey::Uuid(p.pk.as_u128()),
    });
    let size = page_size(params, sizes.default, sizes.max);
    paginate(&items, params, size, |p| policy_body(set, p))
}

/// `GET events/rules/`: `filterset_fields = ["name", "severity", "destination_group__name"]`,
/// `search_fields = ["name", "destination_group__name"]`, `ordering = ["name"]`. eventmatchd has
/// no groups: a group name filter matches no rule.
pub fn rules(set: &PolicySet, params: &Params, sizes: Sizes) -> Result<Value, ApiError> {
    let name = params.filter("name");
    let severity = choice(params, "severity", |v| Severity::parse(v).is_some())?;
    let group_name = params.filter("destination_group__name");
    let terms = search_terms(params);
    let mut items: Vec<&Arc<NotificationRule>> = set
        .rules()
        .values()
        .filter(|r| {
            name.is_none_or(|n| r.name == n)
                && severity.as_deref().is_none_or(|s| r.severity.as_str() == s)
                && group_name.is_none()
                && matches_search(&terms, &[&r.name])
        })
        .collect();
    let valid = [
        "pk",
        "pbm_uuid",
        "name",
        "severity",
        "destination_event_user",
        "enabled",
    ];
    let order = ordering(params, &valid, &["name"]);
    sort_by(&mut items, &order, |r, f| match f {
        "name" => SortKey::Text(r.name.clone()),
        "severity" => SortKey::Text(r.severity.as_str().to_string()),
        "destination_event_user" => SortKey::Bool(r.destination_event_user),
        "enabled" => SortKey::Bool(r.enabled),
        _ => SortKey::Uuid(r.pk.as_u128()),
    });
    let size = page_size(params, sizes.default, sizes.max);
    paginate(&items, params, size, |r| rule_body(r))
}

/// `GET policies/bindings/`: `PolicyBindingFilter` (`policy`, `policy__isnull`, `target`,
/// `target_in`, `enabled`, `order`, `timeout`), `search_fields = ["policy__name"]`,
/// `ordering = ["order", "pk"]`, `ordering_fields = ["order", "target__uuid", "pk"]`.
pub fn bindings(set: &PolicySet, params: &Params, sizes: Sizes) -> Result<Value, ApiError> {
    let policy = model_choice(params, "policy", |u| set.policies().contains_key(u))?;
    let policy_isnull = boolean(params, "policy__isnull");
    let target = model_choice(params, "target", |u| set.rules().contains_key(u))?;
    let mut target_in = Vec::new();
    for v in params.all("target_in") {
        match Uuid::parse_str(v.trim()) {
            Ok(u) if set.rules().contains_key(&u) => target_in.push(u),
            _ => return Err(bad("target_in", invalid_choice(v))),
        }
    }
    let enabled = boolean(params, "enabled");
    let order = number(params, "order")?;
    let timeout = number(params, "timeout")?;
    let terms = search_terms(params);
    let mut items: Vec<&Arc<PolicyBinding>> = set
        .bindings()
        .values()
        .filter(|b| {
            let policy_name = set
                .policies()
                .get(&b.policy)
                .map(|p| p.name.as_str())
                .unwrap_or_default();
            policy.is_none_or(|p| b.policy == p)
                // Every binding eventmatchd holds has a policy.
                && policy_isnull != Some(true)
                && target.is_none_or(|t| b.target == t)
                && (target_in.is_empty() || target_in.contains(&b.target))
                && enabled.is_none_or(|e| b.enabled == e)
                && order.is_none_or(|o| b.order == o)
                && timeout.is_none_or(|t| b.timeout == t)
                && matches_search(&terms, &[policy_name])
        })
        .collect();
    let sort = ordering(params, &["order", "target__uuid", "pk"], &["order", "pk"]);
    sort_by(&mut items, &sort, |b, f| match f {
        "order" => SortKey::Int(b.order),
        "target__uuid" => SortKey::Uuid(b.target.as_u128()),
        _ => SortKey::Uuid(b.pk.as_u128()),
    });
    let size = page_size(params, sizes.default, sizes.max);
    paginate(&items, params, size, |b| binding_body(set, b))
}

/// Whether `who` may see notification `n`: an admin sees all, anyone else only their own
/// (authentik's `owner_field = "user"`).
pub fn may_see(who: &Principal, n: &Notification) -> bool {
    who.admin || n.user_key() == Some(who.user.to_string())
}

/// `GET events/notifications/`: `filterset_fields = ["severity", "body", "created", "event",
/// "seen", "user"]`; no `search_fields` (a `search` filters nothing, as in authentik) and no
/// default order in authentik (here: `created`, then `pk`).
pub fn notifications(
    index: &NotificationIndex,
    who: &Principal,
    params: &Params,
    sizes: Sizes,
) -> Result<Value, ApiError> {
    let seen = boolean(params, "seen");
    let severity = choice(params, "severity", |v| Severity::parse(v).is_some())?;
    let body = params.filter("body");
    let user = match params.filter("user") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<i64>()
                .map_err(|_| bad("user", MODEL_CHOICE))?,
        ),
    };
    let event = match params.filter("event") {
        None => None,
        Some(v) => Some(Uuid::parse_str(v.trim()).map_err(|_| bad("event", MODEL_CHOICE))?),
    };
    // A non-admin's list is its own whatever it asks; the `user` filter narrows further.
    let scope = if who.admin { user } else { Some(who.user) };
    if !who.admin && user.is_some_and(|u| u != who.user) {
        return paginate::<Notification>(
            &[],
            params,
            page_size(params, sizes.default, sizes.max),
            notification_body,
        );
    }
    let scope = scope.map(|u| u.to_string());
    let valid = [
        "pk",
        "uuid",
        "severity",
        "body",
        "created",
        "seen",
        "hyperlink",
        "hyperlink_label",
        "event",
        "user",
    ];
    let order = ordering(params, &valid, &["created", "pk"]);
    let size = page_size(params, sizes.default, sizes.max);
    let listing = index.listing(scope.as_deref());
    // The usual lists (by user, seen, severity; ordered by time) read only what the index
    // holds per notification and render just the page; anything else renders every candidate.
    let cheap = body.is_none()
        && event.is_none()
        && order
            .iter()
            .all(|(f, _)| matches!(f.as_str(), "pk" | "uuid" | "created" | "seen" | "severity"));
    if cheap {
        let mut items: Vec<_> = listing
            .into_iter()
            .filter(|l| {
                seen.is_none_or(|s| l.seen() == s)
                    && severity
                        .as_deref()
                        .is_none_or(|s| l.severity().as_str() == s)
            })
            .collect();
        sort_by(&mut items, &order, |l, f| match f {
            "created" => SortKey::Int(l.created_at()),
            "seen" => SortKey::Bool(l.seen()),
            "severity" => SortKey::Text(l.severity().as_str().to_string()),
            _ => SortKey::Uuid(l.pk().as_u128()),
        });
        return paginate(&items, params, size, |l| notification_body(&l.full()));
    }
    let mut items: Vec<Notification> = listing
        .iter()
        .map(|l| l.full())
        .filter(|n| {
            seen.is_none_or(|s| n.seen == s)
                && severity.as_deref().is_none_or(|s| n.severity.as_str() == s)
                && body.is_none_or(|b| n.body == b)
                && event.is_none_or(|e| event_pk(n) == Some(e))
        })
        .collect();
    sort_by(&mut items, &order, |n, f| match f {
        "severity" => SortKey::Text(n.severity.as_str().to_string()),
        "body" => SortKey::Text(n.body.clone()),
        "created" => SortKey::Int(created_at(&n.created)),
        "seen" => SortKey::Bool(n.seen),
        "hyperlink" => text(n.hyperlink.as_deref()),
        "hyperlink_label" => text(n.hyperlink_label.as_deref()),
        "event" => event_pk(n).map_or(SortKey::Null, |u| SortKey::Uuid(u.as_u128())),
        "user" => SortKey::from(n.user_key()),
        _ => SortKey::Uuid(n.pk.as_u128()),
    });
    paginate(&items, params, size, notification_body)
}

/// `created` as an instant, as the index keeps it: PostgreSQL orders the column by time.
fn created_at(created: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(created)
        .map(|t| t.timestamp_micros())
        .unwrap_or(i64::MIN)
}

/// The pk of the notification's event.
fn event_pk(n: &Notification) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct Pk {
        pk: Option<Uuid>,
    }
    serde_json::from_str::<Pk>(n.event.get())
        .ok()
        .and_then(|p| p.pk)
}
