//! Event matcher policies (seed: `policies_event_matcher_partial_update`) and their matching
//! semantics (SPEC §2.4).

use crate::akql::{Columns, EventView, Query};
use crate::events::Event;
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

pub const COMPONENT: &str = "ak-policy-event-matcher-form";
pub const VERBOSE_NAME: &str = "Event Matcher Policy";
pub const VERBOSE_NAME_PLURAL: &str = "Event Matcher Policies";
pub const META_MODEL_NAME: &str = "authentik_policies_event_matcher.eventmatcherpolicy";

/// The writable state of one policy. `bound_to` and the read-only constants are added when
/// it is rendered ([`PolicyResponse`]), because they are not the policy's own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMatcherPolicy {
    pub pk: Uuid,
    pub name: String,
    pub execution_logging: bool,
    pub action: Option<String>,
    pub client_ip: Option<String>,
    pub app: Option<String>,
    pub model: Option<String>,
    /// authentik 2026.5's AKQL criterion, compiled when the policy was written.
    pub query: Option<Arc<Query>>,
}

impl EventMatcherPolicy {
    /// A policy with only a pk and name: no criteria, so it matches every event.
    pub fn new(pk: Uuid, name: impl Into<String>) -> Self {
        Self {
            pk,
            name: name.into(),
            execution_logging: false,
            action: None,
            client_ip: None,
            app: None,
            model: None,
            query: None,
        }
    }

    /// authentik's `EventMatcherPolicy.passes`: every criterion that is set must hold; unset
    /// criteria are ignored; with none set, every event matches.
    pub fn matches(&self, event: &Event) -> bool {
        let cols = Columns::new(event);
        self.matches_in(&EventView::new(&cols))
    }

    /// [`matches`](Self::matches) on a view shared by the policies evaluated for one event
    /// (JSON parsed and paths resolved once). `query` is checked first, as authentik does.
    pub fn matches_in(&self, view: &EventView<'_, '_>) -> bool {
        if let Some(q) = &self.query {
            if q.matches(view) != Some(true) {
                return false;
            }
        }
        self.criteria_match(view.event())
    }

    /// The criteria other than `query`: every one set holds.
    pub fn criteria_match(&self, event: &Event) -> bool {
        if let Some(action) = &self.action {
            if *action != event.action {
                return false;
            }
        }
        if let Some(ip) = &self.client_ip {
            if event.client_ip.as_deref() != Some(ip.as_str()) {
                return false;
            }
        }
        if let Some(app) = &self.app {
            if *app != event.app {
                return false;
            }
        }
        if let Some(model) = &self.model {
            if event.model.as_deref() != Some(model.as_str()) {
                return false;
            }
        }
        true
    }

    /// Whether authentik's `passes` raises for this event instead of answering:
    /// `passes_model` calls `.get` on `context["model"]`, which fails when it is not a dict.
    /// `PolicyProcess.run` catches that and the binding is false, whatever `negate` says.
    /// A `query` that does not compile raises for every event (`passes_query` runs
    /// djangoql, which raises on a syntax or schema error).
    pub fn raises(&self, event: &Event) -> bool {
        self.query_raises() || (self.model.is_some() && event.model_malformed)
    }

    /// The query does not compile: every evaluation raises.
    pub fn query_raises(&self) -> bool {
        self.query.as_ref().is_some_and(|q| q.error().is_some())
    }

    /// The messages of authentik's `PolicyResult` for this policy: one per criterion set, in
    /// `passes`' order, whether or not it matched (`event_matcher/models.py`); the query's
    /// first.
    pub fn messages(&self) -> Vec<&'static str> {
        [
            (self.query.is_some(), "Query matched."),
            (self.action.is_some(), "Action matched."),
            (self.client_ip.is_some(), "Client IP matched."),
            (self.app.is_some(), "App matched."),
            (self.model.is_some(), "Model matched."),
        ]
        .into_iter()
        .filter_map(|(set, m)| set.then_some(m))
        .collect()
    }

    pub fn response(&self, bound_to: usize) -> PolicyResponse<'_> {
        PolicyResponse {
            base: self.base_response(bound_to),
            action: self.action.as_deref(),
            client_ip: self.client_ip.as_deref(),
            app: self.app.as_deref(),
            model: self.model.as_deref(),
            query: self.query.as_ref().map(|q| q.text()),
        }
    }

    /// authentik's base `PolicySerializer` (a binding's `policy_obj`).
    pub fn base_response(&self, bound_to: usize) -> BasePolicyResponse<'_> {
        BasePolicyResponse {
            pk: self.pk,
            name: &self.name,
            execution_logging: self.execution_logging,
            component: COMPONENT,
            verbose_name: VERBOSE_NAME,
            verbose_name_plural: VERBOSE_NAME_PLURAL,
            meta_model_name: META_MODEL_NAME,
            bound_to,
        }
    }
}

/// authentik's `PolicySerializer` fields, in its order.
#[derive(Debug, Serialize)]
pub struct BasePolicyResponse<'a> {
    pub pk: Uuid,
    pub name: &'a str,
    pub execution_logging: bool,
    pub component: &'static str,
    pub verbose_name: &'static str,
    pub verbose_name_plural: &'static str,
    pub meta_model_name: &'static str,
    pub bound_to: usize,
}

/// The seed's 200 response body, field for field and in its order, plus authentik 2026.5's
/// `query`.
#[derive(Debug, Serialize)]
pub struct PolicyResponse<'a> {
    /// The base serializer's fields, first (flattened: one object, in order).
    #[serde(flatten)]
    pub base: BasePolicyResponse<'a>,
    pub action: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub app: Option<&'a str>,
    pub model: Option<&'a str>,
    pub query: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: serde_json::Value) -> Event {
        Event::parse(v.to_string().as_bytes()).expect("valid event")
    }

    fn login() -> Event {
        event(json!({
            "pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01", "action": "login",
            "app": "authentik.events.signals", "client_ip": "10.1.2.3",
            "context": {"model": {"app": "authentik_core", "model_name": "user", "pk": 1}}
        }))
    }

    fn policy() -> EventMatcherPolicy {
        EventMatcherPolicy::new(Uuid::from_u128(1), "p")
    }

    #[test]
    fn no_criteria_matches_everything() {
        assert!(policy().matches(&login()));
        let bare =
            event(json!({"pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a02", "action": "x", "app": "y"}));
        assert!(policy().matches(&bare));
    }

    #[test]
    fn each_criterion_must_hold() {
        let e = login();
        let mut p = policy();
        p.action = Some("login".into());
        assert!(p.matches(&e));
        p.action = Some("logout".into());
        assert!(!p.matches(&e));

        let mut p = policy();
        p.client_ip = Some("10.1.2.3".into());
        assert!(p.matches(&e));
        p.client_ip = Some("10.1.2.0/24".into());
        assert!(!p.matches(&e), "no CIDR matching");

        let mut p = policy();
        p.app = Some("authentik.events.signals".into());
        assert!(p.matches(&e));
        p.app = Some("authentik.events".into());
        assert!(!p.matches(&e), "app is an exact match, not a prefix");

        let mut p = policy();
        p.model = Some("authentik_core.user".into());
        assert!(p.matches(&e));
        p.model = Some("authentik_core.group".into());
        assert!(!p.matches(&e));
    }

    #[test]
    fn all_set_criteria_are_anded() {
        let e = login();
        let mut p = policy();
        p.action = Some("login".into());
        p.app = Some("authentik.events.signals".into());
        p.client_ip = Some("10.9.9.9".into());
        assert!(!p.matches(&e), "one failing criterion fails the policy");
        p.client_ip = Some("10.1.2.3".into());
        assert!(p.matches(&e));
    }

    #[test]
    fn custom_action_is_not_a_prefix_wildcard() {
        let e = event(
            json!({"pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a03", "action": "custom_deploy", "app": "a"}),
        );
        let mut p = policy();
        p.action = Some("custom_".into());
        assert!(!p.matches(&e));
    }

    #[test]
    fn event_without_model_never_matches_a_model_policy() {
        let e = event(
            json!({"pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a04", "action": "login", "app": "a"}),
        );
        let mut p = policy();
        p.model = Some("authentik_core.user".into());
        assert!(!p.matches(&e));
    }

    #[test]
    fn event_without_client_ip_never_matches_an_ip_policy() {
        let e = event(
            json!({"pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a05", "action": "login", "app": "a", "client_ip": null}),
        );
        let mut p = policy();
        p.client_ip = Some("10.1.2.3".into());
        assert!(!p.matches(&e));
    }

    #[test]
    fn response_has_every_seed_field_in_order() {
        let mut p = policy();
        p.action = Some("login".into());
        let v = serde_json::to_value(p.response(3)).expect("serializes");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "pk",
                "name",
                "execution_logging",
                "component",
                "verbose_name",
                "verbose_name_plural",
                "meta_model_name",
                "bound_to",
                "action",
                "client_ip",
                "app",
                "model",
                "query"
            ]
        );
        assert_eq!(v["bound_to"], 3);
        assert_eq!(v["component"], COMPONENT);
        assert_eq!(v["meta_model_name"], META_MODEL_NAME);
        assert_eq!(v["client_ip"], serde_json::Value::Null);
    }
}
