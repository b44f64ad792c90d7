//! Notification rules and policy bindings (SPEC §2.5): the state types and their responses.
//! How a rule fires is in [`crate::matcher`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `SeverityEnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Notice,
    Warning,
    Alert,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "notice" => Some(Severity::Notice),
            "warning" => Some(Severity::Warning),
            "alert" => Some(Severity::Alert),
            _ => None,
        }
    }
}

/// A notification rule. Responses are [`RuleResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRule {
    pub pk: Uuid,
    pub name: String,
    pub severity: Severity,
    pub destination_group: Option<Uuid>,
    pub destination_event_user: bool,
    pub enabled: bool,
    /// authentik's notification transports of the rule, stored and returned as sent: the
    /// notification topic is eventmatchd's one (local) transport.
    pub transports: Vec<Uuid>,
}

/// A rule as authentik 2026.8's `NotificationRuleSerializer` renders it (field order kept),
/// plus eventmatchd's `enabled`. No group directory: `destination_group_obj` is `null`.
#[derive(Debug, Serialize)]
pub struct RuleResponse<'a> {
    pub pk: Uuid,
    pub name: &'a str,
    pub transports: &'a [Uuid],
    pub severity: Severity,
    pub destination_group: Option<Uuid>,
    pub destination_group_obj: Option<()>,
    pub destination_event_user: bool,
    pub enabled: bool,
}

impl NotificationRule {
    pub fn response(&self) -> RuleResponse<'_> {
        RuleResponse {
            pk: self.pk,
            name: &self.name,
            transports: &self.transports,
            severity: self.severity,
            destination_group: self.destination_group,
            destination_group_obj: None,
            destination_event_user: self.destination_event_user,
            enabled: self.enabled,
        }
    }
}

impl NotificationRule {
    pub fn new(pk: Uuid, name: impl Into<String>) -> Self {
        Self {
            pk,
            name: name.into(),
            severity: Severity::Notice,
            destination_group: None,
            destination_event_user: false,
            enabled: true,
            transports: Vec::new(),
        }
    }
}

/// A binding of a policy to a rule; serialized as-is inside execution records. API responses
/// are [`BindingResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyBinding {
    pub pk: Uuid,
    pub policy: Uuid,
    pub target: Uuid,
    pub negate: bool,
    pub enabled: bool,
    pub order: i64,
    /// Stored and returned for API fidelity. authentik applies it only to a policy's
    /// `PolicyException`, which an event matcher policy never raises (its other errors make
    /// the binding false, see [`crate::matcher`]).
    pub failure_result: bool,
    /// Seconds authentik gives the policy process; stored and returned (0..=2147483647).
    /// Not part of the binding as execution records embed it.
    #[serde(skip)]
    pub timeout: i64,
}

/// The default `timeout` of authentik's `PolicyBinding`.
pub const DEFAULT_TIMEOUT: i64 = 30;

/// A binding as authentik 2026.8's `PolicyBindingSerializer` renders it, field for field and
/// in its order. Only policy bindings exist here: `group`, `user` and their `_obj` are null.
#[derive(Debug, Serialize)]
pub struct BindingResponse<'a, P: Serialize> {
    pub pk: Uuid,
    pub policy: Uuid,
    pub group: Option<()>,
    pub user: Option<()>,
    pub policy_obj: P,
    pub group_obj: Option<()>,
    pub user_obj: Option<()>,
    pub target: Uuid,
    pub negate: bool,
    pub enabled: bool,
    pub order: i64,
    pub timeout: i64,
    pub failure_result: bool,
    pub expires: Option<&'a str>,
    pub expiring: bool,
}

impl PolicyBinding {
    /// The response, with `policy_obj` rendered by the caller (it needs the policy set).
    pub fn response<P: Serialize>(&self, policy_obj: P) -> BindingResponse<'static, P> {
        BindingResponse {
            pk: self.pk,
            policy: self.policy,
            group: None,
            user: None,
            policy_obj,
            group_obj: None,
            user_obj: None,
            target: self.target,
            negate: self.negate,
            enabled: self.enabled,
            order: self.order,
            timeout: self.timeout,
            failure_result: self.failure_result,
            expires: None,
            expiring: false,
        }
    }
}

impl PolicyBinding {
    pub fn new(pk: Uuid, policy: Uuid, target: Uuid, order: i64) -> Self {
        Self {
            pk,
            policy,
            target,
            negate: false,
            enabled: true,
            order,
            failure_result: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_round_trips_and_defaults_to_notice() {
        for s in [Severity::Notice, Severity::Warning, Severity::Alert] {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).expect("serializes"),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(Severity::parse("critical"), None);
        assert_eq!(
            NotificationRule::new(Uuid::nil(), "r").severity,
            Severity::Notice
        );
    }

    #[test]
    fn defaults_follow_the_spec() {
        let r = NotificationRule::new(Uuid::nil(), "r");
        assert!(r.enabled);
        assert!(!r.destination_event_user);
        let b = PolicyBinding::new(Uuid::nil(), Uuid::nil(), Uuid::nil(), 0);
        assert!(b.enabled && !b.negate && !b.failure_result);
    }
}
