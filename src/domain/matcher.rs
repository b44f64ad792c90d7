//! Rule evaluation (SPEC §2.5), compiled once per policy-set version.
//!
//! Semantics: an enabled rule fires when any of its enabled bindings passes; a binding passes
//! when its policy matches the event, inverted by `negate`; a rule with no enabled binding
//! never fires. An event whose `context.policy_uuid` names a policy bound to any rule is
//! skipped for all rules (authentik's loop guard).
//!
//! Cost: instead of testing every policy, policies are grouped by which criteria they set
//! (at most 16 signatures) and, inside a group, hashed by the values of those criteria. An
//! event is hashed the same way once per signature present, so one evaluation costs a handful
//! of hash probes whatever the number of policies; each candidate is then checked with
//! [`EventMatcherPolicy::matches`], so a hash collision can never produce a false match.
//! Before probing, each of the event's four values is looked up in a small bit filter of the
//! values any policy names for that field; a group is probed only when every field it covers
//! may match. With many policies the groups' tables outgrow the CPU caches, and most events
//! (a client IP no policy names) then cost one filter lookup instead of one cache miss per
//! group; the filters stay in cache (about 2 bytes per distinct value).
//! Negated bindings are handled by counting: a rule fires through its negated bindings unless
//! every one of their policies matched.
//! A policy that raises for an event (authentik's `passes_model` on a `context.model` that is
//! not an object, [`EventMatcherPolicy::raises`]) makes its bindings false without `negate`
//! and logs no execution, as authentik's `PolicyProcess.run` catches the error; such events
//! (rare) are evaluated policy by policy instead of through the index. A policy whose AKQL
//! `query` does not compile raises for every event: it is left out of the index, and its
//! negated bindings count as never passing. A query's top-level `action` conjunct indexes its
//! policy like an `action` criterion (see [`crate::akql`]). [`evaluate_linear`] is the
//! straightforward reference used by property tests and benchmarks.
//!
//! Versions share their parts (`Arc`s): the wiring of policies to rules, the index's tables
//! in shards, the policies in chunks, the filters, the queries' program. A command that
//! changes only the contents of policies patches the previous version's matcher
//! ([`Matcher::patch`]): it copies the shards and chunk the policy leaves or enters and
//! appends its query to the program, where compiling afresh touched every policy (4 ms at
//! 10,000 policies, BENCHMARKS.md §3). Commands on rules and bindings compile afresh.

use crate::akql::{Bound, ColumnPaths, Columns, EventView, KeyField, Memo, Program, Slot};
use crate::events::Event;
use crate::policy::EventMatcherPolicy;
use crate::policyset::Map;
use crate::rules::{NotificationRule, PolicyBinding};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use smallvec::SmallVec;
use std::hash::Hasher;
use std::sync::Arc;
use uuid::Uuid;

/// One policy execution to log (the policy has `execution_logging`).
#[derive(Debug, Clone)]
pub struct Execution {
    pub binding: Arc<PolicyBinding>,
    pub policy: Arc<EventMatcherPolicy>,
    /// The binding's result: the policy's match, inverted by `negate`.
    pub passing: bool,
}

/// What one event caused.
#[derive(Debug, Default, Clone)]
pub struct Evaluation {
    /// Rules that fired, in pk order.
    pub fired: Vec<Arc<NotificationRule>>,
    /// Executions of logged policies, in rule then binding pk order.
    pub executions: Vec<Execution>,
    /// The loop guard skipped this event.
    pub guarded: bool,
}

/// A one-hash Bloom filter over the value hashes of one criterion: "no" is certain, "maybe"
/// is checked by the group probe. 16 bits per distinct value (about 6% false maybes).
#[derive(Debug, Default, Clone)]
struct FieldFilter {
    bits: Vec<u64>,
    shift: u32,
}

impl FieldFilter {
    fn new(values: &FxHashSet<u64>) -> Self {
        let slots = (values.len().max(1) * 16).next_power_of_two().max(64);
        let mut f = FieldFilter {
            bits: vec![0; slots / 64],
            shift: 64 - slots.trailing_zeros(),
        };
        for &v in values {
            let i = f.slot(v);
            f.bits[i / 64] |= 1 << (i % 64);
        }
        f
    }

    /// Adds a value (a patch's); the filter is not resized, so false maybes grow slowly
    /// until the next compile.
    fn insert(&mut self, v: u64) {
        let i = self.slot(v);
        if let Some(w) = self.bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn slot(&self, v: u64) -> usize {
        // Fx hashes are weak in their low bits; a multiply moves entropy to the top bits,
        // which are the ones used.
        (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    fn may_contain(&self, v: u64) -> bool {
        let i = self.slot(v);
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Entries per shard of a group's table ([`Group::shards`]) when compiled.
const SHARD: usize = 256;

#[derive(Debug, Clone)]
struct Group {
    mask: u8,
    /// The group's table, split by key into shards that versions share: a patch copies the
    /// shard a key it changes falls in (about [`SHARD`] entries), not the table. A power of
    /// two of them.
    shards: Vec<Arc<FxHashMap<u64, Bucket>>>,
}

impl Group {
    fn with_capacity(mask: u8, entries: usize) -> Group {
        let n = (entries / SHARD).max(1).next_power_of_two();
        let shards = (0..n)
            .map(|_| {
                let mut t = FxHashMap::default();
                t.reserve(entries.div_ceil(n) + entries.div_ceil(n) / 8);
                Arc::new(t)
            })
            .collect();
        Group { mask, shards }
    }

    /// A key's shard: the top bits of the key (combined keys are multiply-mixed there).
    fn shard_of(&self, key: u64) -> usize {
        (key >> 40) as usize & (self.shards.len() - 1)
    }

    fn get(&self, key: u64) -> Option<&Bucket> {
        self.shards.get(self.shard_of(key))?.get(&key)
    }

    /// The bucket of a key, made if missing, its shard copied if shared.
    fn bucket_mut(&mut self, key: u64) -> Option<&mut Bucket> {
        let at = self.shard_of(key);
        let shard = self.shards.get_mut(at)?;
        Some(Arc::make_mut(shard).entry(key).or_default())
    }

    /// Takes policy `no` out of a key's bucket (its shard copied if shared).
    fn remove(&mut self, key: u64, no: u32) {
        let at = self.shard_of(key);
        let Some(shard) = self.shards.get_mut(at) else {
            return;
        };
        if !shard.contains_key(&key) {
            return;
        }
        let table = Arc::make_mut(shard);
        if let Some(bucket) = table.get_mut(&key) {
            bucket.remove(no);
            if bucket.is_empty() {
                table.remove(&key);
            }
        }
    }
}

/// The policies of one index key.
#[derive(Debug, Default, Clone)]
struct Bucket {
    /// Evaluated for every event with the key.
    /// Inline for one or two: most buckets hold one policy, and a heap list per bucket was
    /// an allocation per policy in every rebuild.
    all: SmallVec<[u32; 2]>,
    /// Policies whose query requires some field to take one of a few values
    /// ([`crate::akql::compile::Node::lookup_keys`]), by field and value hash: evaluated only
    /// for events with such a value. A hash collision only adds candidates.
    keyed: Vec<Keyed>,
    /// Some policy is listed under two fields (an `or` of fields), so an event can reach it
    /// twice: the keyed candidates are deduplicated.
    repeats: bool,
}

impl Bucket {
    fn push(&mut self, no: u32, policy: &EventMatcherPolicy) {
        let Some(keys) = policy.query.as_ref().and_then(|q| q.lookup_keys()) else {
            self.all.push(no);
            return;
        };
        self.repeats |= keys.len() > 1;
        for (field, values) in keys {
            let at = match self.keyed.iter().position(|k| k.field == *field) {
                Some(at) => at,
                None => {
                    self.keyed.push(Keyed {
                        field: field.clone(),
                        slot: None,
                        by_value: FxHashMap::default(),
                    });
                    self.keyed.len() - 1
                }
            };
            // `values` has no repeats ([`Node::lookup_keys`]).
            for &v in values {
                self.keyed[at].by_value.entry(v).or_default().push(no);
            }
        }
    }

    /// Takes policy `no` out of the bucket.
    fn remove(&mut self, no: u32) {
        self.all.retain(|n| *n != no);
        for k in &mut self.keyed {
            for list in k.by_value.values_mut() {
                list.retain(|n| *n != no);
            }
            k.by_value.retain(|_, list| !list.is_empty());
        }
        self.keyed.retain(|k| !k.by_value.is_empty());
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty() && self.keyed.is_empty()
    }

    /// Gives the bucket's JSON lookup fields their slots in `paths` (added when new; `paths`
    /// copied only then).
    fn resolve(&mut self, paths: &mut Arc<ColumnPaths>) {
        for k in &mut self.keyed {
            if k.slot.is_none() && matches!(k.field, KeyField::Json(_)) {
                k.slot = Arc::make_mut(paths).key_slot(&k.field);
            }
        }
    }

    /// The candidates for an event, each once, into `out` (cleared first).
    fn candidates(&self, view: &EventView<'_, '_>, out: &mut Candidates) {
        out.clear();
        for k in &self.keyed {
            if let Some(list) = view.key(&k.field, k.slot).and_then(|v| k.by_value.get(&v)) {
                out.extend_from_slice(list);
            }
        }
        if self.repeats {
            out.sort_unstable();
            out.dedup();
        }
        out.extend_from_slice(&self.all);
    }
}

/// One bucket's candidates for an event ([`Bucket::candidates`]).
type Candidates = SmallVec<[u32; 64]>;

/// The policies of a bucket that require some value of one lookup field.
#[derive(Debug, Clone)]
struct Keyed {
    field: KeyField,
    /// Where a JSON field's value is, resolved once when the matcher is built (the lookup
    /// would otherwise find the path's slot again for every event).
    slot: Option<Slot>,
    /// Policies by the hash of a value they require.
    by_value: FxHashMap<u64, Vec<u32>>,
}

#[derive(Debug)]
struct LoggedBinding {
    binding: Arc<PolicyBinding>,
    /// The policy's number in [`Matcher::policies`] (where the policy's current version is).
    no: u32,
}

/// A vector that versions share in chunks: changing one element copies its chunk
/// ([`CHUNK`] elements), not the vector, and a clone counts one reference per chunk.
#[derive(Debug, Clone)]
struct Chunks<T> {
    chunks: Vec<Arc<Vec<T>>>,
}

const CHUNK: usize = 64;

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks { chunks: Vec::new() }
    }
}

impl<T: Clone> Chunks<T> {
    fn from_vec(v: Vec<T>) -> Self {
        Chunks {
            chunks: v.chunks(CHUNK).map(|c| Arc::new(c.to_vec())).collect(),
        }
    }

    fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn set(&mut self, i: usize, value: T) {
        if let Some(slot) = self
            .chunks
            .get_mut(i / CHUNK)
            .and_then(|c| Arc::make_mut(c).get_mut(i % CHUNK))
        {
            *slot = value;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

/// An indexed policy: its current version and its query bound into the program.
#[derive(Debug, Clone)]
struct Indexed {
    policy: Arc<EventMatcherPolicy>,
    /// `None`: no query.
    bound: Option<Bound>,
    /// How many program steps the bound query has (left behind as stale when patched away).
    steps: u32,
}

/// How policies reach rules: changed only by commands on rules and bindings (which compile
/// afresh), so every version a policy patch makes shares it.
#[derive(Debug, Default)]
struct Wiring {
    /// The number of each indexed policy (reachable through an enabled binding of an enabled
    /// rule, its query compiling).
    numbers: FxHashMap<Uuid, u32>,
    /// (rule number, negate) of each enabled binding, grouped by policy number: policy
    /// `n`'s are `edges[edge_start[n]..edge_start[n + 1]]`. One list, not one per policy: a
    /// list per policy was 10,000 allocations per PATCH at 10,000 policies.
    edges: Vec<(u32, bool)>,
    edge_start: Vec<u32>,
    /// Enabled rules with at least one enabled binding, in pk order.
    rules: Vec<Arc<NotificationRule>>,
    /// Per rule number: how many of its enabled bindings are negated.
    negated: Vec<u32>,
    /// Per rule number: negated bindings that never pass, whatever the event (their policy's
    /// query does not compile, so evaluating it raises). Their policies are not indexed.
    negated_raising: Vec<u32>,
    /// Rule numbers with at least one negated binding.
    rules_with_negation: Vec<u32>,
    /// Bindings whose policy logs executions, evaluated one by one.
    logged: Vec<LoggedBinding>,
    /// Policies bound to any rule (enabled or not): the loop guard.
    guard: FxHashSet<Uuid>,
}

/// One version's compiled evaluation structure. Every part is shared with the versions a
/// patch derives from it (module doc), so a clone is cheap.
#[derive(Debug, Default, Clone)]
pub struct Matcher {
    wiring: Arc<Wiring>,
    /// Indexed policies, densely numbered.
    policies: Chunks<Indexed>,
    /// By signature, in mask order.
    groups: Vec<Group>,
    /// Per criterion (same bit order as the masks): the values policies name.
    filters: [Arc<FieldFilter>; 4],
    /// The JSON paths the queries of `policies` read, with their slots: each event's columns
    /// are built only along them.
    paths: Arc<ColumnPaths>,
    /// The queries of `policies`, their shared comparisons evaluated once per event.
    program: Arc<Program>,
    /// Steps of queries that patches replaced, still in `program`: when they outnumber the
    /// live ones, the next patch compiles afresh instead.
    stale_steps: usize,
}

fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.write_u8(0xff);
    h.finish()
}

/// Combines the hashes of the fields a signature covers; the same function for policies and
/// events, so equal values give equal keys.
/// Field order in the hash arrays and signature masks: bit 0 action, 1 client_ip, 2 app,
/// 3 model.
fn combine(mask: u8, fields: &[Option<u64>; 4]) -> Option<u64> {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ mask as u64;
    for (bit, field) in fields.iter().enumerate() {
        if mask & (1 << bit) != 0 {
            let v = (*field)?;
            h = (h.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    Some(h)
}

fn policy_fields(p: &EventMatcherPolicy) -> (u8, [Option<u64>; 4]) {
    let fields = [
        p.action.as_deref().map(hash_str),
        p.client_ip.as_deref().map(hash_str),
        p.app.as_deref().map(hash_str),
        p.model.as_deref().map(hash_str),
    ];
    let mut mask = 0;
    for (bit, f) in fields.iter().enumerate() {
        if f.is_some() {
            mask |= 1 << bit;
        }
    }
    (mask, fields)
}

/// Where the group of a signature is in a mask-ordered list (`Err`: where it would go).
fn group_of(groups: &[Group], mask: u8) -> Result<usize, usize> {
    groups.binary_search_by_key(&mask, |g| g.mask)
}

/// One index entry of a policy: its signature, its key, and the value hashes of its criteria
/// (for the filters).
type Entry = (u8, u64, [Option<u64>; 4]);

/// A policy's index entries, one per action it is indexed under. A query's top-level
/// `action = v` / `action in (...)` indexes a policy without an `action` criterion under each
/// of those values (none: it can never match).
fn index_entries(p: &EventMatcherPolicy) -> SmallVec<[Entry; 2]> {
    let (mut mask, mut fields) = policy_fields(p);
    let actions: SmallVec<[Option<u64>; 4]> =
        match (&p.action, p.query.as_ref().and_then(|q| q.action_keys())) {
            (None, Some(keys)) => {
                mask |= 1;
                keys.iter().map(|k| Some(hash_str(k))).collect()
            }
            _ => smallvec::smallvec![fields[0]],
        };
    actions
        .into_iter()
        .map(|action| {
            fields[0] = action;
            (mask, combine(mask, &fields).unwrap_or(0), fields)
        })
        .collect()
}

fn event_fields(e: &Event) -> [Option<u64>; 4] {
    [
        Some(hash_str(&e.action)),
        e.client_ip.as_deref().map(hash_str),
        Some(hash_str(&e.app)),
        e.model.as_deref().map(hash_str),
    ]
}

impl Matcher {
    pub fn compile(
        policies: &Map<EventMatcherPolicy>,
        rules: &Map<NotificationRule>,
        bindings: &Map<PolicyBinding>,
    ) -> Matcher {
        let mut w = Wiring::default();
        // Bindings grouped by rule, in binding pk order, for deterministic execution output.
        // Hashed, not ordered: rules are walked in `rules`' order, and a hash look-up cost
        // less than comparing `Uuid`s down a tree (BENCHMARKS.md §3).
        let mut by_rule: FxHashMap<Uuid, Vec<&Arc<PolicyBinding>>> = FxHashMap::default();
        for b in bindings.values() {
            w.guard.insert(b.policy);
            by_rule.entry(b.target).or_default().push(b);
        }
        w.numbers.reserve(policies.len());
        let mut indexed: Vec<Arc<EventMatcherPolicy>> = Vec::with_capacity(policies.len());
        // Looked up once per binding: hashing a `Uuid` cost less than comparing it down the
        // tree (BENCHMARKS.md §3).
        let by_pk: FxHashMap<Uuid, &Arc<EventMatcherPolicy>> =
            policies.iter().map(|(pk, p)| (*pk, p)).collect();
        // (policy number, rule number, negate), in rule then binding order.
        let mut edges: Vec<(u32, u32, bool)> = Vec::with_capacity(bindings.len());
        for (rule_pk, rule) in rules {
            if !rule.enabled {
                continue;
            }
            let bound = by_rule.get(rule_pk).map_or(&[][..], Vec::as_slice);
            if !bound.iter().any(|b| b.enabled) {
                continue;
            }
            let enabled = bound.iter().copied().filter(|b| b.enabled);
            let rule_no = w.rules.len() as u32;
            w.rules.push(rule.clone());
            let mut negated = 0;
            let mut negated_raising = 0;
            for b in enabled {
                let Some(&policy) = by_pk.get(&b.policy) else {
                    continue;
                };
                if policy.query_raises() {
                    // False for every event, `negate` or not, and no execution is logged.
                    if b.negate {
                        negated += 1;
                        negated_raising += 1;
                    }
                    continue;
                }
                let no = *w.numbers.entry(b.policy).or_insert_with(|| {
                    indexed.push(policy.clone());
                    (indexed.len() - 1) as u32
                });
                edges.push((no, rule_no, b.negate));
                if b.negate {
                    negated += 1;
                }
                if policy.execution_logging {
                    w.logged.push(LoggedBinding {
                        binding: b.clone(),
                        no,
                    });
                }
            }
            w.negated.push(negated);
            w.negated_raising.push(negated_raising);
            if negated > 0 {
                w.rules_with_negation.push(rule_no);
            }
        }
        // Stable: a policy's edges stay in rule then binding order.
        edges.sort_by_key(|&(no, _, _)| no);
        // Policy n's edges start after those of every policy before it.
        w.edge_start = vec![0; indexed.len() + 1];
        for &(no, _, _) in &edges {
            if let Some(c) = w.edge_start.get_mut(no as usize + 1) {
                *c += 1;
            }
        }
        for i in 1..w.edge_start.len() {
            w.edge_start[i] += w.edge_start[i - 1];
        }
        w.edges = edges
            .into_iter()
            .map(|(_, rule, negate)| (rule, negate))
            .collect();

        let mut values: [FxHashSet<u64>; 4] = Default::default();
        for v in &mut values {
            v.reserve(indexed.len());
        }
        // (signature, key, policy number) of every index entry.
        let mut entries: Vec<(u8, u64, u32)> = Vec::with_capacity(indexed.len());
        for (no, p) in indexed.iter().enumerate() {
            for (mask, key, fields) in index_entries(p) {
                for (set, field) in values.iter_mut().zip(fields) {
                    if let Some(v) = field {
                        set.insert(v);
                    }
                }
                entries.push((mask, key, no as u32));
            }
        }
        // Each group's table sized once for its entries: grown entry by entry, its rehashes
        // were a tenth of a rebuild (BENCHMARKS.md §3).
        let mut per_mask = [0usize; 16];
        for &(mask, _, _) in &entries {
            per_mask[mask as usize & 15] += 1;
        }
        let mut groups: Vec<Group> = (0..16u8)
            .filter(|&mask| per_mask[mask as usize] > 0)
            .map(|mask| Group::with_capacity(mask, per_mask[mask as usize]))
            .collect();
        for (mask, key, no) in entries {
            let (Ok(at), Some(p)) = (group_of(&groups, mask), indexed.get(no as usize)) else {
                continue;
            };
            if let Some(bucket) = groups.get_mut(at).and_then(|g| g.bucket_mut(key)) {
                bucket.push(no, p);
            }
        }
        // Every query bound into the program, which gives its paths their slots (logged
        // policies are among the indexed ones).
        let mut program = Program::default();
        let mut paths = Arc::new(ColumnPaths::default());
        let mut slots = Vec::with_capacity(indexed.len());
        for p in indexed {
            let before = program.steps();
            let bound = p
                .query
                .as_ref()
                .and_then(|q| q.tree())
                .map(|n| program.bind(n, Arc::make_mut(&mut paths)));
            let steps = (program.steps() - before) as u32;
            slots.push(Indexed {
                policy: p,
                bound,
                steps,
            });
        }
        for g in &mut groups {
            for shard in &mut g.shards {
                for bucket in Arc::make_mut(shard).values_mut() {
                    bucket.resolve(&mut paths);
                }
            }
        }
        Matcher {
            wiring: Arc::new(w),
            policies: Chunks::from_vec(slots),
            groups,
            filters: values.map(|v| Arc::new(FieldFilter::new(&v))),
            paths,
            program: Arc::new(program),
            stale_steps: 0,
        }
    }

    /// The matcher of a version that differs from this one only in policy `old` becoming
    /// `new` (the same pk; `None`: absent), its bindings and rules unchanged. It shares all
    /// but what the change touches: the shard of each index key the policy leaves or enters,
    /// the chunk of its number, a filter it adds a value to, and the program and paths when
    /// it has a query (appended; the old query's steps stay behind, stale).
    ///
    /// `None` when a patch cannot express the change and the caller must compile afresh:
    /// the policy's query raises before or after (which changes its wiring), its execution
    /// logging flips, stale steps outnumber live ones, or an indexed policy appears or
    /// disappears (its bindings changed, which [`Self::compile`] handles).
    pub fn patch(
        mut self,
        old: Option<&Arc<EventMatcherPolicy>>,
        new: Option<&Arc<EventMatcherPolicy>>,
    ) -> Option<Matcher> {
        let Some(pk) = old.or(new).map(|p| p.pk) else {
            return Some(self);
        };
        let raises = |p: Option<&Arc<EventMatcherPolicy>>| p.is_some_and(|p| p.query_raises());
        if raises(old) || raises(new) {
            return None;
        }
        let Some(&no) = self.wiring.numbers.get(&pk) else {
            // Not indexed and not raising: no enabled binding of an enabled rule reaches it,
            // and its bindings did not change.
            return Some(self);
        };
        let (Some(old), Some(new)) = (old, new) else {
            return None;
        };
        if old.execution_logging != new.execution_logging {
            return None;
        }
        for (mask, key, _) in index_entries(old) {
            if let Ok(at) = group_of(&self.groups, mask) {
                self.groups[at].remove(key, no);
            }
        }
        self.stale_steps += self.policies.get(no as usize).map_or(0, |i| i.steps) as usize;
        let (bound, steps) = match new.query.as_ref().and_then(|q| q.tree()) {
            Some(node) => {
                let program = Arc::make_mut(&mut self.program);
                let before = program.steps();
                let bound = program.bind(node, Arc::make_mut(&mut self.paths));
                (Some(bound), (program.steps() - before) as u32)
            }
            None => (None, 0),
        };
        if self.stale_steps > 1024 && 2 * self.stale_steps > self.program.steps() {
            return None;
        }
        for (mask, key, fields) in index_entries(new) {
            for (filter, v) in self.filters.iter_mut().zip(fields) {
                if let Some(v) = v.filter(|&v| !filter.may_contain(v)) {
                    Arc::make_mut(filter).insert(v);
                }
            }
            let at = match group_of(&self.groups, mask) {
                Ok(at) => at,
                Err(at) => {
                    self.groups.insert(at, Group::with_capacity(mask, 1));
                    at
                }
            };
            if let Some(bucket) = self.groups.get_mut(at).and_then(|g| g.bucket_mut(key)) {
                bucket.push(no, new);
                bucket.resolve(&mut self.paths);
            }
        }
        self.policies.set(
            no as usize,
            Indexed {
                policy: new.clone(),
                bound,
                steps,
            },
        );
        Some(self)
    }

    /// Whether indexed policy `no` matches ([`EventMatcherPolicy::matches_in`], its query
    /// through the program).
    fn matches(&self, no: usize, view: &EventView<'_, '_>, memo: &mut Memo) -> bool {
        let Some(ix) = self.policies.get(no) else {
            return false;
        };
        match ix.bound {
            Some(b) => self.program.eval(b, view, memo) && ix.policy.criteria_match(view.event()),
            None => ix.policy.matches_in(view),
        }
    }

    /// (rule number, negate) of indexed policy `no`'s enabled bindings.
    fn edges_of(&self, no: usize) -> &[(u32, bool)] {
        let w = &*self.wiring;
        let at = |i: usize| w.edge_start.get(i).map_or(0, |&x| x as usize);
        w.edges.get(at(no)..at(no + 1)).unwrap_or_default()
    }

    /// Whether this matcher was patched from `other` (or the other way round, or they are
    /// one): they share their wiring. For tests and the benches, which check that a command
    /// took the patch path.
    pub fn shares_wiring(&self, other: &Matcher) -> bool {
        Arc::ptr_eq(&self.wiring, &other.wiring)
    }

    /// (key, policy number) of every index entry, sorted: a patched matcher holds exactly
    /// what a fresh compile does (a stale entry would cost a candidate check, not a result).
    #[cfg(test)]
    fn entries(&self) -> Vec<(u8, u64, u32)> {
        let mut out: Vec<(u8, u64, u32)> = self
            .groups
            .iter()
            .flat_map(|g| {
                g.shards
                    .iter()
                    .flat_map(move |s| s.iter().map(move |e| (g.mask, e)))
            })
            .flat_map(|(mask, (key, b))| {
                let keyed = b.keyed.iter().flat_map(|k| k.by_value.values().flatten());
                b.all.iter().chain(keyed).map(move |&no| (mask, *key, no))
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Number of rules that can fire (enabled, with an enabled binding).
    pub fn live_rules(&self) -> usize {
        self.wiring.rules.len()
    }

    /// Whether the loop guard skips an event.
    pub fn guards(&self, event: &Event) -> bool {
        event
            .policy_uuid
            .is_some_and(|pu| self.wiring.guard.contains(&pu))
    }

    pub fn evaluate(&self, event: &Event) -> Evaluation {
        if self.guards(event) {
            return Evaluation {
                guarded: true,
                ..Evaluation::default()
            };
        }
        let fields = event_fields(event);
        // Shared by every policy's query for this event: JSON parsed and paths resolved once.
        let cols = Columns::guided(event, &self.paths);
        let view = EventView::new(&cols);
        let mut memo = Memo::new(&self.program);
        // Bit i set: some policy may name the event's value of criterion i.
        let mut known: u8 = 0;
        for (bit, (field, filter)) in fields.iter().zip(&self.filters).enumerate() {
            if field.is_some_and(|v| filter.may_contain(v)) {
                known |= 1 << bit;
            }
        }
        // Inline: an event fires a few rules and reaches a few dozen candidates; growing heap
        // lists for them was most of the matcher's allocations (BENCHMARKS.md §1b).
        let mut fired: SmallVec<[u32; 16]> = SmallVec::new();
        let mut scratch = Candidates::new();
        // Negated bindings per rule that do not pass (their policy matched, or raised); only
        // rules with negations ever get an entry.
        let mut negated_hits: FxHashMap<u32, u32> = FxHashMap::default();
        if event.model_malformed {
            for (no, ix) in self.policies.iter().enumerate() {
                let raises = ix.policy.raises(event);
                if !raises && !self.matches(no, &view, &mut memo) {
                    continue;
                }
                for &(rule, negate) in self.edges_of(no) {
                    if negate {
                        *negated_hits.entry(rule).or_default() += 1;
                    } else if !raises {
                        fired.push(rule);
                    }
                }
            }
        }
        for g in self.groups.iter().filter(|_| !event.model_malformed) {
            if g.mask & known != g.mask {
                continue;
            }
            let Some(key) = combine(g.mask, &fields) else {
                continue;
            };
            let Some(candidates) = g.get(key) else {
                continue;
            };
            candidates.candidates(&view, &mut scratch);
            for &no in &scratch {
                if !self.matches(no as usize, &view, &mut memo) {
                    continue;
                }
                for &(rule, negate) in self.edges_of(no as usize) {
                    if negate {
                        *negated_hits.entry(rule).or_default() += 1;
                    } else {
                        fired.push(rule);
                    }
                }
            }
        }
        let w = &*self.wiring;
        for &rule in &w.rules_with_negation {
            let hits =
                negated_hits.get(&rule).copied().unwrap_or(0) + w.negated_raising[rule as usize];
            if hits < w.negated[rule as usize] {
                fired.push(rule);
            }
        }
        fired.sort_unstable();
        fired.dedup();
        let executions = w
            .logged
            .iter()
            .filter_map(|lb| {
                let policy = &self.policies.get(lb.no as usize)?.policy;
                (!policy.raises(event)).then(|| Execution {
                    binding: lb.binding.clone(),
                    policy: policy.clone(),
                    passing: self.matches(lb.no as usize, &view, &mut memo) != lb.binding.negate,
                })
            })
            .collect();
        Evaluation {
            fired: fired
                .into_iter()
                .map(|r| w.rules[r as usize].clone())
                .collect(),
            executions,
            guarded: false,
        }
    }
}

/// The reference evaluation: every rule, every binding, no index. Same result as
/// [`Matcher::evaluate`] (checked by property tests), at a cost linear in the set's size.
pub fn evaluate_linear(
    policies: &Map<EventMatcherPolicy>,
    rules: &Map<NotificationRule>,
    bindings: &Map<PolicyBinding>,
    event: &Event,
) -> Evaluation {
    if let Some(pu) = event.policy_uuid {
        if bindings.values().any(|b| b.policy == pu) {
            return Evaluation {
                guarded: true,
                ..Evaluation::default()
            };
        }
    }
    let mut out = Evaluation::default();
    for rule in rules.values().filter(|r| r.enabled) {
        let mut fires = false;
        for b in bindings
            .values()
            .filter(|b| b.target == rule.pk && b.enabled)
        {
            let Some(policy) = policies.get(&b.policy) else {
                continue;
            };
            if policy.raises(event) {
                continue;
            }
            let passing = policy.matches(event) != b.negate;
            fires |= passing;
            if policy.execution_logging {
                out.executions.push(Execution {
                    binding: b.clone(),
                    policy: policy.clone(),
                    passing,
                });
            }
        }
        if fires {
            out.fired.push(rule.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policyset::PolicySet;
    use serde_json::json;

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn event(action: &str, ctx: serde_json::Value) -> Event {
        Event::parse(
            json!({"pk": u(999).to_string(), "action": action, "app": "authentik.core",
                   "client_ip": "10.0.0.1", "context": ctx})
            .to_string()
            .as_bytes(),
        )
        .expect("valid")
    }

    fn policy(n: u128, action: Option<&str>) -> EventMatcherPolicy {
        let mut p = EventMatcherPolicy::new(u(n), format!("p{n}"));
        p.action = action.map(str::to_string);
        p
    }

    fn fired(set: &PolicySet, e: &Event) -> Vec<Uuid> {
        let ev = set.matcher().evaluate(e);
        let lin = evaluate_linear(set.policies(), set.rules(), set.bindings(), e);
        let a: Vec<Uuid> = ev.fired.iter().map(|r| r.pk).collect();
        let b: Vec<Uuid> = lin.fired.iter().map(|r| r.pk).collect();
        assert_eq!(a, b, "indexed and linear evaluation agree");
        a
    }

    #[test]
    fn any_enabled_binding_fires_the_rule() {
        let mut b = PolicySet::empty().builder();
        b.put_policy(policy(1, Some("login")));
        b.put_policy(policy(2, Some("logout")));
        b.put_rule(NotificationRule::new(u(10), "r"));
        b.put_binding(PolicyBinding::new(u(100), u(1), u(10), 0));
        b.put_binding(PolicyBinding::new(u(101), u(2), u(10), 1));
        let set = b.build(1);
        assert_eq!(fired(&set, &event("login", json!({}))), vec![u(10)]);
        assert_eq!(fired(&set, &event("logout", json!({}))), vec![u(10)]);
        assert!(fired(&set, &event("user_write", json!({}))).is_empty());
    }

    #[test]
    fn negate_inverts_a_binding() {
        let mut b = PolicySet::empty().builder();
        b.put_policy(policy(1, Some("login")));
        b.put_rule(NotificationRule::new(u(10), "r"));
        let mut nb = PolicyBinding::new(u(100), u(1), u(10), 0);
        nb.negate = true;
        b.put_binding(nb);
        let set = b.build(1);
        assert!(fired(&set, &event("login", json!({}))).is_empty());
        assert_eq!(fired(&set, &event("logout", json!({}))), vec![u(10)]);
    }

    #[test]
    fn two_negated_bindings_fire_unless_both_policies_match() {
        let mut b = PolicySet::empty().builder();
        b.put_policy(policy(1, Some("login")));
        b.put_policy(policy(2, None));
        b.put_rule(NotificationRule::new(u(10), "r"));
        for (pk, p) in [(100, 1), (101, 2)] {
            let mut nb = PolicyBinding::new(u(pk), u(p), u(10), pk as i64);
            nb.negate = true;
            b.put_binding(nb);
        }
        let set = b.build(1);
        // Both match a login: both negated bindings fail.
        assert!(fired(&set, &event("login", json!({}))).is_empty());
        // A logout fails policy 1, so its negated binding passes.
        assert_eq!(fired(&set, &event("logout", json!({}))), vec![u(10)]);
    }

    #[test]
    fn disabled_binding_disabled_rule_and_no_bindings_never_fire() {
        let mut b = PolicySet::empty().builder();
        b.put_policy(policy(1, None));
        b.put_rule(NotificationRule::new(u(10), "disabled binding"));
        let mut db = PolicyBinding::new(u(100), u(1), u(10), 0);
        db.enabled = false;
        b.put_binding(db);
        let mut off = NotificationRule::new(u(11), "disabled rule");
        off.enabled = false;
        b.put_rule(off);
        b.put_binding(PolicyBinding::new(u(101), u(1), u(11), 0));
        b.put_rule(NotificationRule::new(u(12), "no bindings"));
        let set = b.build(1);
        assert!(fired(&set, &event("login", json!({}))).is_empty());
        assert_eq!(set.matcher().live_rules(), 0);
    }

    #[test]
    fn loop_guard_skips_events_of_bound_policies_even_disabled_ones() {
        let mut b = PolicySet::empty().builder();
        b.put_policy(policy(1, None));
        b.put_policy(policy(2, None));
        b.put_policy(policy(3, None));
        b.put_rule(NotificationRule::new(u(10), "r"));
        b.put_binding(PolicyBinding::new(u(100), u(1), u(10), 0));
        let mut disabled = PolicyBinding::new(u(101), u(2), u(10), 1);
        disabled.enabled = false;
        b.put_binding(disabled);
        let set = b.build(1);
        for guarded in [1u128, 2] {
            let e = event(
                "policy_execution",
                json!({"policy_uuid": u(guarded).simple().to_string()}),
            );
            let ev = set.matcher().evaluate(&e);
            assert!(ev.guarded && ev.fired.is_empty(), "policy {guarded}");
            assert!(fired(&set, &e).is_empty());
        }
        // Policy 3 is bound to nothing: its executions are ordinary events.
        let e = event("policy_execution", json!({"policy_uuid": u(3).to_string()}));
        assert_eq!(fired(&set, &e), vec![u(10)]);
    }

    #[test]
    fn executions_are_reported_for_logged_policies_with_their_result() {
        let mut b = PolicySet::empty().builder();
        let mut p = policy(1, Some("login"));
        p.execution_logging = true;
        b.put_policy(p);
        b.put_rule(NotificationRule::new(u(10), "r"));
        b.put_binding(PolicyBinding::new(u(100), u(1), u(10), 0));
        let set = b.build(1);
        let hit = set.matcher().evaluate(&event("login", json!({})));
        assert_eq!(hit.executions.len(), 1);
        assert!(hit.executions[0].passing);
        let miss = set.matcher().evaluate(&event("logout", json!({})));
        assert_eq!(
            miss.executions.len(),
            1,
            "a failing execution is logged too"
        );
        assert!(!miss.executions[0].passing);
    }

    /// Evaluates `set` both ways on every event, and against a matcher compiled afresh.
    fn agrees_with_a_fresh_compile(set: &PolicySet, events: &[Event]) {
        let fresh = Matcher::compile(set.policies(), set.rules(), set.bindings());
        assert_eq!(
            set.matcher().entries(),
            fresh.entries(),
            "the same index entries"
        );
        for e in events {
            let patched = set.matcher().evaluate(e);
            let compiled = fresh.evaluate(e);
            let pks = |ev: &Evaluation| ev.fired.iter().map(|r| r.pk).collect::<Vec<_>>();
            assert_eq!(pks(&patched), pks(&compiled), "{e:?}");
            fired(set, e);
            let runs = |ev: &Evaluation| {
                ev.executions
                    .iter()
                    .map(|x| (x.binding.pk, x.policy.name.clone(), x.passing))
                    .collect::<Vec<_>>()
            };
            assert_eq!(runs(&patched), runs(&compiled), "{e:?}");
        }
    }

    #[test]
    fn a_policy_change_patches_the_matcher_and_a_wiring_change_compiles_it() {
        let mut b = PolicySet::empty().builder();
        // Enough policies in one signature that its table has several shards.
        for n in 0..2_000u128 {
            b.put_policy(policy(n + 1, Some(&format!("custom_{n}"))));
        }
        let mut logged = policy(5_000, Some("login"));
        logged.execution_logging = true;
        b.put_policy(logged);
        b.put_policy(policy(6_000, None)); // bound to nothing
        b.put_rule(NotificationRule::new(u(10), "r"));
        b.put_rule(NotificationRule::new(u(11), "negated"));
        for n in 0..2_000u128 {
            b.put_binding(PolicyBinding::new(
                u(100_000 + n),
                u(n + 1),
                u(10),
                n as i64,
            ));
        }
        b.put_binding(PolicyBinding::new(u(99), u(5_000), u(10), -1));
        let mut nb = PolicyBinding::new(u(98), u(7), u(11), 0);
        nb.negate = true;
        b.put_binding(nb);
        let v1 = b.build(1);
        let events: Vec<Event> = ["login", "logout", "custom_7", "custom_1999", "custom_3"]
            .iter()
            .map(|a| event(a, json!({})))
            .collect();
        agrees_with_a_fresh_compile(&v1, &events);

        // Policy 7 moves from `custom_6` to `logout` and gains an app (a signature no policy
        // had: a new group); policy 5,000 changes name only; the unbound one changes.
        let mut b = v1.builder();
        let mut moved = policy(7, Some("logout"));
        moved.app = Some("authentik.core".into());
        b.put_policy(moved);
        let mut renamed = policy(5_000, Some("login"));
        renamed.name = "renamed".into();
        renamed.execution_logging = true;
        b.put_policy(renamed);
        b.put_policy(policy(6_000, Some("login")));
        let v2 = b.build(2);
        assert!(v2.matcher().shares_wiring(v1.matcher()), "patched");
        agrees_with_a_fresh_compile(&v2, &events);
        assert_eq!(
            fired(&v2, &event("logout", json!({}))),
            vec![u(10)],
            "the moved policy fires its rule; its negated binding no longer passes"
        );
        // The version it came from is untouched.
        agrees_with_a_fresh_compile(&v1, &events);
        assert_eq!(fired(&v1, &event("custom_6", json!({}))), vec![u(10)]);

        // A removed criterion, and an unbound policy created and deleted: still a patch.
        let mut b = v2.builder();
        b.put_policy(policy(7, None));
        b.put_policy(policy(7_000, Some("login")));
        b.remove_policy(&u(6_000));
        let v3 = b.build(3);
        assert!(v3.matcher().shares_wiring(v1.matcher()));
        agrees_with_a_fresh_compile(&v3, &events);

        // Execution logging flipped, a rule renamed, a bound policy deleted: compiled afresh.
        for change in 0..3 {
            let mut b = v3.builder();
            match change {
                0 => b.put_policy(policy(5_000, Some("login"))),
                1 => b.put_rule(NotificationRule::new(u(10), "renamed rule")),
                _ => {
                    b.remove_policy(&u(3));
                }
            }
            let v4 = b.build(4);
            assert!(!v4.matcher().shares_wiring(v3.matcher()), "change {change}");
            agrees_with_a_fresh_compile(&v4, &events);
        }
    }

    #[test]
    fn many_policies_in_every_signature_agree_with_linear() {
        let mut b = PolicySet::empty().builder();
        b.put_rule(NotificationRule::new(u(1_000_000), "r"));
        let actions = ["login", "logout", "user_write"];
        let ips = ["10.0.0.1", "10.0.0.2"];
        let apps = ["authentik.core", "authentik.flows"];
        let models = ["authentik_core.user", "authentik_core.group"];
        for n in 0..64u128 {
            let mut p = EventMatcherPolicy::new(u(n + 1), format!("p{n}"));
            if n & 1 != 0 {
                p.action = Some(actions[(n as usize / 16) % 3].into());
            }
            if n & 2 != 0 {
                p.client_ip = Some(ips[(n as usize / 16) % 2].into());
            }
            if n & 4 != 0 {
                p.app = Some(apps[(n as usize / 32) % 2].into());
            }
            if n & 8 != 0 {
                p.model = Some(models[(n as usize / 16) % 2].into());
            }
            b.put_policy(p);
            let rule = u(2_000_000 + n % 7);
            b.put_rule(NotificationRule::new(rule, format!("rule{}", n % 7)));
            let mut bind = PolicyBinding::new(u(3_000_000 + n), u(n + 1), rule, n as i64);
            bind.negate = n % 5 == 0;
            b.put_binding(bind);
        }
        let set = b.build(1);
        for action in actions {
            for model in [
                json!(null),
                json!({"app": "authentik_core", "model_name": "user"}),
            ] {
                let ctx = if model.is_null() {
                    json!({})
                } else {
                    json!({"model": model})
                };
                fired(&set, &event(action, ctx));
            }
        }
    }
}
