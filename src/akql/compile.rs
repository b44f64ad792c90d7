//! authentik's event schema for AKQL (`events/api/events.py` `get_ql_fields`,
//! `api/search/ql.py` `BaseSchema`, `api/search/fields.py` `JSONSearchField`): which names
//! exist, which values each takes, and the comparison each becomes. Everything djangoql
//! would raise for is found here, once, when the policy is written.

use super::parser::{Comparison, Const, Expr, Logic, Op};
use super::pg;
use super::AkqlError;
use chrono::{DateTime, Utc};
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

const FIELDS: &str = "action, app, brand, client_ip, context, created, event_uuid, user";

/// The three JSON columns a path can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    User = 0,
    Brand = 1,
    Context = 2,
}

/// A key path below a JSON column (`context.http_request.path`). `id` hashes root and
/// keys: two paths with different ids differ, so most comparisons of paths stop there.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonPath {
    pub root: Root,
    pub keys: Vec<String>,
    pub id: u64,
}

/// A field with one value per event, by which policies can be looked up
/// ([`Node::lookup_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyField {
    App,
    ClientIp,
    /// Only a JSON string equals a query's string.
    Json(Arc<JsonPath>),
}

/// The lookup hash of a string value (a query's constant, an event's `app` or JSON string).
pub fn key_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// The lookup hash of an address (`inet` equality is address equality).
pub fn key_ip(ip: &IpAddr) -> u64 {
    let mut h = FxHasher::default();
    ip.hash(&mut h);
    h.finish()
}

/// The constant side of a comparison, converted for its field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operand<T> {
    /// `=`, `!=` and the orderings.
    One(T),
    /// `in`, `not in`.
    Many(Vec<T>),
    /// The text operators: the pattern, upper-cased (`UPPER(...) LIKE UPPER(...)`, with `%`
    /// and `_` escaped by Django, so matched literally).
    Pattern(Pattern),
}

/// A text operator's pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// Upper-cased.
    pub upper: String,
    /// Where its rarest byte is ([`rarity`]): a search compares the pattern only where the
    /// text has that byte. Found once here, not per event.
    pub anchor: usize,
    /// Whether `upper` is ASCII: asked by every search of an ASCII text, so found once here.
    pub ascii: bool,
}

impl Pattern {
    pub fn new(upper: String) -> Self {
        let anchor = upper
            .bytes()
            .enumerate()
            .min_by_key(|&(_, b)| rarity(b))
            .map_or(0, |(i, _)| i);
        let ascii = upper.is_ascii();
        Self {
            upper,
            anchor,
            ascii,
        }
    }
}

/// How common a byte is in the texts queries search (URL paths, dotted labels, names,
/// e-mail addresses); higher is more common.
fn rarity(b: u8) -> u8 {
    match b {
        b'/' | b'.' | b'-' | b'_' | b' ' | b':' | b'=' | b'@' => 4,
        b'E' | b'T' | b'A' | b'O' | b'I' | b'N' | b'S' | b'R' | b'H' | b'L' => 3,
        b'0'..=b'9' => 2,
        b'A'..=b'Z' => 1,
        _ => 0,
    }
}

/// `Eq` and `Hash` let a matcher evaluate a comparison that several queries share once per
/// event ([`super::program`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    /// `action`, its value mapped from a choice's label.
    Action(Op, Operand<String>),
    App(Op, Operand<String>),
    EventUuid(Op, Operand<u128>),
    ClientIp(Op, Operand<IpAddr>),
    Created(Op, Operand<DateTime<Utc>>),
    Json(Op, Arc<JsonPath>, Operand<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Test(Test),
}

/// The `EventAction` choices: values and labels (Django's `TextChoices` label: the member's
/// name with `_` as space, title case; two members are not named after their value).
pub struct Choices {
    pairs: Vec<(String, String)>,
}

impl Choices {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let pairs = values
            .into_iter()
            .map(|v| {
                let label = match v {
                    "invitation_used" => "Invite Used".to_string(),
                    "custom_" => "Custom Prefix".to_string(),
                    _ => title(v),
                };
                (v.to_string(), label)
            })
            .collect();
        Self { pairs }
    }

    /// The value a string names, by value or by label.
    fn lookup(&self, s: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(v, l)| v == s || l == s)
            .map(|(v, _)| v.as_str())
    }
}

/// Python's `str.title()` of `name.replace("_", " ")`.
fn title(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut start = true;
    for c in v.chars() {
        let c = if c == '_' { ' ' } else { c };
        if c.is_alphabetic() {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            start = false;
        } else {
            out.push(c);
            start = true;
        }
    }
    out
}

pub fn compile(expr: &Expr, choices: &Choices) -> Result<Node, AkqlError> {
    Ok(match expr {
        Expr::Logical(l, a, b) => {
            let (a, b) = (
                Box::new(compile(a, choices)?),
                Box::new(compile(b, choices)?),
            );
            match l {
                Logic::And => Node::And(a, b),
                Logic::Or => Node::Or(a, b),
            }
        }
        Expr::Cmp(c) => Node::Test(test(c, choices)?),
    })
}

enum Field {
    Action,
    App,
    EventUuid,
    ClientIp,
    Created,
    Json(Root),
}

fn test(c: &Comparison, choices: &Choices) -> Result<Test, AkqlError> {
    let root = c.name[0].as_str();
    let field = match root {
        "action" => Field::Action,
        "app" => Field::App,
        "event_uuid" => Field::EventUuid,
        "client_ip" => Field::ClientIp,
        "created" => Field::Created,
        "user" => Field::Json(Root::User),
        "brand" => Field::Json(Root::Brand),
        "context" => Field::Json(Root::Context),
        _ => {
            return Err(AkqlError::schema(format!(
                "Unknown field: {root}. Possible choices are: {FIELDS}"
            )))
        }
    };
    let json = matches!(field, Field::Json(_));
    if json && c.name.len() == 1 {
        return Err(AkqlError::schema(format!(
            "Field \"{root}\" is a JSON field: compare a key below it ({root}.<key>)"
        )));
    }
    if !json && c.name.len() > 1 {
        return Err(AkqlError::schema(format!(
            "Unknown field: {}. \"{root}\" has no fields",
            c.name.join(".")
        )));
    }
    let kind = if json { "relation" } else { "str" };
    let strings = strings(&c.value, root, kind)?;
    let op = c.op;
    let text = |s: &str| Ok(s.to_string());
    Ok(match field {
        // An `in` list keeps only the choices it names (by value or label).
        Field::Action if matches!(op, Op::In | Op::NotIn) => Test::Action(
            op,
            Operand::Many(
                strings
                    .iter()
                    .filter_map(|s| choices.lookup(s).map(str::to_string))
                    .collect(),
            ),
        ),
        Field::Action => Test::Action(op, convert(op, &strings, |s| Ok(choice_value(choices, s)))?),
        Field::App => Test::App(op, convert(op, &strings, text)?),
        Field::EventUuid => Test::EventUuid(
            op,
            convert(op, &strings, |s| {
                Uuid::parse_str(s)
                    .map(|u| u.as_u128())
                    .map_err(|_| AkqlError::value(format!("“{s}” is not a valid UUID.")))
            })?,
        ),
        Field::ClientIp => Test::ClientIp(
            op,
            convert(op, &strings, |s| {
                s.parse::<IpAddr>().map_err(|_| {
                    AkqlError::value(format!(
                        "'{s}' does not appear to be an IPv4 or IPv6 address"
                    ))
                })
            })?,
        ),
        Field::Created => {
            // The format is checked for every operator, `~` included.
            let parse = |s: &str| {
                pg::parse_query_time(s).ok_or_else(|| {
                    AkqlError::schema(format!(
                        "Field \"created\" can be compared to timestamps in \"YYYY-MM-DD HH:MM\" format, but not to '{s}'"
                    ))
                })
            };
            for s in &strings {
                parse(s)?;
            }
            Test::Created(op, convert(op, &strings, parse)?)
        }
        Field::Json(r) => {
            let keys: Vec<String> = c.name[1..].to_vec();
            let mut h = FxHasher::default();
            (r, &keys).hash(&mut h);
            let path = Arc::new(JsonPath {
                root: r,
                keys,
                id: h.finish(),
            });
            Test::Json(op, path, convert(op, &strings, text)?)
        }
    })
}

/// `=`/orderings: the choice's value when the string names one, else the string as it is.
fn choice_value(choices: &Choices, s: &str) -> String {
    choices.lookup(s).unwrap_or(s).to_string()
}

fn upper_of(strings: &[String]) -> String {
    strings
        .first()
        .map(|s| pg::upper(s).into_owned())
        .unwrap_or_default()
}

/// Builds the operand: text operators keep the upper-cased pattern (the value is not
/// converted: `client_ip ~ "10.0"` is fine); the others convert each value with `parse`.
fn convert<T>(
    op: Op,
    strings: &[String],
    parse: impl Fn(&str) -> Result<T, AkqlError>,
) -> Result<Operand<T>, AkqlError> {
    Ok(match op {
        Op::In | Op::NotIn => {
            Operand::Many(strings.iter().map(|s| parse(s)).collect::<Result<_, _>>()?)
        }
        o if o.is_text() => Operand::Pattern(Pattern::new(upper_of(strings))),
        _ => {
            let first = strings
                .first()
                .ok_or_else(|| AkqlError::schema("a value is expected"))?;
            Operand::One(parse(first)?)
        }
    })
}

/// Every field takes strings only (lists of strings for `in`).
fn strings(value: &Const, root: &str, kind: &str) -> Result<Vec<String>, AkqlError> {
    let bad = |shown: String| {
        AkqlError::schema(format!(
            "Field \"{root}\" has \"{kind}\" type. It can be compared to strings, but not to {shown}"
        ))
    };
    let number = |n: &str| {
        if n.contains(['.', 'e', 'E']) {
            format!("Decimal('{n}')")
        } else {
            n.to_string()
        }
    };
    match value {
        Const::Str(s) => Ok(vec![s.clone()]),
        Const::Num(n) => Err(bad(number(n))),
        Const::True => Err(bad("True".into())),
        Const::False => Err(bad("False".into())),
        Const::None => Err(AkqlError::schema(format!(
            "Field {root} is not nullable, can't compare it to None"
        ))),
        Const::List(items) => items
            .iter()
            .map(|i| match i {
                Const::Str(s) => Ok(s.clone()),
                Const::Num(n) => Err(bad(number(n))),
                _ => Err(bad(i.to_string())),
            })
            .collect(),
    }
}

impl Node {
    /// The action values a matching event must have, when the query says (a top-level `and`
    /// conjunct `action = v` or `action in (...)`): the matcher indexes the policy by them.
    /// The smallest such set; `None` when no conjunct constrains the action.
    pub fn action_keys(&self) -> Option<Vec<String>> {
        let mut best: Option<Vec<String>> = None;
        let mut stack = vec![self];
        while let Some(n) = stack.pop() {
            let keys = match n {
                Node::And(a, b) => {
                    stack.push(a);
                    stack.push(b);
                    continue;
                }
                Node::Test(Test::Action(Op::Eq, Operand::One(v))) => vec![v.clone()],
                Node::Test(Test::Action(Op::In, Operand::Many(vs))) => vs.clone(),
                _ => continue,
            };
            if best.as_ref().is_none_or(|b| keys.len() < b.len()) {
                best = Some(keys);
            }
        }
        best.map(|mut k| {
            k.sort();
            k.dedup();
            k
        })
    }

    /// Lookup keys: values of `app`, `client_ip` or JSON paths of which a matching event
    /// must have at least one (`[(field, value hashes)]`, read as "field 1 is one of these, or
    /// field 2 is one of those, ..."): the matcher looks such a policy up by the event's values
    /// ([`key_str`] / [`key_ip`]) instead of evaluating it for every event of its action.
    /// A comparison `=` / `in` on such a field gives its values; an `and` needs one side's keys
    /// (the side with fewer values), an `or` both sides'. `None`: no such requirement.
    pub fn lookup_keys(&self) -> Option<Vec<(KeyField, Vec<u64>)>> {
        let size = |k: &Vec<(KeyField, Vec<u64>)>| k.iter().map(|(_, v)| v.len()).sum::<usize>();
        match self {
            Node::And(a, b) => match (a.lookup_keys(), b.lookup_keys()) {
                (Some(x), Some(y)) => Some(if size(&y) < size(&x) { y } else { x }),
                (x, y) => x.or(y),
            },
            Node::Or(a, b) => {
                let mut x = a.lookup_keys()?;
                for (field, values) in b.lookup_keys()? {
                    match x.iter_mut().find(|(f, _)| *f == field) {
                        Some((_, vs)) => vs.extend(values),
                        None => x.push((field, values)),
                    }
                }
                for (_, vs) in &mut x {
                    vs.sort_unstable();
                    vs.dedup();
                }
                Some(x)
            }
            Node::Test(t) => {
                let (field, values) = match t {
                    Test::App(Op::Eq, Operand::One(v)) => (KeyField::App, vec![key_str(v)]),
                    Test::App(Op::In, Operand::Many(vs)) => {
                        (KeyField::App, vs.iter().map(|v| key_str(v)).collect())
                    }
                    Test::ClientIp(Op::Eq, Operand::One(ip)) => {
                        (KeyField::ClientIp, vec![key_ip(ip)])
                    }
                    Test::ClientIp(Op::In, Operand::Many(ips)) => {
                        (KeyField::ClientIp, ips.iter().map(key_ip).collect())
                    }
                    Test::Json(Op::Eq, p, Operand::One(v)) => {
                        (KeyField::Json(p.clone()), vec![key_str(v)])
                    }
                    Test::Json(Op::In, p, Operand::Many(vs)) => (
                        KeyField::Json(p.clone()),
                        vs.iter().map(|v| key_str(v)).collect(),
                    ),
                    _ => return None,
                };
                let mut values = values;
                values.sort_unstable();
                values.dedup();
                Some(vec![(field, values)])
            }
        }
    }

    /// The JSON paths the query reads.
    pub fn paths(&self, out: &mut Vec<Arc<JsonPath>>) {
        match self {
            Node::And(a, b) | Node::Or(a, b) => {
                a.paths(out);
                b.paths(out);
            }
            Node::Test(Test::Json(_, p, _)) => out.push(p.clone()),
            Node::Test(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::akql::parser::parse;

    fn choices() -> Choices {
        Choices::new(["login", "login_failed", "invitation_used", "custom_"])
    }

    fn c(q: &str) -> Result<Node, AkqlError> {
        compile(&parse(q)?, &choices())
    }

    #[test]
    fn labels() {
        let ch = choices();
        assert_eq!(ch.lookup("Login Failed"), Some("login_failed"));
        assert_eq!(ch.lookup("Invite Used"), Some("invitation_used"));
        assert_eq!(ch.lookup("Custom Prefix"), Some("custom_"));
        assert_eq!(ch.lookup("login failed"), None);
    }

    #[test]
    fn actions_are_mapped_and_in_lists_keep_only_choices() {
        assert_eq!(
            c(r#"action = "Login""#).unwrap(),
            Node::Test(Test::Action(Op::Eq, Operand::One("login".into())))
        );
        assert_eq!(
            c(r#"action = "custom_x""#).unwrap(),
            Node::Test(Test::Action(Op::Eq, Operand::One("custom_x".into())))
        );
        assert_eq!(
            c(r#"action in ("custom_x", "Login Failed")"#).unwrap(),
            Node::Test(Test::Action(
                Op::In,
                Operand::Many(vec!["login_failed".into()])
            ))
        );
    }

    #[test]
    fn schema_errors() {
        for (q, msg) in [
            (r#"foo = "x""#, "Unknown field: foo. Possible choices are: action, app, brand, client_ip, context, created, event_uuid, user"),
            ("user.pk = 7", "Field \"user\" has \"relation\" type. It can be compared to strings, but not to 7"),
            ("context.ratio > 0.5", "Field \"context\" has \"relation\" type. It can be compared to strings, but not to Decimal('0.5')"),
            ("action = None", "Field action is not nullable, can't compare it to None"),
            (r#"created ~ "2025-07""#, "Field \"created\" can be compared to timestamps in \"YYYY-MM-DD HH:MM\" format, but not to '2025-07'"),
            (r#"client_ip = "not-an-ip""#, "'not-an-ip' does not appear to be an IPv4 or IPv6 address"),
        ] {
            assert_eq!(c(q).unwrap_err().message, msg, "{q}");
        }
        assert!(c(r#"user = "x""#).is_err(), "bare JSON field");
        assert!(c(r#"action.x = "x""#).is_err(), "key under a plain field");
        assert!(c(r#"event_uuid in ("nope")"#).is_err());
        assert!(
            c(r#"client_ip ~ "not-an-ip""#).is_ok(),
            "text operators take any text"
        );
        assert!(c(r#"app = True"#).is_err());
    }

    #[test]
    fn lookup_keys_follow_and_and_or() {
        let fields = |q: &str| {
            c(q).unwrap().lookup_keys().map(|ks| {
                ks.into_iter()
                    .map(|(f, v)| {
                        let name = match f {
                            KeyField::App => "app".to_string(),
                            KeyField::ClientIp => "client_ip".to_string(),
                            KeyField::Json(p) => p.keys.join("."),
                        };
                        (name, v.len())
                    })
                    .collect::<Vec<_>>()
            })
        };
        let one = |f: &str, n| Some(vec![(f.to_string(), n)]);
        assert_eq!(fields(r#"app = "a""#), one("app", 1));
        // `and`: the side with fewer values.
        assert_eq!(
            fields(r#"app in ("a", "b") and user.username = "x""#),
            one("username", 1)
        );
        assert_eq!(
            fields(r#"app ~ "a" and client_ip = "::1""#),
            one("client_ip", 1)
        );
        // `or`: both sides, merged by field, values once.
        assert_eq!(
            fields(
                r#"client_ip = "::1" or user.username = "x" or client_ip in ("::1", "10.0.0.1")"#
            ),
            Some(vec![
                ("client_ip".to_string(), 2),
                ("username".to_string(), 1)
            ])
        );
        // Nothing an event must equal: not looked up.
        for q in [
            r#"app = "a" or app ~ "b""#,
            r#"app != "a""#,
            r#"user.username not in ("x")"#,
            r#"created > "2024-01-01""#,
            r#"action = "login""#,
        ] {
            assert_eq!(fields(q), None, "{q}");
        }
        assert_eq!(fields(r#"app in ("a", "a", "b")"#), one("app", 2));
    }

    #[test]
    fn index_keys_come_from_top_level_conjuncts() {
        let keys = |q: &str| c(q).unwrap().action_keys();
        assert_eq!(
            keys(r#"action = "login" and app = "a""#),
            Some(vec!["login".into()])
        );
        assert_eq!(
            keys(r#"app = "a" and (action in ("login", "login_failed") and user.x = "1")"#),
            Some(vec!["login".into(), "login_failed".into()])
        );
        assert_eq!(keys(r#"action = "login" or app = "a""#), None);
        assert_eq!(keys(r#"action != "login""#), None);
        assert_eq!(keys(r#"action in ("nope")"#), Some(vec![]));
    }
}
