//! Notifications: building them from a fired rule (SPEC §2.5), their deterministic pks
//! (SPEC §2.2), and what their embedded event renders to. The held notifications are in
//! [`crate::index`].

use crate::events::{format_ts, user_key, Event, UserRef};
use crate::pyrepr;
use crate::rules::{NotificationRule, Severity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;
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
    /// Orders the states of one notification: 0 when created, then the control offset + 1
    /// of the command that last changed it. Readers never replace a held state by one with a
    /// lower version (see [`crate::index`]). Absent in records written before it existed.
    #[serde(default)]
    pub version: u64,
    /// Which of `body` and `created` are what the embedded event renders to, when whoever
    /// made this value knows (built from an event, or a held state); `None` for a record read
    /// from outside. Not part of the record: it travels as the [`HEADER_RENDERED`] header, so
    /// that a reader holding the record need not render the event again to find out.
    #[serde(skip)]
    pub rendered: Option<(bool, bool)>,
}

/// The header on every notification record eventmatchd writes that says which of its fields
/// are what its embedded event renders to, and when the event expires: a restarting instance
/// then holds the record without its body (see [`crate::index`]) without parsing and rendering
/// the event to compare (most of the catch-up's time before). The value names the renderer: a
/// record rendered by another version of the rendering (a rolling upgrade) is compared as
/// before. See [`Rendered::header`] for the format.
pub const HEADER_RENDERED: &str = "eventmatchd-rendered";

/// The rendering's generation, the first part of [`HEADER_RENDERED`]'s value. Change it (and
/// the pinned hash in this module's tests) whenever what [`render`] writes for a body or a
/// `created` changes.
pub const RENDERER: &str = "1";

/// A [`HEADER_RENDERED`] value, held on the stack.
#[derive(Clone, Copy)]
pub struct HeaderValue {
    buf: [u8; HeaderValue::CAPACITY],
    len: usize,
}

impl HeaderValue {
    /// The longest value: renderer, two flags, an `i64` of seconds and nine digits, with
    /// their separators, fit with room to spare.
    const CAPACITY: usize = 48;

    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(Self::CAPACITY);
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl std::fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the [`HEADER_RENDERED`] header says about a notification record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendered {
    /// The body is what the embedded event renders to.
    pub body: bool,
    /// So is `created`.
    pub created: bool,
    /// The embedded event's `expires`.
    pub expires: Option<DateTime<Utc>>,
}

impl Rendered {
    /// What the header says about `n`, when `n` knows how it was rendered (built from an
    /// event, or a held state); `None` for a record read from outside.
    pub fn of(n: &Notification) -> Option<Rendered> {
        n.rendered.map(|(body, created)| Rendered {
            body,
            created,
            expires: event_expires(n),
        })
    }

    /// `{RENDERER}:{fields}` or `{RENDERER}:{fields}:{expires}`: `fields` has `b` when the
    /// body is the event's rendering and `c` when `created` is; `expires` is the event's, as
    /// seconds and nanoseconds since 1970 (`1893456000.000000000`), absent when it has none.
    /// Written into a buffer on the stack: this is per notification on the event path, where
    /// `format!` cost 2,000 instructions.
    pub fn header(&self) -> HeaderValue {
        let mut v = HeaderValue {
            buf: [0; HeaderValue::CAPACITY],
            len: 0,
        };
        v.push(RENDERER.as_bytes());
        v.push(b":");
        if self.body {
            v.push(b"b");
        }
        if self.created {
            v.push(b"c");
        }
        if let Some(t) = self.expires {
            v.push(b":");
            v.push(itoa::Buffer::new().format(t.timestamp()).as_bytes());
            v.push(b".");
            let nanos = t.timestamp_subsec_nanos();
            let mut digits = [b'0'; 9];
            let mut rest = nanos;
            for d in digits.iter_mut().rev() {
                // `% 10` is below 10: the cast cannot truncate.
                *d = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            v.push(&digits);
        }
        v
    }

    /// Reads a [`HEADER_RENDERED`] value; `None` when it is malformed or names another renderer.
    pub fn parse(value: &[u8]) -> Option<Rendered> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.splitn(3, ':');
        if parts.next()? != RENDERER {
            return None;
        }
        let (body, created) = match parts.next()? {
            "bc" => (true, true),
            "b" => (true, false),
            "c" => (false, true),
            "" => (false, false),
            _ => return None,
        };
        let expires = match parts.next() {
            None => None,
            Some(t) => {
                let (secs, nanos) = t.split_once('.')?;
                if nanos.len() != 9 {
                    return None;
                }
                Some(DateTime::from_timestamp(
                    secs.parse().ok()?,
                    nanos.parse().ok()?,
                )?)
            }
        };
        Some(Rendered {
            body,
            created,
            expires,
        })
    }
}

/// A notification record as read back from the topic, before it is held: the same fields and
/// the same serde rules as [`Notification`], but the body borrowed from the record's text (when
/// it has no escapes). The index drops a body that is the event's rendering, so parsing it
/// into a `String` would allocate and free it for nothing, for most records of a start-up
/// catch-up.
#[derive(Deserialize)]
pub(crate) struct RecordView<'a> {
    pk: Uuid,
    severity: Severity,
    #[serde(borrow)]
    body: std::borrow::Cow<'a, str>,
    hyperlink: Option<String>,
    hyperlink_label: Option<String>,
    created: String,
    event: Arc<RawValue>,
    seen: bool,
    user: Option<NotificationUser>,
    group: Option<Uuid>,
    rule: Uuid,
    #[serde(default)]
    version: u64,
}

impl RecordView<'_> {
    /// The record as a [`Notification`]; with `drop_body`, its body left empty.
    pub(crate) fn into_notification(self, drop_body: bool) -> Notification {
        Notification {
            pk: self.pk,
            severity: self.severity,
            body: if drop_body {
                String::new()
            } else {
                self.body.into_owned()
            },
            hyperlink: self.hyperlink,
            hyperlink_label: self.hyperlink_label,
            created: self.created,
            event: self.event,
            seen: self.seen,
            user: self.user,
            group: self.group,
            rule: self.rule,
            version: self.version,
            rendered: None,
        }
    }
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
            && self.version == other.version
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
pub(crate) fn derived(event: &RawValue) -> Option<(String, Option<String>)> {
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
pub(crate) fn examine(n: &Notification) -> ((bool, bool), Option<DateTime<Utc>>) {
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

/// Read the event's `expires` out of a notification whose event is not a valid Event.
pub(crate) fn event_expires(n: &Notification) -> Option<DateTime<Utc>> {
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
                version: 0,
                // The body is the event's rendering; so is `created` when the event has one
                // (otherwise it is the fallback, which the event does not give back).
                rendered: Some((true, event.created.is_some())),
            }
        })
        .collect()
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
    fn the_rendered_header_round_trips_and_refuses_other_renderers() {
        let when = DateTime::parse_from_rfc3339("2030-01-01T00:00:00.123456789+02:00")
            .expect("valid")
            .with_timezone(&Utc);
        for (body, created) in [(true, true), (true, false), (false, true), (false, false)] {
            let before_1970 = DateTime::parse_from_rfc3339("1969-07-20T20:17:40.5Z")
                .expect("valid")
                .with_timezone(&Utc);
            for expires in [None, Some(when), Some(t0()), Some(before_1970)] {
                let r = Rendered {
                    body,
                    created,
                    expires,
                };
                let v = r.header();
                assert!(v.as_str().starts_with(&format!("{RENDERER}:")), "{v:?}");
                assert_eq!(Rendered::parse(v.as_bytes()), Some(r), "{v:?}");
            }
        }
        for other in [
            "2:bc",
            "1:x",
            "1",
            "",
            "1:cb",
            "\u{ff}",
            "1:bc:",
            "1:bc:5",
            "1:bc:5.1",
            "1:bc:x.000000000",
        ] {
            assert_eq!(Rendered::parse(other.as_bytes()), None, "{other:?}");
        }
        let e = login(json!({}));
        let built = build(&rule(true, None), &e, &render(&e, t0()));
        assert_eq!(built[0].rendered, Some((true, true)));
        assert_eq!(
            Rendered::of(&built[0]).and_then(|r| r.expires),
            e.expires.as_ref().map(|(_, t)| *t)
        );
    }

    /// The view a record is read back through takes exactly what `Notification`'s own
    /// deserializer takes, and refuses what it refuses.
    #[test]
    fn a_record_view_reads_what_a_notification_reads() {
        let e = login(json!({"q": "it's \"quoted\"", "u": "é"}));
        let mut n = build(&rule(true, None), &e, &render(&e, t0())).remove(0);
        n.rendered = None;
        let good = String::from_utf8(n.to_bytes()).expect("utf-8");
        let mut cases = vec![good.clone()];
        let v: Value = serde_json::from_str(&good).expect("json");
        let mut with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut m = v.as_object().cloned().unwrap_or_default();
            f(&mut m);
            cases.push(Value::Object(m).to_string());
        };
        with(&|m| {
            m.remove("version");
        });
        with(&|m| {
            m.remove("body");
        });
        with(&|m| {
            m.insert("body".into(), json!("plain, no escapes"));
        });
        with(&|m| {
            m.insert("body".into(), json!(5));
        });
        with(&|m| {
            m.insert("unknown".into(), json!({"x": [1]}));
        });
        with(&|m| {
            m.insert("user".into(), Value::Null);
        });
        with(&|m| {
            m.insert("pk".into(), json!("not a uuid"));
        });
        cases.push(good.replacen("\"seen\"", "\"seen\":true,\"seen\"", 1));
        cases.push("[]".into());
        cases.push(good[..good.len() / 2].to_string());
        for text in &cases {
            let plain = serde_json::from_str::<Notification>(text);
            let viewed =
                serde_json::from_str::<RecordView>(text).map(|r| r.into_notification(false));
            match (&plain, &viewed) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                _ => panic!("disagree on {text}: {plain:?} / {:?}", viewed.is_ok()),
            }
        }
        let dropped = serde_json::from_str::<RecordView>(&good).expect("valid");
        assert_eq!(dropped.into_notification(true).body, "");
    }

    /// A restarting instance trusts [`HEADER_RENDERED`] only for its own [`RENDERER`]: if what
    /// a body or a `created` renders to changes while `RENDERER` stays, records written before
    /// the change would be read back with the new rendering instead of what they say. This
    /// pins the rendering of a set of shapes to the generation; when it fails, change
    /// `RENDERER` and then the hash here.
    #[test]
    fn the_renderer_generation_changes_with_the_rendering() {
        let shapes = [
            json!({}),
            json!({"username": "jane", "ok": false, "n": null, "f": 1e20, "g": 100.0, "s": "it's"}),
            json!({"message": "Invalid credentials", "x": 1}),
            json!({"message": 42}),
            json!({"message": null}),
            json!({"message": {"a": [1, true, null]}}),
            json!({"nested": {"list": [1, 2.5, "x\"y"], "empty": {}}, "u": "é\u{2028}☃"}),
            json!({"hyperlink": "https://x", "hyperlink_label": 5, "big": 12345678901234567890u64}),
            json!({"q": "a'b\"c\\d\n\t\u{1}"}),
        ];
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a: stable across Rust versions
        let mut eat = |text: &str| {
            for b in text.bytes().chain([0xff]) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for ctx in shapes {
            let (body, created) = rendered_text(&login(ctx));
            eat(&body);
            eat(created.as_deref().unwrap_or("-"));
        }
        let undated = event(json!({
            "pk": "0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a02", "action": "model_created",
            "app": "authentik.events.signals", "context": {"model": {"pk": 1}}
        }));
        let (body, created) = rendered_text(&undated);
        eat(&body);
        eat(created.as_deref().unwrap_or("-"));
        assert_eq!(
            (RENDERER, hash),
            ("1", 13_995_717_303_324_013_350),
            "the rendering changed: see this test's doc"
        );
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
                "rule",
                "version"
            ]
        );
        assert_eq!(v["version"], 0, "a notification as created");
        assert_eq!(
            v["event"]["pk"],
            json!("0b5f4a4e-2b0c-4a8e-9d55-3f1f6f0f9a01")
        );
        assert_eq!(v["event"]["context"], json!({"k": "v"}));
        let back: Notification = serde_json::from_value(v).expect("round trip");
        assert_eq!(&back, n);
    }
}
