//! The benchmark workload, shared by the criterion benches and the end-to-end bench
//! (`examples/bench_e2e.rs` includes `benches/common` by path).
//!
//! Policy sets: a fixed core of 5 broad policies an operator would write first (failed
//! logins, suspicious requests, user deletions, password changes, impersonation), plus
//! `n - 5` specific ones. Every specific policy names a client IP (its own, from 10.0.0.0/8)
//! and 0 to 3 of action, app and model, so a set has 7 criteria signatures in all. Each
//! policy is bound to one rule; there is one rule per 10 policies, sending to the event's user
//! and, for every other rule, to a group as well.
//!
//! Events: ~600 bytes in authentik's serializer shape (user, http_request context, geo,
//! brand). A fixed share `match_rate` of them matches: 3/5 of those through a broad policy,
//! 2/5 by copying a random specific policy's criteria. The rest use actions and models no
//! policy names and client IPs from 192.168.0.0/16, so they match nothing.
#![allow(dead_code)]

use eventmatchd::policy::EventMatcherPolicy;
use eventmatchd::policyset::PolicySet;
use eventmatchd::rules::{NotificationRule, PolicyBinding, Severity};
use serde_json::{json, Value};
use uuid::Uuid;

/// splitmix64: deterministic, dependency-free, good enough to pick workload values.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Actions, apps and models the specific policies draw from.
const POLICY_ACTIONS: &[&str] = &[
    "login",
    "logout",
    "authorize_application",
    "flow_execution",
    "model_created",
    "model_updated",
    "secret_view",
    "invitation_used",
];
const POLICY_APPS: &[&str] = &[
    "authentik.events.signals",
    "authentik.core",
    "authentik.flows",
    "authentik.providers.oauth2",
    "authentik.stages.password",
];
const POLICY_MODELS: &[&str] = &[
    "authentik_core.user",
    "authentik_core.group",
    "authentik_core.application",
    "authentik_flows.flow",
    "authentik_providers_oauth2.oauth2provider",
];
/// Actions of non-matching events: none is named by a broad policy.
const QUIET_ACTIONS: &[&str] = &[
    "login",
    "login",
    "login",
    "login",
    "logout",
    "authorize_application",
    "authorize_application",
    "flow_execution",
    "model_updated",
    "secret_view",
];

pub const GROUP: Uuid = Uuid::from_u128(0x9d4b_2c1a_0000_4000_8000_0000_0000_beef);

fn policy_pk(i: usize) -> Uuid {
    Uuid::from_u128(0xa000_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}
fn rule_pk(i: usize) -> Uuid {
    Uuid::from_u128(0xb000_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}
fn binding_pk(i: usize) -> Uuid {
    Uuid::from_u128(0xc000_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}
fn event_pk(seed: u64, i: u64) -> Uuid {
    Uuid::from_u128(0xe000_0000_0000_4000_8000_0000_0000_0000 | ((seed as u128) << 64) | i as u128)
}

/// The specific policy `i`'s own client IP.
fn policy_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// The policies of a set of `n` (at least 5).
pub fn policies(n: usize) -> Vec<EventMatcherPolicy> {
    let mut out = Vec::with_capacity(n);
    let broad: [(&str, Option<&str>, Option<&str>); 5] = [
        ("login_failed", None, None),
        ("suspicious_request", None, None),
        ("model_deleted", None, Some("authentik_core.user")),
        ("password_set", Some("authentik.core"), None),
        ("impersonation_started", None, None),
    ];
    for (i, (action, app, model)) in broad.iter().enumerate() {
        let mut p = EventMatcherPolicy::new(policy_pk(i), format!("broad {i}"));
        p.action = Some(action.to_string());
        p.app = app.map(str::to_string);
        p.model = model.map(str::to_string);
        out.push(p);
    }
    let mut rng = Rng::new(0x5eed);
    for i in broad.len()..n {
        let mut p = EventMatcherPolicy::new(policy_pk(i), format!("specific {i}"));
        p.client_ip = Some(policy_ip(i));
        match i % 5 {
            0 => {}
            1 => p.action = Some(rng.pick(POLICY_ACTIONS).to_string()),
            2 => p.app = Some(rng.pick(POLICY_APPS).to_string()),
            3 => {
                p.action = Some(rng.pick(POLICY_ACTIONS).to_string());
                p.model = Some(rng.pick(POLICY_MODELS).to_string());
            }
            _ => {
                p.action = Some(rng.pick(POLICY_ACTIONS).to_string());
                p.app = Some(rng.pick(POLICY_APPS).to_string());
                p.model = Some(rng.pick(POLICY_MODELS).to_string());
            }
        }
        out.push(p);
    }
    out
}

pub fn rules(n_policies: usize) -> Vec<NotificationRule> {
    (0..n_policies.div_ceil(10))
        .map(|r| {
            let mut rule = NotificationRule::new(rule_pk(r), format!("rule {r}"));
            rule.severity = Severity::Alert;
            rule.destination_event_user = true;
            if r % 2 == 1 {
                rule.destination_group = Some(GROUP);
            }
            rule
        })
        .collect()
}

/// Policy `i` is bound to rule `i / 10`.
pub fn bindings(n_policies: usize) -> Vec<PolicyBinding> {
    (0..n_policies)
        .map(|i| PolicyBinding::new(binding_pk(i), policy_pk(i), rule_pk(i / 10), i as i64))
        .collect()
}

/// The policy set of `n` policies, built directly (not through control commands).
pub fn policy_set(n: usize) -> PolicySet {
    let mut b = PolicySet::empty().builder();
    for p in policies(n) {
        b.put_policy(p);
    }
    for r in rules(n) {
        b.put_rule(r);
    }
    for bd in bindings(n) {
        b.put_binding(bd);
    }
    b.build(1)
}

/// The same set as control commands (POST policy, rule, binding), for the end-to-end bench.
pub fn commands(n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, p) in policies(n).iter().enumerate() {
        out.push(
            json!({"id": format!("p{i}"), "method": "POST", "path": "/policies/event_matcher/",
            "body": {"pk": p.pk, "name": p.name, "action": p.action, "client_ip": p.client_ip,
                     "app": p.app, "model": p.model}}),
        );
    }
    for (i, r) in rules(n).iter().enumerate() {
        out.push(
            json!({"id": format!("r{i}"), "method": "POST", "path": "/events/rules/",
            "body": {"pk": r.pk, "name": r.name, "severity": "alert",
                     "destination_event_user": r.destination_event_user,
                     "destination_group": r.destination_group}}),
        );
    }
    for (i, b) in bindings(n).iter().enumerate() {
        out.push(
            json!({"id": format!("b{i}"), "method": "POST", "path": "/policies/bindings/",
            "body": {"pk": b.pk, "policy": b.policy, "target": b.target, "order": b.order}}),
        );
    }
    out
}

/// Generates events against a set of `n_policies` (same `n` as [`policies`]).
pub struct EventGen {
    rng: Rng,
    seed: u64,
    next: u64,
    specific: Vec<EventMatcherPolicy>,
    match_rate: f64,
}

impl EventGen {
    pub fn new(n_policies: usize, match_rate: f64, seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            seed,
            next: 0,
            specific: policies(n_policies).into_iter().skip(5).collect(),
            match_rate,
        }
    }

    /// The next event as a JSON value.
    pub fn value(&mut self) -> Value {
        let n = self.next;
        self.next += 1;
        let r = &mut self.rng;
        let user = 1 + r.below(5000);
        let quiet_ip = format!("192.168.{}.{}", r.below(256), r.below(256));
        let roll = r.unit();
        let (action, app, model, ip): (String, String, Option<String>, String) =
            if roll < self.match_rate * 0.6 || (roll < self.match_rate && self.specific.is_empty())
            {
                match r.below(5) {
                    0 => (
                        "login_failed".into(),
                        "authentik.events.signals".into(),
                        None,
                        quiet_ip,
                    ),
                    1 => (
                        "suspicious_request".into(),
                        "authentik.core".into(),
                        None,
                        quiet_ip,
                    ),
                    2 => (
                        "model_deleted".into(),
                        "authentik.events.signals".into(),
                        Some("authentik_core.user".into()),
                        quiet_ip,
                    ),
                    3 => (
                        "password_set".into(),
                        "authentik.core".into(),
                        None,
                        quiet_ip,
                    ),
                    _ => (
                        "impersonation_started".into(),
                        "authentik.core".into(),
                        None,
                        quiet_ip,
                    ),
                }
            } else if roll < self.match_rate {
                let p = &self.specific[r.below(self.specific.len())];
                (
                    p.action
                        .clone()
                        .unwrap_or_else(|| r.pick(QUIET_ACTIONS).to_string()),
                    p.app
                        .clone()
                        .unwrap_or_else(|| "authentik.events.signals".to_string()),
                    p.model.clone(),
                    p.client_ip.clone().unwrap_or(quiet_ip),
                )
            } else {
                let action = r.pick(QUIET_ACTIONS).to_string();
                let model = (action == "model_updated").then(|| r.pick(POLICY_MODELS).to_string());
                (action, r.pick(POLICY_APPS).to_string(), model, quiet_ip)
            };
        let http_request = json!({
            "args": {},
            "path": "/api/v3/flows/executor/default-authentication-flow/",
            "method": "POST",
            "request_id": format!("{:032x}", r.next_u64() as u128 * 0x1_0000_0001),
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0",
        });
        let context = match &model {
            Some(m) => {
                let (app_label, model_name) = m.split_once('.').unwrap_or((m.as_str(), ""));
                json!({"model": {"app": app_label, "model_name": model_name, "pk": user,
                                 "name": format!("user{user}")},
                       "http_request": http_request})
            }
            None => json!({"auth_method": "password",
                           "auth_method_args": {},
                           "http_request": http_request,
                           "geo": {"city": "Berlin", "country": "DE"}}),
        };
        json!({
            "pk": event_pk(self.seed, n),
            "user": {"pk": user, "email": format!("user{user}@example.com"),
                     "username": format!("user{user}")},
            "action": action,
            "app": app,
            "context": context,
            "client_ip": ip,
            "created": "2024-09-13T14:05:42.170312Z",
            "expires": "2099-09-13T14:05:42.170312Z",
            "brand": {"pk": "7e6c1d3a2b9f4e08a1c2d3e4f5a6b7c8", "app": "authentik_brands",
                      "model_name": "brand"},
        })
    }

    /// The next event as record bytes.
    pub fn bytes(&mut self) -> Vec<u8> {
        serde_json::to_vec(&self.value()).unwrap_or_default()
    }
}

/// A set of `n` policies with AKQL queries only (BENCHMARKS.md §1b): every operator, JSON
/// paths at one to three levels, or-chains, a few queries without an `action` conjunct (run
/// for every event), spread over authentik's 38 actions as operators write one query per
/// concern. Bound ten to a rule, as [`bindings`].
pub fn akql_policies(n: usize) -> Vec<EventMatcherPolicy> {
    let choices = eventmatchd::catalog::Catalog::default().action_choices();
    let actions = eventmatchd::catalog::EVENT_ACTIONS;
    (0..n)
        .map(|i| {
            let a = actions[i % actions.len()];
            let b = actions[(i / actions.len() + 1) % actions.len()];
            let k = i * 7 % 5000;
            let q = match i % 10 {
                0 => format!(r#"action = "{a}" and client_ip = "{}""#, policy_ip(i)),
                1 => format!(r#"action in ("{a}", "{b}") and user.username = "user{k}""#),
                2 => format!(
                    r#"action = "{a}" and (app startswith "authentik.co" or context.http_request.path ~ "/x{i}/")"#
                ),
                3 => format!(
                    r#"action = "{a}" and context.geo.country != "X{i}" and user.email endswith "@x{i}.example""#
                ),
                4 => format!(r#"action = "{a}" and created > "2030-01-01" and brand.model_name = "brand{i}""#),
                5 => format!(
                    r#"action = "{a}" and context.model.model_name in ("user", "group") and user.pk ~ "{i}99""#
                ),
                6 => format!(
                    r#"action = "{a}" and (user.username = "user{k}" or user.username = "user{}" or context.auth_method = "x{i}")"#,
                    k + 1
                ),
                7 => format!(r#"action = "{a}" and context.attempts > "100" and app !~ "zz{i}""#),
                8 if i % 50 == 8 => format!(
                    // No action conjunct: evaluated for every event (2% of the set).
                    r#"client_ip = "{}" or user.username = "nobody{i}""#,
                    policy_ip(i)
                ),
                8 => format!(
                    r#"action = "{a}" and event_uuid != "00000000-0000-4000-8000-{i:012}" and client_ip < "10.0.0.0" and app not startswith "x{i}""#
                ),
                _ => format!(
                    r#"action = "{a}" and context.http_request.method = "POST" and user.username not in ("user{k}", "root") and context.http_request.args.next not endswith "/{i}""#
                ),
            };
            let mut p = EventMatcherPolicy::new(policy_pk(i), format!("akql {i}"));
            let compiled = eventmatchd::akql::Query::compile(&q, &choices);
            assert!(compiled.error().is_none(), "{q}: {:?}", compiled.error());
            p.query = Some(std::sync::Arc::new(compiled));
            p
        })
        .collect()
}

/// [`akql_policies`] as a policy set, bound as [`policy_set`] binds.
pub fn akql_policy_set(n: usize) -> PolicySet {
    let mut b = PolicySet::empty().builder();
    for p in akql_policies(n) {
        b.put_policy(p);
    }
    for r in rules(n) {
        b.put_rule(r);
    }
    for bd in bindings(n) {
        b.put_binding(bd);
    }
    b.build(1)
}
