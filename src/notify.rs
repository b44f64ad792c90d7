//! Notifications: building them from a fired rule (SPEC §2.5), their deterministic pks
//! (SPEC §2.2), and the index of held notifications that seen-flag updates, `mark_all_seen`,
//! DELETE and replay safety work on (SPEC §2.6).

use crate::events::{format_ts, user_key, Event, UserRef};
use crate::pyrepr;
use crate::rules::{NotificationRule, Severity};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Namespace of notification pks: `uuid5(NAMESPACE, "{event}/{rule}/{destination}")`.
/// Fixed forever: changing it would give replayed events new pks.
pub const NOTIFICATION_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0c55_7a0e_4f3b_9b1e_5c2a_8e4d_7f01);

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    User(UserRef),
    Group(Uuid),
}

impl Destination {
    fn key(&self) -> String {
        match self {
            Destination::User(u) => format!("user:{}", u.key),
            Destination::Group(g) => format!("group:{g}"),
        }
    }
}

/// The deterministic pk of the notification `rule` sends to `dest` for `event`.
///
/// ```
/// use eventmatchd::notify::{notification_pk, Destination};
/// use uuid::Uuid;
/// let (event, rule) = (Uuid::from_u128(1), Uuid::from_u128(2));
/// let group = Destination::Group(Uuid::from_u128(3));
/// assert_eq!(notification_pk(event, rule, &group), notification_pk(event, rule, &group));
/// assert_eq!(notification_pk(event, rule, &group).get_version_num(), 5);
/// ```
pub fn notification_pk(event: Uuid, rule: Uuid, dest: &Destination) -> Uuid {
    let name = format!("{event}/{rule}/{}", dest.key());
    Uuid::new_v5(&NOTIFICATION_NAMESPACE, name.as_bytes())
}

/// The destinations of a fired rule: the event's user (when the rule asks for it and the
/// event has a user pk), then the rule's group (when set).
pub fn destinations(rule: &NotificationRule, event: &Event) -> Vec<Destination> {
    let mut out = Vec::with_capacity(2);
    if rule.destination_event_user {
        if let Some(u) = event.user_ref() {
            out.push(Destination::User(u));
        }
    }
    if let Some(g) = rule.destination_group {
        out.push(Destination::Group(g));
    }
    out
}

/// A notification record (the seed's 200 response plus `user`, `group`, `rule`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub pk: Uuid,
    pub severity: Severity,
    pub body: String,
    pub hyperlink: Option<String>,
    pub hyperlink_label: Option<String>,
    pub created: String,
    /// The event in its record shape; shared by all notifications of one event.
    pub event: Arc<RawValue>,
    pub seen: bool,
    pub user: Option<NotificationUser>,
    pub group: Option<Uuid>,
    pub rule: Uuid,
}

// `RawValue` has no `PartialEq`; two records are equal when their JSON text is.
impl PartialEq for Notification {
    fn eq(&self, other: &Self) -> bool {
        self.pk == other.pk
            && self.severity == other.severity
            && self.body == other.body
            && self.hyperlink == other.hyperlink
            && self.hyperlink_label == other.hyperlink_label
            && self.created == other.created
            && self.event.get() == other.event.get()
            && self.seen == other.seen
            && self.user == other.user
            && self.group == other.group
            && self.rule == other.rule
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationUser {
    pub pk: Value,
}

impl Notification {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The text `mark_all_seen` compares users by.
    pub fn user_key(&self) -> Option<String> {
        self.user.as_ref().and_then(|u| user_key(&u.pk))
    }
}

/// The parts of a notification that depend only on the event, computed once per event.
#[derive(Debug, Clone)]
pub struct EventRendering {
    /// `None` when `context.message` is JSON null: authentik's `Notification.body` cannot be
    /// null, so saving fails and no notification exists (see [`build`]).
    pub body: Option<String>,
    pub hyperlink: Option<String>,
    pub hyperlink_label: Option<String>,
    pub created: String,
    pub event: Arc<RawValue>,
}

/// authentik's `Event.summary`: `context["message"]` when present, else
/// `f"{action}: {context}"`. `hyperlink`/`hyperlink_label` come from the context, turned into
/// text with Python's `str()` as authentik's TextFields store them (null stays null). `created` is the event's (so a replay renders the same record), or
/// `fallback_created` for an event without one.
pub fn render(event: &Event, fallback_created: DateTime<Utc>) -> EventRendering {
    let created = format_ts(
        &event
            .created
            .as_ref()
            .map(|(_, t)| *t)
            .unwrap_or(fallback_created),
    );
    let (body, hyperlink, hyperlink_label) = body_and_links(event);
    EventRendering {
        body,
        hyperlink,
        hyperlink_label,
        created,
        event: event.to_raw(),
    }
}

/// The body, hyperlink and hyperlink label the event's context gives.
fn body_and_links(event: &Event) -> (Option<String>, Option<String>, Option<String>) {
    let ctx_text = event.context.get();
    // The common context names none of the keys rendering reads: its body is the action and
    // the repr of the context, written straight from the JSON text. Any of those keys (or a
    // `\u` escape, which could spell one) takes the decoding path.
    let plain = !(ctx_text.contains("\"message\"")
        || ctx_text.contains("\"hyperlink")
        || ctx_text.contains("\\u"));
    if plain {
        let mut body = String::with_capacity(event.action.len() + 2 + ctx_text.len());
        body.push_str(&event.action);
        body.push_str(": ");
        if pyrepr::write_repr_json(&mut body, ctx_text) {
            return (Some(body), None, None);
        }
    }
    let ctx = event.context_value();
    let body = match ctx.get("message") {
        Some(Value::Null) => None,
        Some(m) => Some(pyrepr::python_str(m)),
        None => {
            let mut s = String::with_capacity(event.action.len() + 2 + ctx_text.len());
            s.push_str(&event.action);
            s.push_str(": ");
            pyrepr::write_repr(&mut s, &Value::Object(ctx.clone()));
            Some(s)
        }
    };
    let text = |k: &str| match ctx.get(k) {
        None | Some(Value::Null) => None,
        Some(v) => Some(pyrepr::python_str(v)),
    };
    (body, text("hyperlink"), text("hyperlink_label"))
}

/// What a notification's embedded event renders to: its body, and its `created` when the
/// event has one (`None` if the event does not parse).
fn derived(event: &RawValue) -> Option<(String, Option<String>)> {
    Event::parse(event.get().as_bytes())
        .ok()
        .map(|e| rendered_text(&e))
}

/// The body of an event's notifications, and their `created` when the event has one.
fn rendered_text(e: &Event) -> (String, Option<String>) {
    let created = e.created.as_ref().map(|(_, t)| format_ts(t));
    (body_and_links(e).0.unwrap_or_default(), created)
}

/// For a notification read from outside (the topic, a test): which of its fields are what its
/// event renders to (body, created), and when the event expires. One parse of the event.
fn examine(n: &Notification) -> ((bool, bool), Option<DateTime<Utc>>) {
    match Event::parse(n.event.get().as_bytes()) {
        Ok(e) => {
            let (body, created) = rendered_text(&e);
            let derived = (
                body == n.body,
                created.as_deref() == Some(n.created.as_str()),
            );
            (derived, e.expires.as_ref().map(|(_, t)| *t))
        }
        Err(_) => ((false, false), event_expires(n)),
    }
}

/// The notifications one fired rule sends for an event: none when the body is null.
pub fn build(rule: &NotificationRule, event: &Event, r: &EventRendering) -> Vec<Notification> {
    let Some(body) = &r.body else {
        return Vec::new();
    };
    destinations(rule, event)
        .into_iter()
        .map(|dest| {
            let pk = notification_pk(event.pk, rule.pk, &dest);
            let (user, group) = match dest {
                Destination::User(u) => (Some(NotificationUser { pk: u.pk }), None),
                Destination::Group(g) => (None, Some(g)),
            };
            Notification {
                pk,
                severity: rule.severity,
                body: body.clone(),
                hyperlink: r.hyperlink.clone(),
                hyperlink_label: r.hyperlink_label.clone(),
                created: r.created.clone(),
                event: r.event.clone(),
                seen: false,
                user,
                group,
                rule: rule.pk,
            }
        })
        .collect()
}

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
}

impl Held {
    fn new(
        n: &Notification,
        (body_derived, created_derived): (bool, bool),
        expires: Option<DateTime<Utc>>,
    ) -> Held {
        let keep = |derived: bool, s: &String| if derived { String::new() } else { s.clone() };
        Held {
            n: Notification {
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
            },
            body_derived,
            created_derived,
            expires,
            produced: 0,
        }
    }

    fn derived(&self) -> (bool, bool) {
        (self.body_derived, self.created_derived)
    }

    /// The whole record.
    fn full(&self) -> Notification {
        let mut n = self.n.clone();
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

/// Read the event's `expires` out of a notification whose event is not a valid Event.
fn event_expires(n: &Notification) -> Option<DateTime<Utc>> {
    #[derive(Deserialize)]
    struct Probe {
        expires: Option<String>,
    }
    serde_json::from_str::<Probe>(n.event.get())
        .ok()
        .and_then(|p| p.expires)
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Held notifications by pk.
///
/// Bounded two ways: an entry leaves once its event `expires` (authentik deletes the event and
/// with it the notification), and the oldest entries leave when there are more than
/// `max_entries`. A notification that has left can be produced again, unseen, if its event is
/// reprocessed; size `max_entries` above what a replay window can reach.
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
    /// Keys the hashes of produced records: random per process, so nobody can craft a record
    /// that passes for one this instance produced.
    hasher: std::hash::RandomState,
}

/// How a patch of a held notification went.
#[derive(Debug, PartialEq)]
pub enum PatchOutcome {
    Updated(Arc<Notification>),
    NotFound,
}

/// The writable fields of a notification PATCH: `None` = absent, `Some(None)` = null.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NotificationPatch {
    pub seen: Option<bool>,
    pub hyperlink: Option<Option<String>>,
    pub hyperlink_label: Option<Option<String>>,
}

impl NotificationIndex {
    pub fn new(max_entries: usize) -> Self {
        Self {
            map: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            max_entries: max_entries.max(1),
            hasher: std::hash::RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, pk: &Uuid) -> Option<Arc<Notification>> {
        self.map.get(pk).map(|h| Arc::new(h.full()))
    }

    /// Holds a newly built notification unless one with its pk is held already; returns
    /// whether it was inserted (and so must be produced). This is what makes reprocessing an
    /// event idempotent: the held version, with its `seen` flag, wins.
    pub fn insert_new(&self, n: Notification) -> bool {
        let (derived, expires) = examine(&n);
        let held = Held::new(&n, derived, expires);
        self.insert_held(n, held).is_some()
    }

    /// [`insert_new`](Self::insert_new) on the event path: `n` comes from [`build`] for
    /// `event`, so its body is the event's rendering, and so is `created` when the event has
    /// one. Returns the notification when it was inserted.
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
        match self.map.entry(pk) {
            Entry::Occupied(_) => return None,
            Entry::Vacant(v) => {
                v.insert(Arc::new(held));
            }
        }
        self.note_inserted(pk);
        Some(Arc::new(n))
    }

    /// Holds a record read back from the notification topic at start: the latest record for a
    /// key is its current state, so it replaces what is held. Its body is kept only if it is
    /// not what the event renders to (a record written by another renderer).
    pub fn restore(&self, n: Notification) {
        let pk = n.pk;
        let (derived, expires) = examine(&n);
        let fresh = self
            .map
            .insert(pk, Arc::new(Held::new(&n, derived, expires)))
            .is_none();
        if fresh {
            self.note_inserted(pk);
        }
    }

    /// Drops a held notification (DELETE, or a tombstone read back at start).
    pub fn remove(&self, pk: &Uuid) -> Option<Arc<Notification>> {
        self.map.remove(pk).map(|(_, h)| Arc::new(h.full()))
    }

    fn note_inserted(&self, pk: Uuid) {
        let mut order = match self.order.lock() {
            Ok(g) => g,
            // A panic elsewhere while holding this lock leaves a valid queue; keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        order.push_back(pk);
        while self.map.len() > self.max_entries {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            self.map.remove(&oldest);
        }
        // Keys removed by DELETE or expiry stay queued until they reach the front; compact
        // when they make up most of the queue so it cannot grow without bound.
        if order.len() > 2 * self.max_entries.max(self.map.len()) + 1024 {
            order.retain(|k| self.map.contains_key(k));
        }
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
        *held = Arc::new(Held::new(&n, held.derived(), held.expires));
        PatchOutcome::Updated(Arc::new(n))
    }

    /// Marks every unseen notification of a user seen; returns the changed ones, oldest
    /// first (by `created`, then pk), so the emitted records come in a stable order.
    pub fn mark_all_seen(&self, user: &str) -> Vec<Arc<Notification>> {
        let mut changed = Vec::new();
        for mut entry in self.map.iter_mut() {
            let held = entry.value_mut();
            if held.n.seen || held.n.user_key().as_deref() != Some(user) {
                continue;
            }
            let mut n = held.full();
            n.seen = true;
            *held = Arc::new(Held::new(&n, held.derived(), held.expires));
            changed.push(Arc::new(n));
        }
        changed.sort_by(|a, b| a.created.cmp(&b.created).then(a.pk.cmp(&b.pk)));
        changed
    }

    /// Removes notifications whose event has expired; returns how many left.
    pub fn sweep_expired(&self, now: DateTime<Utc>) -> usize {
        let before = self.map.len();
        self.map.retain(|_, h| h.expires.is_none_or(|e| e > now));
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn rule(user: bool, group: Option<Uuid>) -> NotificationRule {
        let mut r = NotificationRule::new(Uuid::from_u128(10), "r");
        r.destination_event_user = user;
        r.destination_group = group;
        r.severity = Severity::Alert;
        r
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn body_is_message_or_action_and_python_repr_of_context() {
        let e = login(json!({"message": "Invalid credentials", "x": 1}));
        assert_eq!(
            render(&e, t0()).body.as_deref(),
            Some("Invalid credentials")
        );
        let e = login(
            json!({"username": "jane", "ok": false, "n": null, "f": 1e20, "g": 100.0, "s": "it's"}),
        );
        assert_eq!(
            render(&e, t0()).body.as_deref().unwrap_or_default(),
            "login_failed: {'username': 'jane', 'ok': False, 'n': None, 'f': 1e+20, 'g': 100.0, 's': \"it's\"}"
        );
        let e = login(json!({"message": 42}));
        assert_eq!(
            render(&e, t0()).body.as_deref(),
            Some("42"),
            "str() of a non-string message"
        );
    }

    /// authentik `events/tasks.py` `notification_transport`: `Notification(body=event.summary,
    /// ...)`; `Notification.body` is a non-null TextField, so a null message saves nothing.
    #[test]
    fn null_message_makes_no_notification() {
        let e = login(json!({"message": null}));
        let r = render(&e, t0());
        assert_eq!(r.body, None);
        assert!(build(&rule(true, Some(Uuid::from_u128(9))), &e, &r).is_empty());
    }

    /// authentik `Event.hyperlink` is `context.get("hyperlink")`, stored in a TextField: a
    /// non-string value is kept as Python's `str()` of it.
    #[test]
    fn non_string_hyperlinks_are_python_str() {
        let e = login(json!({"hyperlink": 5, "hyperlink_label": {"a": true}}));
        let r = render(&e, t0());
        assert_eq!(r.hyperlink.as_deref(), Some("5"));
        assert_eq!(r.hyperlink_label.as_deref(), Some("{'a': True}"));
        let e = login(json!({"hyperlink": null}));
        assert_eq!(render(&e, t0()).hyperlink, None);
    }

    #[test]
    fn hyperlink_fields_come_from_the_context() {
        let e = login(json!({"hyperlink": "https://x/", "hyperlink_label": "Open"}));
        let r = render(&e, t0());
        assert_eq!(r.hyperlink.as_deref(), Some("https://x/"));
        assert_eq!(r.hyperlink_label.as_deref(), Some("Open"));
        let r = render(&login(json!({})), t0());
        assert_eq!((r.hyperlink, r.hyperlink_label), (None, None));
    }

    #[test]
    fn created_is_the_events_or_the_fallback() {
        let r = render(&login(json!({})), t0());
        assert_eq!(r.created, "2024-09-13T14:05:42.170Z");
        let bare =
            event(json!({"pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a09", "action": "a", "app": "b"}));
        assert_eq!(render(&bare, t0()).created, "2000-01-01T00:00:00Z");
    }

    #[test]
    fn one_notification_per_destination() {
        let g = Uuid::from_u128(77);
        let e = login(json!({}));
        let r = render(&e, t0());
        let both = build(&rule(true, Some(g)), &e, &r);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].user, Some(NotificationUser { pk: json!(7) }));
        assert_eq!(both[0].group, None);
        assert_eq!(both[1].user, None);
        assert_eq!(both[1].group, Some(g));
        assert_ne!(both[0].pk, both[1].pk);
        assert!(both
            .iter()
            .all(|n| n.severity == Severity::Alert && !n.seen));
        assert!(
            build(&rule(false, None), &e, &r).is_empty(),
            "no destination, nothing sent"
        );
    }

    #[test]
    fn event_user_without_pk_gets_nothing() {
        let e = event(
            json!({"pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01", "action": "login",
                             "app": "a", "user": {"username": "AnonymousUser"}}),
        );
        let r = render(&e, t0());
        assert!(build(&rule(true, None), &e, &r).is_empty());
        assert_eq!(
            build(&rule(true, Some(Uuid::from_u128(1))), &e, &r).len(),
            1
        );
    }

    #[test]
    fn pks_are_deterministic_uuid5() {
        let e = login(json!({}));
        let a = build(&rule(true, None), &e, &render(&e, t0()));
        let b = build(&rule(true, None), &e, &render(&e, t0()));
        assert_eq!(a[0].pk, b[0].pk);
        assert_eq!(a[0].pk.get_version_num(), 5);
        let other_rule = {
            let mut r = rule(true, None);
            r.pk = Uuid::from_u128(11);
            r
        };
        assert_ne!(build(&other_rule, &e, &render(&e, t0()))[0].pk, a[0].pk);
        // User 5 and "5" are one destination.
        let d1 = Destination::User(UserRef::from_pk(&json!(5)).expect("pk"));
        let d2 = Destination::User(UserRef::from_pk(&json!("5")).expect("pk"));
        assert_eq!(
            notification_pk(e.pk, a[0].rule, &d1),
            notification_pk(e.pk, a[0].rule, &d2)
        );
    }

    #[test]
    fn record_has_the_seed_shape_plus_provenance() {
        let e = login(json!({"k": "v"}));
        let n = &build(&rule(true, None), &e, &render(&e, t0()))[0];
        let v: Value = serde_json::from_slice(&n.to_bytes()).expect("json");
        let keys: Vec<&str> = v
            .as_object()
            .expect("obj")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "pk",
                "severity",
                "body",
                "hyperlink",
                "hyperlink_label",
                "created",
                "event",
                "seen",
                "user",
                "group",
                "rule"
            ]
        );
        assert_eq!(
            v["event"]["pk"],
            json!("0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01")
        );
        assert_eq!(v["event"]["context"], json!({"k": "v"}));
        let back: Notification = serde_json::from_value(v).expect("round trip");
        assert_eq!(&back, n);
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
        assert_eq!(idx.mark_all_seen("7").len(), 0, "already seen");

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
        let changed = idx.mark_all_seen("7");
        assert_eq!(
            changed.iter().map(|n| n.pk.as_u128()).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert!(idx.mark_all_seen("7").is_empty(), "nothing left to change");
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
}
