//! Evaluating a compiled query against one event, as PostgreSQL evaluates the filter
//! authentik builds (`Event.objects.filter(pk=event.pk)` + the query).
//!
//! An [`EventView`] is made once per event and shared by every policy evaluated for it: the
//! JSON columns are parsed at most once, when the first query needs them ([`Json`]).

use super::compile::{key_ip, key_str, JsonPath, KeyField, Node, Operand, Pattern, Root, Test};
use super::parser::Op;
use super::pg;
use super::swar;
use super::tree::{Json, PathTrie};
use crate::events::Event;
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

/// Where a path's value is: its column and its index in the event's slots (numbered across
/// the three columns, so that one list holds them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    root: Root,
    index: u32,
}

/// The JSON paths a set of queries reads, per column (`Root` order), each with its [`Slot`]:
/// what [`Columns::guided`] builds of each column.
#[derive(Debug, Default, Clone)]
pub struct ColumnPaths {
    tries: [PathTrie; 3],
    /// How many slots, all columns together.
    count: u32,
    /// Every path by its id (a hash), for lookups of a path by value; paths of equal id are
    /// told apart by their keys.
    by_id: FxHashMap<u64, Vec<(Arc<JsonPath>, Slot)>>,
}

impl ColumnPaths {
    /// The slot of a path, added when new.
    pub fn slot_of(&mut self, p: &Arc<JsonPath>) -> Slot {
        if let Some(s) = self.find(p) {
            return s;
        }
        let r = p.root as usize;
        let index = self.tries[r].insert(&p.keys, &mut self.count);
        let s = Slot {
            root: p.root,
            index,
        };
        self.by_id.entry(p.id).or_default().push((p.clone(), s));
        s
    }

    /// Where a lookup field's value is read from, for [`EventView::key`]: the slot of a JSON
    /// field's path (added when new).
    pub fn key_slot(&mut self, field: &KeyField) -> Option<Slot> {
        match field {
            KeyField::Json(path) => Some(self.slot_of(path)),
            KeyField::App | KeyField::ClientIp => None,
        }
    }

    fn find(&self, p: &JsonPath) -> Option<Slot> {
        let same = self.by_id.get(&p.id)?;
        same.iter().find(|(q, _)| **q == *p).map(|(_, s)| *s)
    }
}

/// The JSON columns of one event: whole trees ([`Columns::new`]) or the slots of a set of
/// paths ([`Columns::guided`]), each column built on first use.
pub struct Columns<'e> {
    event: &'e Event,
    /// Only these paths are built ([`super::scan::slots`]); `None`: every column whole.
    paths: Option<&'e ColumnPaths>,
    json: [OnceCell<Json<'e>>; 3],
    /// Every column's slots in one list, filled on the first read of any path: one
    /// allocation per event instead of one per column, which cost a tenth of the AKQL
    /// matcher's time (BENCHMARKS.md §1b). A column no path reads is not scanned.
    slots: OnceCell<Vec<Option<Json<'e>>>>,
    client_ip: OnceCell<Option<IpAddr>>,
}

impl<'e> Columns<'e> {
    pub fn new(event: &'e Event) -> Self {
        Self {
            event,
            paths: None,
            json: Default::default(),
            slots: Default::default(),
            client_ip: OnceCell::new(),
        }
    }

    /// Columns of which only `paths` will be read: queries reading any other path see it
    /// missing.
    pub fn guided(event: &'e Event, paths: &'e ColumnPaths) -> Self {
        Self {
            paths: Some(paths),
            ..Self::new(event)
        }
    }

    fn raw(&self, r: Root) -> Option<&'e str> {
        match r {
            Root::User => Some(self.event.user.get()),
            Root::Context => Some(self.event.context.get()),
            Root::Brand => self.event.brand.as_deref().map(|b| b.get()),
        }
    }

    fn root(&self, r: Root) -> &Json<'e> {
        self.json[r as usize]
            .get_or_init(|| self.raw(r).and_then(Json::parse).unwrap_or(Json::Null))
    }

    /// The value in a slot of the guided columns (`None`: missing).
    fn slot(&self, paths: &ColumnPaths, s: Slot) -> Option<&Json<'e>> {
        self.slots
            .get_or_init(|| {
                let n = paths.count as usize;
                let mut out = Vec::with_capacity(n);
                // Not `vec![None; n]`: that clones `None` element by element.
                out.resize_with(n, || None);
                for r in [Root::User, Root::Context, Root::Brand] {
                    if let Some(text) = self.raw(r) {
                        super::scan::slots(text, &paths.tries[r as usize], &mut out);
                    }
                }
                out
            })
            .get(s.index as usize)?
            .as_ref()
    }

    /// The event's address as `inet` would hold it; `None` when null or not an address
    /// (authentik's column cannot hold one; here it then compares like null).
    fn ip(&self) -> Option<IpAddr> {
        *self
            .client_ip
            .get_or_init(|| self.event.client_ip.as_deref().and_then(|s| s.parse().ok()))
    }
}

/// One event as the queries see it.
pub struct EventView<'c, 'e> {
    cols: &'c Columns<'e>,
}

impl<'c, 'e> EventView<'c, 'e> {
    pub fn new(cols: &'c Columns<'e>) -> Self {
        Self { cols }
    }

    pub fn event(&self) -> &'e Event {
        self.cols.event
    }

    /// The event's value of a lookup field, hashed as the query's constants are; `None`
    /// when it has none a query's `=` could equal (missing, null, not a string). `slot` is
    /// the field's [`ColumnPaths::key_slot`] in the paths these columns are guided by (`None`:
    /// the path is looked up).
    pub fn key(&self, field: &KeyField, slot: Option<Slot>) -> Option<u64> {
        let value = match field {
            KeyField::App => return Some(key_str(&self.cols.event.app)),
            KeyField::ClientIp => return self.cols.ip().map(|ip| key_ip(&ip)),
            KeyField::Json(path) => match slot {
                Some(s) => self.slot(s)?,
                None => self.resolve(path)?,
            },
        };
        match value {
            Json::String(s) => Some(key_str(s)),
            _ => None,
        }
    }

    /// The value at a path: missing when a step is absent or not an object.
    fn resolve(&self, path: &JsonPath) -> Option<&'c Json<'e>> {
        if let Some(paths) = self.cols.paths {
            return self.cols.slot(paths, paths.find(path)?);
        }
        let mut v = self.cols.root(path.root);
        for k in &path.keys {
            v = v.get(k)?;
        }
        Some(v)
    }

    /// The value in a slot of the guided columns this view was made with (`None`: missing, or
    /// the columns are not guided).
    pub fn slot(&self, s: Slot) -> Option<&'c Json<'e>> {
        self.cols.slot(self.cols.paths?, s)
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
fn text_match(op: Op, text: &str, pattern: &Pattern) -> bool {
    let (ascii, anchor) = (pattern.ascii, pattern.anchor);
    let pattern = pattern.upper.as_str();
    if text.is_ascii() {
        // ASCII text upper-cases to ASCII: compared in place, no allocation. A pattern with
        // anything else left after upper-casing cannot match it.
        if !ascii {
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
            Op::Contains | Op::NotContains => contains_ascii(t, p, anchor),
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

/// Whether `p` (upper-cased ASCII, not longer than `t`; an empty one occurs everywhere)
/// occurs in ASCII `t` upper-cased. The pattern is compared only where its byte at `k` (its
/// rarest, [`Pattern::anchor`]) matches, found eight bytes at a time ([`swar`]): the texts
/// are short paths and labels, where a `memchr` call per hit of a common first byte (`/` in
/// a path) cost more than the search (BENCHMARKS.md §1b).
fn contains_ascii(t: &[u8], p: &[u8], k: usize) -> bool {
    let Some(&c) = p.get(k) else {
        return true;
    };
    let at = |i: usize| {
        t.get(i..i + p.len())
            .is_some_and(|w| w.iter().zip(p).all(|(a, b)| a.to_ascii_uppercase() == *b))
    };
    // Byte j of `hay` is the anchor of a match starting at j.
    let Some(hay) = t.get(k..t.len() + k + 1 - p.len()) else {
        return false;
    };
    // A letter is found in either case: OR-ing 0x20 lower-cases letters (other bytes that
    // it maps onto the letter are only candidates, checked by `at`).
    let (fold, want) = if c.is_ascii_alphabetic() {
        (swar::splat(0x20), c.to_ascii_lowercase())
    } else {
        (0, c)
    };
    let pattern = swar::splat(want);
    // The candidates in the 8 bytes at `from`, those below `skip` left out: the high bit of
    // every byte that matches (and some false ones above a match, which `at` rejects); no
    // match is missed.
    let word = |from: usize, skip: usize| {
        let v = (swar::word(hay, from).unwrap_or(0) | fold) ^ pattern;
        swar::zero_bytes(v) & (u64::MAX << (8 * skip))
    };
    let found = |from: usize, mut hits: u64| {
        while hits != 0 {
            if at(from + swar::first(hits)) {
                return true;
            }
            hits &= hits - 1;
        }
        false
    };
    if hay.len() < 8 {
        return (0..hay.len()).any(|j| hay[j] | (fold as u8) == want && at(j));
    }
    let mut i = 0;
    while i + 8 <= hay.len() {
        if found(i, word(i, 0)) {
            return true;
        }
        i += 8;
    }
    // The last bytes: the last 8, less those already searched.
    let last = hay.len() - 8;
    i < hay.len() && found(last, word(last, i - last))
}

/// A column comparison. `value` is `None` for SQL NULL: the positive operators and the
/// orderings fail, the negative ones pass (Django's `exclude` adds `OR col IS NULL`).
#[inline]
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
            Test::Json(op, path, x) => json(*op, x, view.resolve(path)),
        }
    }
}

/// A JSON path's comparison; `v` is `None` when the path is missing, which is SQL NULL under
/// every operator, negations included.
pub(super) fn json(op: Op, operand: &Operand<String>, v: Option<&Json<'_>>) -> bool {
    let Some(v) = v else { return false };
    let is = |s: &String| matches!(v, Json::String(x) if x == s);
    match operand {
        Operand::Pattern(p) => {
            let mut buf = itoa::Buffer::new();
            match json_text(v, &mut buf) {
                Some(t) => text_match(op, &t, p) != op.is_negative(),
                // JSON null has no text: the operator and its negation both fail.
                None => false,
            }
        }
        Operand::One(s) if op.is_ordering() => ordered(op, jsonb_cmp_str(v, s)),
        Operand::One(s) => is(s) != op.is_negative(),
        Operand::Many(xs) => xs.iter().any(is) != op.is_negative(),
    }
}

/// [`pg::json_text`] without converting strings and booleans, and with an integer (an
/// object's `pk`) formatted in `buf` on the stack (`jsonb` prints it as its digits): no
/// `serde_json::Value`, no allocation.
fn json_text<'v>(v: &'v Json<'_>, buf: &'v mut itoa::Buffer) -> Option<Cow<'v, str>> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(Cow::Borrowed(s)),
        Json::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Json::Number(n) if n.is_u64() => n.as_u64().map(|u| Cow::Borrowed(buf.format(u))),
        Json::Number(n) if n.is_i64() => n.as_i64().map(|i| Cow::Borrowed(buf.format(i))),
        other => pg::json_text(&other.to_value()).map(|t| Cow::Owned(t.into_owned())),
    }
}

/// [`pg::jsonb_cmp_str`]: a string compares by content; any other value by its type's rank
/// (empty array < null < strings < numbers < booleans < other arrays < objects).
fn jsonb_cmp_str(v: &Json<'_>, s: &str) -> Ordering {
    let rank = match v {
        Json::String(x) => return x.as_ref().cmp(s),
        Json::Array(a) if a.is_empty() => 0,
        Json::Null => 1,
        Json::Number(_) => 3,
        Json::Bool(_) => 4,
        Json::Array(_) => 5,
        Json::Object(_) => 6,
    };
    rank.cmp(&2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The anchored word-at-a-time search agrees with upper-casing and searching, on
        /// texts of a small alphabet (many partial matches, both cases, bytes one bit away
        /// from a letter such as `@` and `` ` ``) at every length around the 8-byte words.
        #[test]
        fn contains_agrees_with_upper_case_search(
            t in "[aAbB/@`x1. ]{0,40}",
            p in "[aAbB/@`x1. ]{1,6}",
        ) {
            let p = p.to_ascii_uppercase();
            prop_assert_eq!(
                text_match(Op::Contains, &t, &Pattern::new(p.clone())),
                pg::upper(&t).contains(p.as_str()),
                "{:?} in {:?}", p, t
            );
        }
    }

    /// The ASCII fast path agrees with upper-casing both sides and searching.
    #[test]
    fn text_match_agrees_with_upper_case_search() {
        let texts = [
            "",
            "a",
            "/api/v3/flows/x1/",
            "AbCabcABC",
            "xxxy",
            "ß and é",
            "aaab",
        ];
        let patterns = ["", "A", "/X1/", "ABC", "CAB", "XY", "AAB", "É", "Y", "BCA"];
        for t in texts {
            for p in patterns {
                let u = pg::upper(t);
                for (op, want) in [
                    (Op::Contains, u.contains(p)),
                    (Op::StartsWith, u.starts_with(p)),
                    (Op::EndsWith, u.ends_with(p)),
                ] {
                    assert_eq!(
                        text_match(op, t, &Pattern::new(p.to_string())),
                        want,
                        "{op:?} {t:?} {p:?}"
                    );
                }
            }
        }
    }
}
