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

/// A notification rule; serialized as-is for responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationRule {
    pub pk: Uuid,
    pub name: String,
    pub severity: Severity,
    pub destination_group: Option<Uuid>,
    pub destination_event_user: bool,
    pub enabled: bool,
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
        }
    }
}

/// A binding of a policy to a rule; serialized as-is for responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyBinding {
    pub pk: Uuid,
    pub policy: Uuid,
    pub target: Uuid,
    pub negate: bool,
    pub enabled: bool,
    pub order: i64,
    /// Stored and returned for API fidelity; an event matcher policy cannot raise, so the
    /// result it would stand in for never occurs.
    pub failure_result: bool,
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
