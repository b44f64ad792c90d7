//! The policy set: one immutable, versioned snapshot of policies, rules and bindings.
//!
//! A snapshot is never changed in place. A control command clones the maps (persistent maps:
//! a clone shares every node, a change copies one path), changes the clone through
//! [`PolicySetBuilder`], and [`PolicySetBuilder::build`] derives the matcher for it: patched
//! from the previous version's when only the contents of policies changed
//! ([`Matcher::patch`]), compiled afresh otherwise. The daemon then publishes the new
//! `Arc<PolicySet>` with `ArcSwap::store`, so an event is always evaluated against exactly one
//! version.

use crate::matcher::Matcher;
use crate::policy::EventMatcherPolicy;
use crate::rules::{NotificationRule, PolicyBinding};
use rustc_hash::FxHashMap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// One of a snapshot's maps: ordered by pk, and persistent, so versions share all of it but
/// the path to what a command changed. A copied `BTreeMap` was 2.2 M instructions of a
/// policy PATCH at 10,000 policies (BENCHMARKS.md §3); dropping a version frees only what it
/// did not share.
pub type Map<T> = imbl::OrdMap<Uuid, Arc<T>>;

#[derive(Debug, Default)]
pub struct PolicySet {
    version: u64,
    // Ordered maps: iteration in pk order makes rule evaluation, and so output order,
    // deterministic across instances and replays. Shared between versions ([`Map`]).
    policies: Map<EventMatcherPolicy>,
    rules: Map<NotificationRule>,
    bindings: Map<PolicyBinding>,
    /// Derived: number of bindings per policy (`bound_to`). Shared with the versions whose
    /// bindings are the same.
    bound_to: Arc<FxHashMap<Uuid, usize>>,
    /// Derived: the compiled evaluation structure for this version.
    matcher: Matcher,
}

impl PolicySet {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn policies(&self) -> &Map<EventMatcherPolicy> {
        &self.policies
    }

    pub fn rules(&self) -> &Map<NotificationRule> {
        &self.rules
    }

    pub fn bindings(&self) -> &Map<PolicyBinding> {
        &self.bindings
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    pub fn bound_to(&self, policy: &Uuid) -> usize {
        self.bound_to.get(policy).copied().unwrap_or(0)
    }

    pub fn rule_by_name(&self, name: &str) -> Option<&Arc<NotificationRule>> {
        self.rules.values().find(|r| r.name == name)
    }

    /// authentik's `Policy.name` is unique across policies.
    pub fn policy_by_name(&self, name: &str) -> Option<&Arc<EventMatcherPolicy>> {
        self.policies.values().find(|p| p.name == name)
    }

    pub fn builder(&self) -> PolicySetBuilder {
        PolicySetBuilder {
            policies: self.policies.clone(),
            rules: self.rules.clone(),
            bindings: self.bindings.clone(),
            bound_to: self.bound_to.clone(),
            matcher: self.matcher.clone(),
            changes: Changes::Policies(Vec::new()),
        }
    }

    /// Checks every invariant a published snapshot must hold. Used by tests after every
    /// command; cheap enough to run in debug builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for (pk, rule) in self.rules.iter() {
            if *pk != rule.pk {
                return Err(format!("rule keyed {pk} has pk {}", rule.pk));
            }
            if rule.name.is_empty() {
                return Err(format!("rule {pk} has an empty name"));
            }
            if !names.insert(rule.name.as_str()) {
                return Err(format!("rule name {:?} is not unique", rule.name));
            }
        }
        let mut policy_names = HashSet::new();
        for (pk, policy) in self.policies.iter() {
            if *pk != policy.pk || policy.name.is_empty() {
                return Err(format!("policy {pk} is malformed"));
            }
            if !policy_names.insert(policy.name.as_str()) {
                return Err(format!("policy name {:?} is not unique", policy.name));
            }
            if policy.client_ip.as_deref() == Some("") {
                return Err(format!("policy {pk} has an empty client_ip"));
            }
        }
        let mut triples = HashSet::new();
        let mut counts: HashMap<Uuid, usize> = HashMap::new();
        for (pk, b) in self.bindings.iter() {
            if *pk != b.pk {
                return Err(format!("binding keyed {pk} has pk {}", b.pk));
            }
            if !self.policies.contains_key(&b.policy) {
                return Err(format!(
                    "binding {pk} references missing policy {}",
                    b.policy
                ));
            }
            if !self.rules.contains_key(&b.target) {
                return Err(format!("binding {pk} references missing rule {}", b.target));
            }
            if !triples.insert((b.policy, b.target, b.order)) {
                return Err(format!("binding {pk} repeats (policy, target, order)"));
            }
            *counts.entry(b.policy).or_default() += 1;
        }
        for pk in self.policies.keys() {
            let want = counts.get(pk).copied().unwrap_or(0);
            if self.bound_to(pk) != want {
                return Err(format!(
                    "bound_to of {pk} is {} not {want}",
                    self.bound_to(pk)
                ));
            }
        }
        Ok(())
    }
}

/// Removes the entries `gone` picks from a map; whether there were any.
fn drop_where<T>(map: &mut Map<T>, gone: impl Fn(&T) -> bool) -> bool {
    let doomed: Vec<Uuid> = map
        .iter()
        .filter(|(_, v)| gone(v))
        .map(|(pk, _)| *pk)
        .collect();
    for pk in &doomed {
        map.remove(pk);
    }
    !doomed.is_empty()
}

/// What a builder changed since the snapshot it came from, as far as the matcher cares.
#[derive(Debug, Clone)]
enum Changes {
    /// Only policies were put or removed (none with bindings): each pk with its value in the
    /// base snapshot. The matcher is patched policy by policy.
    Policies(Vec<(Uuid, Option<Arc<EventMatcherPolicy>>)>),
    /// Rules or bindings changed: the matcher is compiled afresh.
    Wiring,
}

/// A mutable copy of a snapshot's state. Removing a policy or rule removes the bindings that
/// reference it, as authentik's `on_delete=CASCADE` does.
#[derive(Debug, Clone)]
pub struct PolicySetBuilder {
    policies: Map<EventMatcherPolicy>,
    rules: Map<NotificationRule>,
    bindings: Map<PolicyBinding>,
    /// The base snapshot's, kept while bindings are unchanged.
    bound_to: Arc<FxHashMap<Uuid, usize>>,
    /// The base snapshot's matcher (a cheap clone: its parts are shared), patched by
    /// [`Self::build`] when [`Changes::Policies`].
    matcher: Matcher,
    changes: Changes,
}

impl PolicySetBuilder {
    /// Notes that policy `pk` is about to change (its value in the base, the first time).
    fn touch_policy(&mut self, pk: Uuid) {
        if let Changes::Policies(touched) = &mut self.changes {
            if !touched.iter().any(|(t, _)| *t == pk) {
                touched.push((pk, self.policies.get(&pk).cloned()));
            }
        }
    }

    pub fn put_policy(&mut self, policy: EventMatcherPolicy) {
        self.touch_policy(policy.pk);
        self.policies.insert(policy.pk, Arc::new(policy));
    }

    pub fn put_rule(&mut self, rule: NotificationRule) {
        self.changes = Changes::Wiring;
        self.rules.insert(rule.pk, Arc::new(rule));
    }

    pub fn put_binding(&mut self, binding: PolicyBinding) {
        self.changes = Changes::Wiring;
        self.bindings.insert(binding.pk, Arc::new(binding));
    }

    pub fn remove_policy(&mut self, pk: &Uuid) -> bool {
        if drop_where(&mut self.bindings, |b| b.policy == *pk) {
            self.changes = Changes::Wiring;
        }
        self.touch_policy(*pk);
        self.policies.remove(pk).is_some()
    }

    pub fn remove_rule(&mut self, pk: &Uuid) -> bool {
        drop_where(&mut self.bindings, |b| b.target == *pk);
        self.changes = Changes::Wiring;
        self.rules.remove(pk).is_some()
    }

    pub fn remove_binding(&mut self, pk: &Uuid) -> bool {
        self.changes = Changes::Wiring;
        self.bindings.remove(pk).is_some()
    }

    /// Freezes the state as the given version and derives its matcher: the base's patched
    /// policy by policy when only policies changed, compiled afresh otherwise (or when a patch
    /// cannot express the change, [`Matcher::patch`]).
    pub fn build(self, version: u64) -> PolicySet {
        let (matcher, bound_to) = match self.changes {
            Changes::Policies(touched) => {
                let mut matcher = Some(self.matcher);
                for (pk, old) in &touched {
                    let new = self.policies.get(pk);
                    matcher = matcher.and_then(|m| m.patch(old.as_ref(), new));
                }
                let matcher = matcher.unwrap_or_else(|| {
                    Matcher::compile(&self.policies, &self.rules, &self.bindings)
                });
                (matcher, self.bound_to)
            }
            Changes::Wiring => {
                // Fx, not std's SipHash: hashing 10,000 bindings was 8% of a PATCH
                // (BENCHMARKS.md §3).
                let mut bound_to: FxHashMap<Uuid, usize> = FxHashMap::default();
                bound_to.reserve(self.policies.len());
                for b in self.bindings.values() {
                    *bound_to.entry(b.policy).or_default() += 1;
                }
                let matcher = Matcher::compile(&self.policies, &self.rules, &self.bindings);
                (matcher, Arc::new(bound_to))
            }
        };
        PolicySet {
            version,
            policies: self.policies,
            rules: self.rules,
            bindings: self.bindings,
            bound_to,
            matcher,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn deleting_a_policy_or_rule_cascades_to_bindings() {
        let mut b = PolicySet::empty().builder();
        b.put_policy(EventMatcherPolicy::new(u(1), "p1"));
        b.put_policy(EventMatcherPolicy::new(u(2), "p2"));
        b.put_rule(NotificationRule::new(u(10), "r1"));
        b.put_rule(NotificationRule::new(u(11), "r2"));
        b.put_binding(PolicyBinding::new(u(100), u(1), u(10), 0));
        b.put_binding(PolicyBinding::new(u(101), u(2), u(10), 1));
        b.put_binding(PolicyBinding::new(u(102), u(2), u(11), 0));
        let set = b.clone().build(1);
        set.check_invariants().expect("valid");
        assert_eq!(set.bound_to(&u(2)), 2);
        assert_eq!(set.bound_to(&u(1)), 1);

        let mut b1 = set.builder();
        assert!(b1.remove_policy(&u(2)));
        let after = b1.build(2);
        after.check_invariants().expect("valid");
        assert_eq!(after.bindings().len(), 1);
        assert_eq!(after.bound_to(&u(2)), 0);

        let mut b2 = set.builder();
        assert!(b2.remove_rule(&u(10)));
        let after = b2.build(2);
        after.check_invariants().expect("valid");
        assert_eq!(
            after.bindings().keys().copied().collect::<Vec<_>>(),
            vec![u(102)]
        );
        assert_eq!(after.bound_to(&u(1)), 0);
        // The snapshot the builder came from is untouched (the builders copied the maps
        // they changed, not the shared ones).
        assert_eq!(set.bindings().len(), 3);
        assert_eq!(set.policies().len(), 2);
        assert_eq!(set.rules().len(), 2);
        assert_eq!(set.version(), 1);
    }

    #[test]
    fn invariant_check_catches_dangling_and_duplicate_state() {
        let mut b = PolicySet::empty().builder();
        b.put_rule(NotificationRule::new(u(10), "same"));
        b.put_rule(NotificationRule::new(u(11), "same"));
        assert!(b.build(1).check_invariants().is_err());

        let mut b = PolicySet::empty().builder();
        b.put_rule(NotificationRule::new(u(10), "r"));
        b.put_binding(PolicyBinding::new(u(100), u(1), u(10), 0));
        assert!(b.build(1).check_invariants().is_err());
    }
}
