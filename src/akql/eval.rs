//! Evaluating a compiled query against one event, as PostgreSQL evaluates the filter
//! authentik builds (`Event.objects.filter(pk=event.pk)` + the query).
//!
//! An [`EventView`] is made once per event and shared by every policy evaluated for it: the
//! JSON columns are parsed at most once, when the first query needs them, and each distinct
//! JSON path is resolved at most once.

use super::compile::{JsonPath, Node, Operand, Root, Test};
use super::parser::Op;
use super::pg;
use crate::events::Event;
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

/// The parsed JSON columns of one event (parsed on first use).
pub struct Columns<'e> {
    event: &'e Event,
    json: [OnceCell<Value>; 3],
    client_ip: OnceCell<Option<IpAddr>>,
}

impl<'e> Columns<'e> {
    pub fn new(event: &'e Event) -> Self {
        Self {
            event,
            json: Default::default(),
            client_ip: OnceCell::new(),
        }
    }

    fn root(&self, r: Root) -> &Value {
        self.json[r as usize].get_or_init(|| {
            let raw = match r {
                Root::User => Some(self.event.user.get()),
                Root::Context => Some(self.event.context.get()),
                Root::Brand => self.event.brand.as_deref().map(|b| b.get()),
            };
            raw.and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null)
        })
    }

    /// The event's address as `inet` would hold it; `None` when null or not an address
    /// (authentik's column cannot hold one; here it then compares like null).
    fn ip(&self) -> Option<IpAddr> {
        *self
            .client_ip
            .get_or_init(|| self.event.client_ip.as_deref().and_then(|s| s.parse().ok()))
    }
}

/// A path and what it resolved to.
type Resolved<'c> = (Arc<JsonPath>, Option<&'c Value>);

/// One event as the queries see it.
pub struct EventView<'c, 'e> {
    cols: &'c Columns<'e>,
    /// Resolved paths by [`JsonPath::id`]; the path is kept so that a hash collision is
    /// resolved again rather than answered from another path's value.
    paths: RefCell<FxHashMap<u64, Resolved<'c>>>,
}

impl<'c, 'e> EventView<'c, 'e> {
    pub fn new(cols: &'c Columns<'e>) -> Self {
        Self {
            cols,
            paths: RefCell::new(FxHashMap::default()),
        }
    }

    pub fn event(&self) -> &'e Event {
        self.cols.event
    }

    /// The value at a path: missing when a step is absent or not an object.
    fn resolve(&self, path: &Arc<JsonPath>) -> Option<&'c Value> {
        if let Some((p, v)) = self.paths.borrow().get(&path.id) {
            // Policies that share a path mostly share its text, rarely its allocation.
            if Arc::ptr_eq(p, path) || **p == **path {
                return *v;
            }
        }
        let mut v = self.cols.root(path.root);
        for k in &path.keys {
            v = v.as_object()?.get(k)?;
        }
        self.paths
            .borrow_mut()
            .entry(path.id)
            .or_insert_with(|| (path.clone(), Some(v)));
        Some(v)
    }
}

impl Node {
    pub fn eval(&self, view: &EventView<'_, '_>) -> bool {
        match self {
            Node::And(a, b) => a.eval(view) && b.eval(view),
            Node::Or(a, b) => a.eval(view) || b.eval(view),
            Node::Test(t) => t.eval(view),
        }
    }
}

fn ordered(op: Op, o: Ordering) -> bool {
    match op {
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        _ => false,
    }
}

/// `UPPER(text) LIKE UPPER(pattern)` with the pattern's `%`/`_` literal (`pattern` is
/// upper-cased already).
fn text_match(op: Op, text: &str, pattern: &str) -> bool {
    if text.is_ascii() {
        // ASCII text upper-cases to ASCII: compared in place, no allocation. A pattern with
        // anything else left after upper-casing cannot match it.
        if !pattern.is_ascii() {
            return false;
        }
        let (t, p) = (text.as_bytes(), pattern.as_bytes());
        let at = |i: usize| {
            t[i..i + p.len()]
                .iter()
                .zip(p)
                .all(|(a, b)| a.to_ascii_uppercase() == *b)
        };
        return match op {
            _ if p.len() > t.len() => false,
            Op::Contains | Op::NotContains => (0..=t.len() - p.len()).any(at),
            Op::StartsWith | Op::NotStartsWith => at(0),
            Op::EndsWith | Op::NotEndsWith => at(t.len() - p.len()),
            _ => false,
        };
    }
    let t = pg::upper(text);
    match op {
        Op::Contains | Op::NotContains => t.contains(pattern),
        Op::StartsWith | Op::NotStartsWith => t.starts_with(pattern),
        Op::EndsWith | Op::NotEndsWith => t.ends_with(pattern),
        _ => false,
    }
}

/// A column comparison. `value` is `None` for SQL NULL: the positive operators and the
/// orderings fail, the negative ones pass (Django's `exclude` adds `OR col IS NULL`).
fn column<'a, V, T>(
    op: Op,
    operand: &Operand<T>,
    value: Option<V>,
    text: impl FnOnce() -> Option<Cow<'a, str>>,
    cmp: impl Fn(&V, &T) -> Ordering,
) -> bool {
    let hit = match operand {
        Operand::Pattern(p) => match text() {
            Some(t) => text_match(op, &t, p),
            None => return op.is_negative(),
        },
        Operand::One(x) => match &value {
            None => return op.is_negative(),
            Some(v) if op.is_ordering() => return ordered(op, cmp(v, x)),
            Some(v) => cmp(v, x) == Ordering::Equal,
        },
        Operand::Many(xs) => match &value {
            None => return op.is_negative(),
            Some(v) => xs.iter().any(|x| cmp(v, x) == Ordering::Equal),
        },
    };
    hit != op.is_negative()
}

impl Test {
    pub fn eval(&self, view: &EventView<'_, '_>) -> bool {
        let e = view.event();
        match self {
            Test::Action(op, x) => column(
                *op,
                x,
                Some(e.action.as_str()),
                || Some(Cow::Borrowed(e.action.as_str())),
                |a, b| (*a).cmp(b.as_str()),
            ),
            Test::App(op, x) => column(
                *op,
                x,
                Some(e.app.as_str()),
                || Some(Cow::Borrowed(e.app.as_str())),
                |a, b| (*a).cmp(b.as_str()),
            ),
            Test::EventUuid(op, x) => column(
                *op,
                x,
                Some(e.pk.as_u128()),
                || Some(Cow::Owned(e.pk.hyphenated().to_string())),
                |a, b| a.cmp(b),
            ),
            Test::ClientIp(op, x) => {
                let ip = view.cols.ip();
                let text = || match ip {
                    Some(a) => Some(Cow::Owned(a.to_string())),
                    None => e.client_ip.as_deref().map(Cow::Borrowed),
                };
                column(*op, x, ip, text, pg::inet_cmp)
            }
            Test::Created(op, x) => {
                let t: Option<DateTime<Utc>> = e.created.as_ref().map(|(_, t)| pg::to_micros(t));
                column(
                    *op,
                    x,
                    t,
                    || t.as_ref().map(|t| Cow::Owned(pg::timestamptz_text(t))),
                    |a, b| a.cmp(b),
                )
            }
            Test::Json(op, path, x) => {
                // A missing key is SQL NULL under every operator, negations included.
                let Some(v) = view.resolve(path) else {
                    return false;
                };
                json(*op, x, v)
            }
        }
    }
}

fn json(op: Op, operand: &Operand<String>, v: &Value) -> bool {
    let is = |s: &String| matches!(v, Value::String(x) if x == s);
    match operand {
        // JSON null has no text: the operator and its negation both fail.
        Operand::Pattern(p) => match pg::json_text(v) {
            Some(t) => text_match(op, &t, p) != op.is_negative(),
            None => false,
        },
        Operand::One(s) if op.is_ordering() => ordered(op, pg::jsonb_cmp_str(v, s)),
        Operand::One(s) => is(s) != op.is_negative(),
        Operand::Many(xs) => xs.iter().any(is) != op.is_negative(),
    }
}
