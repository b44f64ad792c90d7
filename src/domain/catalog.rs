//! The enum lists of authentik API v3 (EventActions, AppEnum, ModelEnum) plus the notification
//! SeverityEnum.
//!
//! The lists are authentik 2026.8's, as its official client `authentik-client` 2026.8.5
//! ships them (`scripts/gen-catalog.py` regenerates them); the values of the seed's older
//! lists that were renamed since stay accepted ([`SEED_APPS`], [`SEED_MODELS`]). Newer
//! authentik versions add values, so these are only the defaults: a [`Catalog`] starts from
//! them and the operator extends it in configuration (`catalog.extra_*`).

use std::collections::HashSet;

/// `EventActions` of authentik 2026.8 (authentik-client 2026.8.5): 38 values.
pub const EVENT_ACTIONS: &[&str] = &[
    "login",
    "login_failed",
    "logout",
    "user_write",
    "user_offboarded",
    "suspicious_request",
    "password_set",
    "secret_view",
    "secret_rotate",
    "invitation_used",
    "authorize_application",
    "source_linked",
    "impersonation_started",
    "impersonation_ended",
    "flow_execution",
    "policy_execution",
    "policy_exception",
    "property_mapping_exception",
    "system_task_execution",
    "system_task_exception",
    "system_exception",
    "configuration_error",
    "configuration_warning",
    "model_created",
    "model_updated",
    "model_deleted",
    "email_sent",
    "update_available",
    "export_ready",
    "review_initiated",
    "review_overdue",
    "review_attested",
    "review_completed",
    "access_request_created",
    "access_request_approved",
    "access_request_denied",
    "access_request_revoked",
    "custom_",
];

/// `AppEnum` of authentik 2026.8 (authentik-client 2026.8.5): 82 values.
pub const APPS: &[&str] = &[
    "authentik.commands",
    "authentik.tenants",
    "authentik.tasks",
    "authentik.admin",
    "authentik.api",
    "authentik.core",
    "authentik.crypto",
    "authentik.endpoints",
    "authentik.endpoints.connectors.agent",
    "authentik.enterprise",
    "authentik.events",
    "authentik.admin.files",
    "authentik.flows",
    "authentik.outposts",
    "authentik.policies.dummy",
    "authentik.policies.event_matcher",
    "authentik.policies.expiry",
    "authentik.policies.expression",
    "authentik.policies.geoip",
    "authentik.policies.password",
    "authentik.policies.reputation",
    "authentik.policies",
    "authentik.providers.ldap",
    "authentik.providers.oauth2",
    "authentik.providers.proxy",
    "authentik.providers.rac",
    "authentik.providers.radius",
    "authentik.providers.saml",
    "authentik.providers.scim",
    "authentik.rbac",
    "authentik.recovery",
    "authentik.sources.kerberos",
    "authentik.sources.ldap",
    "authentik.sources.oauth",
    "authentik.sources.plex",
    "authentik.sources.saml",
    "authentik.sources.scim",
    "authentik.sources.telegram",
    "authentik.stages.authenticator",
    "authentik.stages.authenticator_duo",
    "authentik.stages.authenticator_email",
    "authentik.stages.authenticator_sms",
    "authentik.stages.authenticator_static",
    "authentik.stages.authenticator_totp",
    "authentik.stages.authenticator_validate",
    "authentik.stages.authenticator_webauthn",
    "authentik.stages.captcha",
    "authentik.stages.consent",
    "authentik.stages.deny",
    "authentik.stages.dummy",
    "authentik.stages.email",
    "authentik.stages.identification",
    "authentik.stages.invitation",
    "authentik.stages.password",
    "authentik.stages.prompt",
    "authentik.stages.redirect",
    "authentik.stages.user_delete",
    "authentik.stages.user_login",
    "authentik.stages.user_logout",
    "authentik.stages.user_write",
    "authentik.tasks.schedules",
    "authentik.brands",
    "authentik.blueprints",
    "authentik.enterprise.agents",
    "authentik.enterprise.audit",
    "authentik.enterprise.endpoints.connectors.agent",
    "authentik.enterprise.endpoints.connectors.fleet",
    "authentik.enterprise.endpoints.connectors.google_chrome",
    "authentik.enterprise.lifecycle",
    "authentik.enterprise.policies.unique_password",
    "authentik.enterprise.providers.google_workspace",
    "authentik.enterprise.providers.microsoft_entra",
    "authentik.enterprise.providers.radius",
    "authentik.enterprise.providers.scim",
    "authentik.enterprise.providers.ssf",
    "authentik.enterprise.providers.ws_federation",
    "authentik.enterprise.reports",
    "authentik.enterprise.requests",
    "authentik.enterprise.stages.account_lockdown",
    "authentik.enterprise.stages.authenticator_endpoint_gdtc",
    "authentik.enterprise.stages.mtls",
    "authentik.enterprise.stages.source",
];

/// `ModelEnum` of authentik 2026.8 (authentik-client 2026.8.5): 131 values.
pub const MODELS: &[&str] = &[
    "authentik_tenants.domain",
    "authentik_core.group",
    "authentik_core.user",
    "authentik_core.application",
    "authentik_core.applicationentitlement",
    "authentik_core.token",
    "authentik_core.objectattribute",
    "authentik_core.actor",
    "authentik_crypto.certificatekeypair",
    "authentik_endpoints.deviceuserbinding",
    "authentik_endpoints.deviceaccessgroup",
    "authentik_endpoints.endpointstage",
    "authentik_endpoints_connectors_agent.agentconnector",
    "authentik_endpoints_connectors_agent.agentdeviceuserbinding",
    "authentik_endpoints_connectors_agent.enrollmenttoken",
    "authentik_enterprise.license",
    "authentik_events.event",
    "authentik_events.notificationtransport",
    "authentik_events.notification",
    "authentik_events.notificationrule",
    "authentik_events.notificationwebhookmapping",
    "authentik_flows.flow",
    "authentik_flows.flowstagebinding",
    "authentik_outposts.dockerserviceconnection",
    "authentik_outposts.kubernetesserviceconnection",
    "authentik_outposts.outpost",
    "authentik_policies_dummy.dummypolicy",
    "authentik_policies_event_matcher.eventmatcherpolicy",
    "authentik_policies_expiry.passwordexpirypolicy",
    "authentik_policies_expression.expressionpolicy",
    "authentik_policies_geoip.geoippolicy",
    "authentik_policies_password.passwordpolicy",
    "authentik_policies_reputation.reputationpolicy",
    "authentik_policies.policybinding",
    "authentik_providers_ldap.ldapprovider",
    "authentik_providers_oauth2.scopemapping",
    "authentik_providers_oauth2.oauth2provider",
    "authentik_providers_oauth2.oauth2dynamicclientregistration",
    "authentik_providers_proxy.proxyprovider",
    "authentik_providers_rac.racprovider",
    "authentik_providers_rac.endpoint",
    "authentik_providers_rac.racpropertymapping",
    "authentik_providers_radius.radiusprovider",
    "authentik_providers_radius.radiusproviderpropertymapping",
    "authentik_providers_saml.samlprovider",
    "authentik_providers_saml.samlpropertymapping",
    "authentik_providers_scim.scimprovider",
    "authentik_providers_scim.scimmapping",
    "authentik_rbac.role",
    "authentik_rbac.initialpermissions",
    "authentik_sources_kerberos.kerberossource",
    "authentik_sources_kerberos.kerberossourcepropertymapping",
    "authentik_sources_kerberos.userkerberossourceconnection",
    "authentik_sources_kerberos.groupkerberossourceconnection",
    "authentik_sources_ldap.ldapsource",
    "authentik_sources_ldap.ldapsourcepropertymapping",
    "authentik_sources_ldap.userldapsourceconnection",
    "authentik_sources_ldap.groupldapsourceconnection",
    "authentik_sources_oauth.oauthsource",
    "authentik_sources_oauth.oauthsourcepropertymapping",
    "authentik_sources_oauth.useroauthsourceconnection",
    "authentik_sources_oauth.groupoauthsourceconnection",
    "authentik_sources_plex.plexsource",
    "authentik_sources_plex.plexsourcepropertymapping",
    "authentik_sources_plex.userplexsourceconnection",
    "authentik_sources_plex.groupplexsourceconnection",
    "authentik_sources_saml.samlsource",
    "authentik_sources_saml.samlsourcepropertymapping",
    "authentik_sources_saml.usersamlsourceconnection",
    "authentik_sources_saml.groupsamlsourceconnection",
    "authentik_sources_scim.scimsource",
    "authentik_sources_scim.scimsourcepropertymapping",
    "authentik_sources_telegram.telegramsource",
    "authentik_sources_telegram.telegramsourcepropertymapping",
    "authentik_sources_telegram.usertelegramsourceconnection",
    "authentik_sources_telegram.grouptelegramsourceconnection",
    "authentik_stages_authenticator_duo.authenticatorduostage",
    "authentik_stages_authenticator_duo.duodevice",
    "authentik_stages_authenticator_email.authenticatoremailstage",
    "authentik_stages_authenticator_email.emaildevice",
    "authentik_stages_authenticator_sms.authenticatorsmsstage",
    "authentik_stages_authenticator_sms.smsdevice",
    "authentik_stages_authenticator_static.authenticatorstaticstage",
    "authentik_stages_authenticator_static.staticdevice",
    "authentik_stages_authenticator_totp.authenticatortotpstage",
    "authentik_stages_authenticator_totp.totpdevice",
    "authentik_stages_authenticator_validate.authenticatorvalidatestage",
    "authentik_stages_authenticator_webauthn.authenticatorwebauthnstage",
    "authentik_stages_authenticator_webauthn.webauthndevice",
    "authentik_stages_captcha.captchastage",
    "authentik_stages_consent.consentstage",
    "authentik_stages_deny.denystage",
    "authentik_stages_dummy.dummystage",
    "authentik_stages_email.emailstage",
    "authentik_stages_identification.identificationstage",
    "authentik_stages_invitation.invitationstage",
    "authentik_stages_invitation.invitation",
    "authentik_stages_password.passwordstage",
    "authentik_stages_prompt.prompt",
    "authentik_stages_prompt.promptstage",
    "authentik_stages_redirect.redirectstage",
    "authentik_stages_user_delete.userdeletestage",
    "authentik_stages_user_login.userloginstage",
    "authentik_stages_user_logout.userlogoutstage",
    "authentik_stages_user_write.userwritestage",
    "authentik_tasks_schedules.schedule",
    "authentik_brands.brand",
    "authentik_blueprints.blueprintinstance",
    "authentik_agents.agent",
    "authentik_endpoints_connectors_fleet.fleetconnector",
    "authentik_endpoints_connectors_google_chrome.googlechromeconnector",
    "authentik_lifecycle.lifecyclerule",
    "authentik_lifecycle.lifecycleiteration",
    "authentik_lifecycle.review",
    "authentik_lifecycle.useroffboarding",
    "authentik_policies_unique_password.uniquepasswordpolicy",
    "authentik_providers_google_workspace.googleworkspaceprovider",
    "authentik_providers_google_workspace.googleworkspaceprovidermapping",
    "authentik_providers_microsoft_entra.microsoftentraprovider",
    "authentik_providers_microsoft_entra.microsoftentraprovidermapping",
    "authentik_providers_ssf.ssfprovider",
    "authentik_providers_ws_federation.wsfederationprovider",
    "authentik_reports.dataexport",
    "authentik_requests.requestrulechildbinding",
    "authentik_requests.requestrulebinding",
    "authentik_requests.requestrule",
    "authentik_requests.grantrequest",
    "authentik_stages_account_lockdown.accountlockdownstage",
    "authentik_stages_authenticator_endpoint_gdtc.authenticatorendpointgdtcstage",
    "authentik_stages_mtls.mutualtlsstage",
    "authentik_stages_source.sourcestage",
];

/// Values of the seed's lists (authentik 2024.x) that current authentik renamed or dropped,
/// still accepted so that policies written against the seed keep working:
/// `authentik.enterprise.providers.rac` became `authentik.providers.rac`, and consent stages'
/// `userconsent` model left the model list.
pub const SEED_APPS: &[&str] = &["authentik.enterprise.providers.rac"];
pub const SEED_MODELS: &[&str] = &["authentik_stages_consent.userconsent"];

/// `SeverityEnum` of notifications and notification rules.
pub const SEVERITIES: &[&str] = &["notice", "warning", "alert"];

/// The accepted values of each enum-typed writable field.
///
/// Immutable once built: the daemon builds it from configuration at start and shares it.
#[derive(Debug, Clone)]
pub struct Catalog {
    actions: HashSet<String>,
    apps: HashSet<String>,
    models: HashSet<String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new(&[], &[], &[])
    }
}

impl Catalog {
    /// The current lists and the seed's aliases, extended by the operator's extra values.
    pub fn new(extra_actions: &[String], extra_apps: &[String], extra_models: &[String]) -> Self {
        fn build(base: &[&str], extra: &[String]) -> HashSet<String> {
            base.iter()
                .map(|s| s.to_string())
                .chain(extra.iter().cloned())
                .collect()
        }
        Self {
            actions: build(EVENT_ACTIONS, extra_actions),
            apps: build(&[APPS, SEED_APPS].concat(), extra_apps),
            models: build(&[MODELS, SEED_MODELS].concat(), extra_models),
        }
    }

    /// The `action` choices AKQL maps labels from.
    pub fn action_choices(&self) -> crate::akql::Choices {
        let mut values: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        values.sort_unstable();
        crate::akql::Choices::new(values)
    }

    pub fn is_action(&self, v: &str) -> bool {
        self.actions.contains(v)
    }

    pub fn is_app(&self, v: &str) -> bool {
        self.apps.contains(v)
    }

    pub fn is_model(&self, v: &str) -> bool {
        self.models.contains(v)
    }

    /// Sizes of the three lists (actions, apps, models), for logs at start.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.actions.len(), self.apps.len(), self.models.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_are_complete_and_distinct() {
        let c = Catalog::default();
        assert_eq!(
            c.sizes(),
            (
                EVENT_ACTIONS.len(),
                APPS.len() + SEED_APPS.len(),
                MODELS.len() + SEED_MODELS.len()
            )
        );
        assert_eq!(EVENT_ACTIONS.len(), 38);
        assert!(c.is_action("login_failed"));
        assert!(c.is_action("custom_"));
        assert!(!c.is_action("custom_foo"));
        assert!(c.is_app("authentik.events"));
        assert!(c.is_model("authentik_core.user"));
        assert!(!c.is_model("authentik_core.nosuchmodel"));
    }

    #[test]
    fn operator_can_extend_each_list() {
        let c = Catalog::new(
            &["future_action".into()],
            &["authentik.future".into()],
            &["authentik_core.future".into()],
        );
        assert!(c.is_action("future_action"));
        assert!(c.is_app("authentik.future"));
        assert!(c.is_model("authentik_core.future"));
        assert!(!Catalog::default().is_action("future_action"));
    }

    /// authentik `events/models.py` `EventAction` (2026.8): the actions newer authentik emits,
    /// the renamed RAC app, and the seed's spelling kept as an alias.
    #[test]
    fn current_authentik_values_and_seed_aliases() {
        let c = Catalog::default();
        for a in [
            "configuration_warning",
            "export_ready",
            "review_completed",
            "user_offboarded",
            "access_request_revoked",
        ] {
            assert!(c.is_action(a), "{a}");
        }
        assert!(c.is_app("authentik.providers.rac"));
        assert!(c.is_app("authentik.enterprise.providers.rac"));
        assert!(c.is_model("authentik_stages_consent.userconsent"));
    }
}
