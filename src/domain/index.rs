//! The index of held notifications: what seen-flag updates, `mark_all_seen`, DELETE and replay
//! safety work on (SPEC §2.6), bounded by event expiry and a maximum count.
//!
//! Every state carries a `version` (0 at creation, then the control offset + 1 of the command
//! that last changed it): a record read back applies only when its version is at least the
//! held one, so a late write of an older state (a zombie instance's) never wins in memory, and
//! the pk is queued for the control owner to re-emit the current state ([`NotificationIndex::take_stale`]).
//! Deleted notifications are remembered (until their event expires, or a horizon) so that
//! reprocessing their event does not bring them back.

use crate::events::Event;
use crate::notify::{derived, examine, Notification, Rendered};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A held notification and when it leaves the index.
#[derive(Debug, Clone)]
struct Held {
    /// The record, with `body` (and `created`) emptied when they are what the embedded event
    /// renders to: the body is about a third of a held notification's memory, and both are
    /// rendered again on the rare reads (PATCH, mark_all_seen, DELETE) instead of being kept.
    n: Notification,
    body_derived: bool,
    created_derived: bool,
    expires: Option<DateTime<Utc>>,
    /// Keyed hash of the record bytes this instance produced for this state (0: none), so
    /// reading its own record back from the topic is recognised without parsing it.
    produced: u64,
    /// `created` as an instant (microseconds since 1970; `i64::MIN` when it is not a time),
    /// so that lists order by time without rendering each record. Free: the allocation of an
    /// `Arc<Held>` stays in the same malloc size class with it (288 + 8 bytes → 304).
    created_at: i64,
}

impl Held {
    /// A copy of `n` to hold (`n` stays the caller's).
    fn new(
        n: &Notification,
        (body_derived, created_derived): (bool, bool),
        expires: Option<DateTime<Utc>>,
    ) -> Held {
        let keep = |derived: bool, s: &String| if derived { String::new() } else { s.clone() };
        let copy = Notification {
            pk: n.pk,
            severity: n.severity,
            body: keep(body_derived, &n.body),
            hyperlink: n.hyperlink.clone(),
            hyperlink_label: n.hyperlink_label.clone(),
            created: keep(created_derived, &n.created),
            event: n.event.clone(),
            seen: n.seen,
            user: n.user.clone(),
            group: n.group,
            rule: n.rule,
            version: n.version,
            // Known from the two fields of `Held`; `full` says it.
            rendered: None,
        };
        Held {
            n: copy,
            body_derived,
            created_derived,
            expires,
            produced: 0,
            created_at: micros(&n.created),
        }
    }

    /// `n` itself, held (a record read back: nothing of it is needed elsewhere, so its fields
    /// move instead of being copied and freed).
    fn owned(
        mut n: Notification,
        (body_derived, created_derived): (bool, bool),
        expires: Option<DateTime<Utc>>,
    ) -> Held {
        let created_at = micros(&n.created);
        if created_derived {
            n.created = String::new();
        }
        if body_derived {
            n.body = String::new();
        }
        n.rendered = None;
        Held {
            n,
            body_derived,
            created_derived,
            expires,
            produced: 0,
            created_at,
        }
    }

    fn derived(&self) -> (bool, bool) {
        (self.body_derived, self.created_derived)
    }

    /// `created` as the record has it (for ordering by age).
    fn full_created(&self) -> String {
        if self.created_derived {
            derived(&self.n.event)
                .and_then(|(_, c)| c)
                .unwrap_or_default()
        } else {
            self.n.created.clone()
        }
    }

    /// The whole record.
    fn full(&self) -> Notification {
        let mut n = self.n.clone();
        n.rendered = Some(self.derived());
        if self.body_derived || self.created_derived {
            let (body, created) = derived(&n.event).unwrap_or_default();
            if self.body_derived {
                n.body = body;
            }
            if self.created_derived {
                n.created = created.unwrap_or_default();
            }
        }
        n
    }
}

/// `created` as microseconds since 1970 (`i64::MIN` when it is not a time).
fn micros(created: &str) -> i64 {
    DateTime::parse_from_rfc3339(created)
        .map(|t| t.timestamp_micros())
        .unwrap_or(i64::MIN)
}

/// A held notification as a list sees it: the fields filters and orderings read most, without
/// rendering the record ([`Listed::full`] does, for the page shown).
#[derive(Debug, Clone)]
pub struct Listed(Arc<Held>);

impl Listed {
    pub fn pk(&self) -> Uuid {
        self.0.n.pk
    }

    pub fn seen(&self) -> bool {
        self.0.n.seen
    }

    pub fn severity(&self) -> crate::rules::Severity {
        self.0.n.severity
    }

    /// `created` in microseconds since 1970 (`i64::MIN` when it is not a time).
    pub fn created_at(&self) -> i64 {
        self.0.created_at
    }

    /// The whole record.
    pub fn full(&self) -> Notification {
        self.0.full()
    }
}

/// Why a pk is remembered after it left the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// Deleted (DELETE, or its tombstone read back): reprocessing its event emits nothing,
    /// and a later record of it on the topic is a zombie's, to be healed with a tombstone.
    Deleted,
    /// Evicted past `max_entries`: reprocessing its event emits nothing; a later record of
    /// it (another instance's update) is taken.
    Evicted,
}

/// Held notifications by pk.
///
/// Bounded two ways: an entry leaves once its event `expires` (authentik deletes the event and
/// with it the notification), and the oldest entries leave when there are more than
/// `max_entries`. A notification that left by DELETE or eviction is remembered as gone (16 bytes
/// of pk, a deadline and a tag) until its event expires or, for an event without `expires`,
/// for `gone_horizon`, so that reprocessing its event (a replay, a new group) emits nothing.
/// Size the notification topic's `delete.retention.ms` to the same horizon: its tombstones
/// are how a restarted instance learns of deletions.
#[derive(Debug)]
pub struct NotificationIndex {
    /// Sharded map: event processing inserts while control commands patch, without one
    /// global lock. Values are `Arc`s so that a map slot is 24 bytes whatever `Held` holds:
    /// the tables grow in powers of two, so slot size matters at a million entries.
    map: DashMap<Uuid, Arc<Held>>,
    /// Insertion order, for evicting the oldest past `max_entries`. A mutex is enough: it is
    /// taken only when a notification is created (a small share of events), never per event.
    order: Mutex<VecDeque<Uuid>>,
    max_entries: usize,
    /// While false (catching up at start), nothing is evicted by count: the records arrive in
    /// topic order, not by age; [`NotificationIndex::evict_by_age`] then evicts the oldest.
    evicting: std::sync::atomic::AtomicBool,
    /// Keys the hashes of produced records: random per process, so nobody can craft a record
    /// that passes for one this instance produced.
    hasher: std::hash::RandomState,
    /// Deleted and evicted pks with the unix time until which they are remembered. Sharded
    /// like `map`: the event path checks it for each new notification.
    gone: DashMap<Uuid, (i64, Gone)>,
    gone_horizon: chrono::Duration,
    /// pks whose latest record on the topic is older than the held state (or is a record of a
    /// deleted notification): the control owner re-emits their current state. Touched only
    /// when a stale record is read, which is rare.
    stale: Mutex<HashSet<Uuid>>,
}

/// How a patch of a held notification went.
#[derive(Debug, PartialEq)]
pub enum PatchOutcome {
    Updated(Arc<Notification>),
    NotFound,
}

/// How a record read back from the topic was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// It is the current state now.
    Applied,
    /// It is older than the held state (or the notification was deleted): ignored, and
    /// queued for healing.
    Stale,
}

/// The state to re-emit for a stale pk.
#[derive(Debug, Clone, PartialEq)]
pub enum Heal {
    Current(Arc<Notification>),
    Deleted(Uuid),
}

/// The writable fields of a notification PATCH: `None` = absent, `Some(None)` = null.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NotificationPatch {
    pub seen: Option<bool>,
    pub hyperlink: Option<Option<String>>,
    pub hyperlink_label: Option<Option<String>>,
    /// The version of the state the patch makes (the command's control offset + 1).
    pub version: u64,
}

/// The default for how long a deleted notification of an event without `expires` is
/// remembered (and the notification topic's `delete.retention.ms`): 7 days.
pub const DEFAULT_GONE_HORIZON_SECS: i64 = 7 * 24 * 3600;

impl NotificationIndex {
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            max_entries: max_entries.max(1),
            evicting: std::sync::atomic::AtomicBool::new(true),
            hasher: std::hash::RandomState::new(),
            gone: DashMap::new(),
            gone_horizon: chrono::Duration::seconds(DEFAULT_GONE_HORIZON_SECS),
            stale: Mutex::new(HashSet::new()),
        }
    }

    /// Sets how long deletions of events without `expires` are remembered.
    pub fn with_gone_horizon(mut self, secs: i64) -> Self {
        self.gone_horizon = chrono::Duration::seconds(secs.max(0));
        self
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many left pks are remembered.
    pub fn gone_len(&self) -> usize {
        self.gone.len()
    }

    pub fn get(&self, pk: &Uuid) -> Option<Arc<Notification>> {
        self.map.get(pk).map(|h| Arc::new(h.full()))
    }

    /// Every held notification of `user` (compared as [`Notification::user_key`]; `None`:
    /// everyone's), in no particular order, as lists filter and order them before rendering
    /// the page they show.
    pub fn listing(&self, user: Option<&str>) -> Vec<Listed> {
        self.map
            .iter()
            .filter(|h| user.is_none_or(|u| h.n.user_key().as_deref() == Some(u)))
            .map(|h| Listed(h.value().clone()))
            .collect()
    }

    /// The version of the held state of `pk` (`None`: not held).
    pub fn version_of(&self, pk: &Uuid) -> Option<u64> {
        self.map.get(pk).map(|h| h.n.version)
    }

    /// Whether `pk` was deleted (and is still remembered as such).
    pub fn is_deleted(&self, pk: &Uuid) -> bool {
        self.gone.get(pk).is_some_and(|g| g.1 == Gone::Deleted)
    }

    fn forget(&self, pk: Uuid, why: Gone, expires: Option<DateTime<Utc>>) {
        let until = expires.unwrap_or_else(|| Utc::now() + self.gone_horizon);
        // A deletion wins over an eviction already remembered.
        let why = match self.gone.get(&pk).map(|g| g.1) {
            Some(Gone::Deleted) => Gone::Deleted,
            _ => why,
        };
        self.gone.insert(pk, (until.timestamp(), why));
    }

    /// Holds a newly built notification unless one with its pk is held already (or was
    /// deleted or evicted); returns whether it was inserted (and so must be produced). This is
    /// what makes reprocessing an event idempotent: the held version, with its `seen` flag, wins.
    pub fn insert_new(&self, n: Notification) -> bool {
        let (derived, expires) = examine(&n);
        let held = Held::new(&n, derived, expires);
        self.insert_held(n, held).is_some()
    }

    /// [`insert_new`](Self::insert_new) on the event path: `n` comes from
    /// [`build`](crate::notify::build) for `event`, so its body is the event's rendering, and
    /// so is `created` when the event has one. Returns the notification when it was inserted.
    ///
    /// `record` is the value produced for it: when this instance reads it back from the topic,
    /// [`holds_record`](Self::holds_record) recognises it.
    pub fn insert_built(
        &self,
        n: Notification,
        event: &Event,
        record: &[u8],
    ) -> Option<Arc<Notification>> {
        let expires = event.expires.as_ref().map(|(_, t)| *t);
        let mut held = Held::new(&n, (true, event.created.is_some()), expires);
        held.produced = self.record_hash(record);
        self.insert_held(n, held)
    }

    fn record_hash(&self, record: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        // Never 0, which means "none".
        self.hasher.hash_one(record) | 1
    }

    /// Whether `record` is exactly what this instance produced for the notification's current
    /// state (its own output read back): then there is nothing to restore.
    pub fn holds_record(&self, pk: &Uuid, record: &[u8]) -> bool {
        self.map
            .get(pk)
            .is_some_and(|h| h.produced != 0 && h.produced == self.record_hash(record))
    }

    fn insert_held(&self, n: Notification, held: Held) -> Option<Arc<Notification>> {
        use dashmap::mapref::entry::Entry;
        let pk = n.pk;
        if self.gone.contains_key(&pk) {
            return None;
        }
        match self.map.entry(pk) {
            Entry::Occupied(_) => return None,
            Entry::Vacant(v) => {
                v.insert(Arc::new(held));
            }
        }
        self.note_inserted(pk);
        Some(Arc::new(n))
    }

    /// Takes a record read back from the notification topic: it becomes the held state unless
    /// the held one is newer (a higher `version`) or the notification was deleted; then it is
    /// ignored and queued for healing ([`take_stale`](Self::take_stale)). Its body is kept
    /// only if it is not what the event renders to (a record written by another renderer).
    pub fn restore(&self, n: Notification) -> Restored {
        self.restore_rendered(n, None)
    }

    /// [`restore`](Self::restore) of a record whose [`HEADER_RENDERED`](crate::notify::HEADER_RENDERED)
    /// header said which fields its event renders to and when the event expires (`rendered`):
    /// then the event is neither parsed nor rendered.
    pub fn restore_rendered(&self, n: Notification, rendered: Option<Rendered>) -> Restored {
        use dashmap::mapref::entry::Entry;
        let pk = n.pk;
        if self.is_deleted(&pk) {
            self.mark_stale(pk);
            return Restored::Stale;
        }
        let (derived, expires) = match rendered {
            Some(r) => ((r.body, r.created), r.expires),
            None => examine(&n),
        };
        let fresh = match self.map.entry(pk) {
            Entry::Occupied(mut o) => {
                if n.version < o.get().n.version {
                    drop(o);
                    self.mark_stale(pk);
                    return Restored::Stale;
                }
                o.insert(Arc::new(Held::owned(n, derived, expires)));
                false
            }
            Entry::Vacant(v) => {
                v.insert(Arc::new(Held::owned(n, derived, expires)));
                true
            }
        };
        // Evicted here, updated elsewhere: held again.
        self.gone.remove(&pk);
        self.unmark_stale(&pk);
        if fresh {
            self.note_inserted(pk);
        }
        Restored::Applied
    }

    /// Puts a state back as it was, whatever its version (undoing a patch that cannot be
    /// written).
    pub fn put_back(&self, n: Notification) {
        let (derived, expires) = examine(&n);
        self.map
            .insert(n.pk, Arc::new(Held::owned(n, derived, expires)));
    }

    fn mark_stale(&self, pk: Uuid) {
        lock(&self.stale).insert(pk);
    }

    fn unmark_stale(&self, pk: &Uuid) {
        let mut stale = lock(&self.stale);
        if !stale.is_empty() {
            stale.remove(pk);
        }
    }

    /// The pks whose topic state regressed, with what to emit for each (the held state, or a
    /// tombstone); the queue is emptied. The control owner emits them so that the compacted
    /// topic, and every reader, ends on the current state.
    pub fn take_stale(&self) -> Vec<Heal> {
        let pks: Vec<Uuid> = lock(&self.stale).drain().collect();
        let mut out: Vec<Heal> = pks
            .into_iter()
            .filter_map(|pk| {
                if self.is_deleted(&pk) {
                    Some(Heal::Deleted(pk))
                } else {
                    self.get(&pk).map(Heal::Current)
                }
            })
            .collect();
        out.sort_by_key(|h| match h {
            Heal::Current(n) => n.pk,
            Heal::Deleted(pk) => *pk,
        });
        out
    }

    /// Deletes a held notification (DELETE) and remembers it; returns what was held.
    pub fn remove(&self, pk: &Uuid) -> Option<Arc<Notification>> {
        let (_, held) = self.map.remove(pk)?;
        self.forget(*pk, Gone::Deleted, held.expires);
        Some(Arc::new(held.full()))
    }

    /// A tombstone read back from the topic: deleted, whatever was held.
    pub fn restore_tombstone(&self, pk: &Uuid) {
        let expires = self.map.remove(pk).and_then(|(_, h)| h.expires);
        self.forget(*pk, Gone::Deleted, expires);
        self.unmark_stale(pk);
    }

    /// Drops a held notification without remembering it (an output that was never written).
    pub fn discard(&self, pk: &Uuid) {
        self.map.remove(pk);
    }

    fn note_inserted(&self, pk: Uuid) {
        let mut order = lock(&self.order);
        order.push_back(pk);
        if self.evicting.load(std::sync::atomic::Ordering::Relaxed) {
            while self.map.len() > self.max_entries {
                let Some(oldest) = order.pop_front() else {
                    break;
                };
                if let Some((_, h)) = self.map.remove(&oldest) {
                    self.forget(oldest, Gone::Evicted, h.expires);
                }
            }
        }
        // Keys removed by DELETE or expiry stay queued until they reach the front; compact
        // when they make up most of the queue so it cannot grow without bound.
        if order.len() > 2 * self.max_entries.max(self.map.len()) + 1024 {
            order.retain(|k| self.map.contains_key(k));
        }
    }

    /// Stops evicting by count (while catching up at start, when records come in topic order).
    pub fn pause_eviction(&self) {
        self.evicting
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resumes evicting by count, first evicting the oldest by `created` beyond the maximum;
    /// returns how many left.
    pub fn evict_by_age(&self) -> usize {
        let mut order = lock(&self.order);
        let mut ages: Vec<(String, Uuid)> = self
            .map
            .iter()
            .map(|e| (e.value().full_created(), *e.key()))
            .collect();
        ages.sort();
        let excess = ages.len().saturating_sub(self.max_entries);
        for (_, pk) in &ages[..excess] {
            if let Some((_, h)) = self.map.remove(pk) {
                self.forget(*pk, Gone::Evicted, h.expires);
            }
        }
        *order = ages[excess..].iter().map(|(_, pk)| *pk).collect();
        self.evicting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        excess
    }

    /// Applies a PATCH; the caller emits the returned state.
    pub fn patch(&self, pk: &Uuid, patch: &NotificationPatch) -> PatchOutcome {
        let Some(mut held) = self.map.get_mut(pk) else {
            return PatchOutcome::NotFound;
        };
        let mut n = held.full();
        if let Some(seen) = patch.seen {
            n.seen = seen;
        }
        if let Some(h) = &patch.hyperlink {
            n.hyperlink = h.clone();
        }
        if let Some(l) = &patch.hyperlink_label {
            n.hyperlink_label = l.clone();
        }
        n.version = n.version.max(patch.version);
        *held = Arc::new(Held::new(&n, held.derived(), held.expires));
        PatchOutcome::Updated(Arc::new(n))
    }

    /// Marks every unseen notification of a user seen (at `version`); returns the changed
    /// ones, oldest first (by `created`, then pk), so the emitted records come in a stable
    /// order.
    /// With `created_until`, notifications created after it are left alone (the command's
    /// own time: one replayed later must not reach newer notifications).
    pub fn mark_all_seen(
        &self,
        user: &str,
        version: u64,
        created_until: Option<DateTime<Utc>>,
    ) -> Vec<Arc<Notification>> {
        let mut changed = Vec::new();
        for mut entry in self.map.iter_mut() {
            let held = entry.value_mut();
            if held.n.seen || held.n.user_key().as_deref() != Some(user) {
                continue;
            }
            let mut n = held.full();
            let newer = created_until.is_some_and(|until| {
                DateTime::parse_from_rfc3339(&n.created)
                    .is_ok_and(|c| c.with_timezone(&Utc) > until)
            });
            if newer {
                continue;
            }
            n.seen = true;
            n.version = n.version.max(version);
            *held = Arc::new(Held::new(&n, held.derived(), held.expires));
            changed.push(Arc::new(n));
        }
        changed.sort_by(|a, b| a.created.cmp(&b.created).then(a.pk.cmp(&b.pk)));
        changed
    }

    /// Removes notifications whose event has expired, and forgets deletions past their
    /// deadline; returns how many notifications left.
    pub fn sweep_expired(&self, now: DateTime<Utc>) -> usize {
        let before = self.map.len();
        self.map.retain(|_, h| h.expires.is_none_or(|e| e > now));
        let t = now.timestamp();
        self.gone.retain(|_, (until, _)| *until > t);
        before - self.map.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these mutexes stays valid if a holder panicked; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::format_ts;
    use crate::notify::{build, render, NotificationUser};
    use crate::rules::{NotificationRule, Severity};
    use serde_json::value::RawValue;
    use serde_json::{json, Value};

    fn event(v: Value) -> Event {
        Event::parse(v.to_string().as_bytes()).expect("valid")
    }

    fn login(ctx: Value) -> Event {
        event(json!({
            "pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01", "action": "login_failed",
            "app": "authentik.events.signals", "user": {"pk": 7, "username": "jane"},
            "context": ctx, "client_ip": "10.0.0.1", "created": "2024-09-13T14:05:42.170Z",
            "expires": "2030-01-01T00:00:00Z"
        }))
    }

    fn held(pk: u128, user: i64, created: &str, expires: &str) -> Notification {
        let ev =
            RawValue::from_string(json!({"pk": "x", "expires": expires}).to_string()).expect("raw");
        Notification {
            pk: Uuid::from_u128(pk),
            severity: Severity::Notice,
            body: "b".into(),
            hyperlink: None,
            hyperlink_label: None,
            created: created.into(),
            event: Arc::from(ev),
            seen: false,
            user: Some(NotificationUser { pk: json!(user) }),
            group: None,
            rule: Uuid::from_u128(1),
            version: 0,
            rendered: None,
        }
    }

    #[test]
    fn held_bodies_are_rendered_again_exactly_and_foreign_ones_kept() {
        let idx = NotificationIndex::new(100);
        let e = login(json!({"username": "jane", "n": 1.5, "q": "it's"}));
        let rule = NotificationRule {
            destination_event_user: true,
            ..NotificationRule::new(Uuid::from_u128(5), "r")
        };
        let r = render(&e, Utc::now());
        let built = build(&rule, &e, &r).pop().expect("one notification");
        let pk = built.pk;
        assert!(idx
            .insert_built(built.clone(), &e, &built.to_bytes())
            .is_some());
        assert!(idx.holds_record(&pk, &built.to_bytes()));
        assert!(!idx.holds_record(&pk, b"{}"));
        // Stored without its body and created, read back with them.
        assert!(idx
            .map
            .get(&pk)
            .is_some_and(|h| h.body_derived && h.n.body.is_empty() && h.n.created.is_empty()));
        assert_eq!(idx.get(&pk).as_deref(), Some(&built));
        let PatchOutcome::Updated(after) = idx.patch(
            &pk,
            &NotificationPatch {
                seen: Some(true),
                ..Default::default()
            },
        ) else {
            panic!("held")
        };
        assert_eq!(after.body, built.body);
        assert_eq!(idx.mark_all_seen("7", 1, None).len(), 0, "already seen");

        // A record whose body is not what its event renders to keeps its own body.
        let mut foreign = built.clone();
        foreign.pk = Uuid::from_u128(77);
        foreign.body = "written by someone else".into();
        idx.restore(foreign.clone());
        assert!(idx
            .map
            .get(&foreign.pk)
            .is_some_and(|h| !h.body_derived && h.created_derived));
        assert_eq!(idx.get(&foreign.pk).as_deref(), Some(&foreign));
        let mut same = built.clone();
        same.pk = Uuid::from_u128(78);
        idx.restore(same.clone());
        assert!(idx.map.get(&same.pk).is_some_and(|h| h.body_derived));
        assert_eq!(idx.remove(&same.pk).as_deref(), Some(&same));

        // An event without `created`: the notification's comes from the fallback and is kept.
        let undated = event(json!({
            "pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a02", "action": "login_failed",
            "app": "authentik.events.signals", "user": {"pk": 7}, "context": {}
        }));
        let fallback = DateTime::parse_from_rfc3339("2024-05-06T07:08:09Z")
            .expect("valid")
            .with_timezone(&Utc);
        let r = render(&undated, fallback);
        let built = build(&rule, &undated, &r).pop().expect("one notification");
        assert!(idx.insert_built(built.clone(), &undated, b"{}").is_some());
        assert!(idx.map.get(&built.pk).is_some_and(|h| !h.created_derived));
        assert_eq!(
            idx.get(&built.pk).map(|n| n.created.clone()),
            Some(format_ts(&fallback))
        );
    }

    /// A record restored with its rendered header is held exactly as one restored by
    /// rendering its event to compare (the header only saves the work).
    #[test]
    fn restoring_with_the_rendered_header_holds_what_comparing_holds() {
        let rule = NotificationRule {
            destination_event_user: true,
            ..NotificationRule::new(Uuid::from_u128(5), "r")
        };
        let contexts = [
            json!({}),
            json!({"message": "hi", "hyperlink": "https://x"}),
            json!({"username": "jane", "n": 1.5, "q": "it's", "u": "é"}),
        ];
        for ctx in contexts {
            let e = login(ctx);
            let built = build(&rule, &e, &render(&e, Utc::now()))
                .pop()
                .expect("one");
            let mut foreign = built.clone();
            foreign.pk = Uuid::from_u128(99);
            foreign.body = "written by another tool".into();
            foreign.rendered = Some((false, true));
            for n in [built, foreign] {
                let (compared, trusted) = (NotificationIndex::new(10), NotificationIndex::new(10));
                let mut read = n.clone();
                read.rendered = None; // what a record read from the topic carries
                compared.restore(read.clone());
                trusted.restore_rendered(read, Rendered::of(&n));
                let (a, b) = (
                    compared.map.get(&n.pk).expect("held").clone(),
                    trusted.map.get(&n.pk).expect("held").clone(),
                );
                assert_eq!(a.derived(), b.derived());
                assert_eq!(a.expires, b.expires);
                assert_eq!(a.n.body, b.n.body);
                assert_eq!(compared.get(&n.pk), trusted.get(&n.pk));
                assert_eq!(trusted.get(&n.pk).as_deref(), Some(&n));
            }
        }
    }

    #[test]
    fn reinsert_never_resets_seen() {
        let idx = NotificationIndex::new(100);
        let n = held(1, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
        assert!(idx.insert_new(n.clone()));
        let patch = NotificationPatch {
            seen: Some(true),
            ..Default::default()
        };
        assert!(matches!(idx.patch(&n.pk, &patch), PatchOutcome::Updated(ref x) if x.seen));
        assert!(
            !idx.insert_new(n.clone()),
            "already held: not produced again"
        );
        assert!(
            idx.get(&n.pk).expect("held").seen,
            "seen survives reprocessing"
        );
    }

    #[test]
    fn patch_sets_and_clears_fields_and_404s_unknown() {
        let idx = NotificationIndex::new(100);
        let n = held(1, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
        idx.insert_new(n.clone());
        let set = NotificationPatch {
            hyperlink: Some(Some("https://a".into())),
            ..Default::default()
        };
        let PatchOutcome::Updated(after) = idx.patch(&n.pk, &set) else {
            panic!("held")
        };
        assert_eq!(after.hyperlink.as_deref(), Some("https://a"));
        assert!(!after.seen, "absent seen keeps its value");
        let clear = NotificationPatch {
            hyperlink: Some(None),
            ..Default::default()
        };
        let PatchOutcome::Updated(after) = idx.patch(&n.pk, &clear) else {
            panic!("held")
        };
        assert_eq!(after.hyperlink, None);
        assert_eq!(
            idx.patch(&Uuid::from_u128(9), &clear),
            PatchOutcome::NotFound
        );
    }

    #[test]
    fn mark_all_seen_changes_only_that_users_unseen_ones() {
        let idx = NotificationIndex::new(100);
        idx.insert_new(held(1, 7, "2024-01-02T00:00:00Z", "2030-01-01T00:00:00Z"));
        idx.insert_new(held(2, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        idx.insert_new(held(3, 8, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        let changed = idx.mark_all_seen("7", 1, None);
        assert_eq!(
            changed.iter().map(|n| n.pk.as_u128()).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert!(
            idx.mark_all_seen("7", 1, None).is_empty(),
            "nothing left to change"
        );
        assert!(!idx.get(&Uuid::from_u128(3)).expect("held").seen);
    }

    #[test]
    fn bounded_by_expiry_and_count() {
        let idx = NotificationIndex::new(3);
        idx.insert_new(held(1, 7, "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"));
        for pk in 2..=4 {
            idx.insert_new(held(pk, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        }
        assert_eq!(idx.len(), 3);
        assert!(
            idx.get(&Uuid::from_u128(1)).is_none(),
            "oldest evicted past the maximum"
        );
        let now = DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z")
            .expect("ts")
            .with_timezone(&Utc);
        assert_eq!(idx.sweep_expired(now), 3);
        assert!(idx.is_empty());
    }

    #[test]
    fn restore_replaces_with_the_latest_state() {
        let idx = NotificationIndex::new(10);
        let mut n = held(1, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
        idx.restore(n.clone());
        n.seen = true;
        idx.restore(n.clone());
        assert!(idx.get(&n.pk).expect("held").seen);
        assert_eq!(idx.len(), 1);
        assert!(idx.remove(&n.pk).is_some());
        assert!(idx.get(&n.pk).is_none());
    }

    /// Issue 9 item 2b: an older state read back never replaces a newer held one, and is
    /// queued for healing with the current state.
    #[test]
    fn older_versions_never_win_and_are_queued_for_healing() {
        let idx = NotificationIndex::new(10);
        let n = held(1, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
        assert_eq!(idx.restore(n.clone()), Restored::Applied);
        let mut seen = n.clone();
        seen.seen = true;
        seen.version = 18;
        assert_eq!(idx.restore(seen.clone()), Restored::Applied);
        // A zombie's late creation record (version 0, unseen).
        assert_eq!(idx.restore(n.clone()), Restored::Stale);
        assert!(idx.get(&n.pk).expect("held").seen, "the newer state stays");
        let heal = idx.take_stale();
        assert_eq!(heal.len(), 1);
        assert!(matches!(&heal[0], Heal::Current(c) if c.seen && c.version == 18));
        assert!(idx.take_stale().is_empty(), "taken once");
        // The same version again (a second owner's duplicate) is applied; so is a newer one,
        // which also clears a pending heal.
        assert_eq!(idx.restore(n.clone()), Restored::Stale);
        assert_eq!(idx.restore(seen.clone()), Restored::Applied);
        assert!(
            idx.take_stale().is_empty(),
            "the current state reached the topic"
        );
    }

    /// Issue 9 item 3: a deleted notification stays deleted: reprocessing its event inserts
    /// nothing, a record of it read back later is stale (healed with a tombstone), and the
    /// memory is bounded by the event's expiry.
    #[test]
    fn deleted_stays_deleted() {
        let idx = NotificationIndex::new(10);
        let e = login(json!({}));
        let rule = NotificationRule {
            destination_event_user: true,
            ..NotificationRule::new(Uuid::from_u128(5), "r")
        };
        let built = build(&rule, &e, &render(&e, Utc::now()))
            .pop()
            .expect("one");
        let pk = built.pk;
        assert!(idx.insert_built(built.clone(), &e, b"x").is_some());
        assert!(idx.remove(&pk).is_some());
        assert!(idx.is_deleted(&pk));
        assert!(
            idx.insert_built(built.clone(), &e, b"x").is_none(),
            "replay brings nothing back"
        );
        assert_eq!(idx.restore(built.clone()), Restored::Stale);
        assert_eq!(idx.take_stale(), vec![Heal::Deleted(pk)]);
        // A tombstone read back at start marks it the same way.
        let idx2 = NotificationIndex::new(10);
        idx2.restore(built.clone());
        idx2.restore_tombstone(&pk);
        assert!(idx2.insert_built(built, &e, b"x").is_none());
        // Forgotten once the event has expired (it expires in 2030).
        let later = DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z")
            .expect("ts")
            .with_timezone(&Utc);
        idx.sweep_expired(later);
        assert_eq!(idx.gone_len(), 0);
    }

    /// Issue 9 item 3: at start the index is filled in topic order; the oldest by `created`
    /// leave, not the first read.
    #[test]
    fn startup_eviction_is_by_age() {
        let idx = NotificationIndex::new(2);
        idx.pause_eviction();
        idx.restore(held(1, 7, "2024-03-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        idx.restore(held(2, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        idx.restore(held(3, 7, "2024-02-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        assert_eq!(idx.len(), 3, "nothing evicted while catching up");
        assert_eq!(idx.evict_by_age(), 1);
        assert!(idx.get(&Uuid::from_u128(2)).is_none(), "the oldest left");
        assert!(
            idx.get(&Uuid::from_u128(1)).is_some(),
            "the first read stayed"
        );
        idx.insert_new(held(4, 7, "2024-04-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        assert_eq!(idx.len(), 2);
        assert!(
            idx.get(&Uuid::from_u128(3)).is_none(),
            "then by insertion order again"
        );
        assert!(
            !idx.insert_new(held(3, 7, "2024-02-01T00:00:00Z", "2030-01-01T00:00:00Z")),
            "an evicted pk is not re-created"
        );
    }

    /// Issue 9 item 7: a `mark_all_seen` replayed long after it was sent does not reach
    /// notifications created after it.
    #[test]
    fn mark_all_seen_stops_at_the_commands_time() {
        let idx = NotificationIndex::new(10);
        idx.insert_new(held(1, 7, "2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        idx.insert_new(held(2, 7, "2024-03-01T00:00:00Z", "2030-01-01T00:00:00Z"));
        let sent = DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z")
            .expect("ts")
            .with_timezone(&Utc);
        let changed = idx.mark_all_seen("7", 5, Some(sent));
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].pk, Uuid::from_u128(1));
        assert!(!idx.get(&Uuid::from_u128(2)).expect("held").seen);
    }
}
