//! A JSON column as the queries read it: a tree that borrows its strings from the event's
//! raw text and keeps objects as short lists of pairs.
//!
//! Why not `serde_json::Value`: with `preserve_order` every object is an `IndexMap` (a hash
//! table, SipHash per key) and every key and string an allocation, and a query reads one to
//! three keys of it. Parsing into this tree allocates one `Vec` per object or array (strings
//! without escapes are borrowed), and a key is found by comparing the few keys an authentik
//! object has. The rare operator that needs a whole value in PostgreSQL's text (an object or
//! array under `~`, a number's spelling) converts that value with [`Json::to_value`].
//! (Reading only the objects on a path's way, members kept as raw text, was tried: the scan
//! of the text is most of the cost either way, and it measured ~6% slower.)
//!
//! A policy set reads a known set of paths: [`PathTrie`] holds them, and [`super::scan::slots`]
//! builds only the values where they end (whole, since an operator may read all of it), each
//! into its path's slot; everything else is jumped over. Every path answers as a lookup on the
//! whole tree would.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Pairs in the order written; a repeated key is kept, and [`Json::get`] takes its last
    /// value, as `jsonb` does.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// `None` when the text is not JSON (an event's columns always are: they were parsed).
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The value of `key` in an object (the last one, when repeated); `None` for a missing
    /// key or a value that is not an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(pairs) => pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The same value as `serde_json` would hold it (repeated keys: last value, first
    /// position).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(a) => Value::Array(a.iter().map(Json::to_value).collect()),
            Json::Object(pairs) => {
                let mut m = serde_json::Map::with_capacity(pairs.len());
                for (k, v) in pairs {
                    m.insert(k.to_string(), v.to_value());
                }
                Value::Object(m)
            }
        }
    }
}

/// The key paths a policy set reads below one JSON column. Each path has a slot: the index
/// of its value in the column's slot list ([`super::scan::slots`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PathTrie {
    /// Keys read below this point (an authentik object has few: a list beats a map).
    children: Vec<(String, PathTrie)>,
    /// Bit `n` set: some child's key is `n` bytes long (bit 63: 63 or more). Most of an
    /// event's keys are read by no path, and most of those are told apart by their length
    /// alone, with no comparison of bytes.
    lengths: u64,
    /// A path ends here: the value is built whole, into this slot.
    capture: Option<u32>,
}

impl PathTrie {
    /// Adds a path; its slot (a new one numbered `*next`, which then moves on, unless the path
    /// was there already).
    pub fn insert(&mut self, keys: &[String], next: &mut u32) -> u32 {
        let Some((first, rest)) = keys.split_first() else {
            return *self.capture.get_or_insert_with(|| {
                *next += 1;
                *next - 1
            });
        };
        let i = match self.children.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                self.children.push((first.clone(), PathTrie::default()));
                self.lengths |= length_bit(first.len());
                self.children.len() - 1
            }
        };
        self.children[i].1.insert(rest, next)
    }

    /// Nothing is read below this point.
    pub fn is_empty(&self) -> bool {
        self.capture.is_none() && self.children.is_empty()
    }

    /// The slot of the path ending here.
    pub fn slot(&self) -> Option<u32> {
        self.capture
    }

    /// The child of a key given as its UTF-8 bytes, with its position among the children.
    #[inline]
    pub fn child_at(&self, key: &[u8]) -> Option<(usize, &PathTrie)> {
        if self.lengths & length_bit(key.len()) == 0 {
            return None;
        }
        let i = self
            .children
            .iter()
            .position(|(k, _)| k.as_bytes() == key)?;
        Some((i, &self.children.get(i)?.1))
    }

    pub fn children(&self) -> impl Iterator<Item = (&str, &PathTrie)> {
        self.children.iter().map(|(k, t)| (k.as_str(), t))
    }
}

/// A key length's bit in [`PathTrie::lengths`].
#[inline]
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// A string that borrows from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        // serde_json never produces a non-finite number; `Value` would hold null for one.
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(x) = seq.next_element()? {
            items.push(x);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((Str(k), v)) = map.next_entry::<Str<'de>, Json<'de>>()? {
            pairs.push((k, v));
        }
        Ok(Json::Object(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json() {
        let texts = [
            r#"{"a": 1, "b": [true, null, 1.5, -3, "x\"y"], "c": {"d": {}}, "a": 2}"#,
            r#"{"big": 1e20, "u": 18446744073709551615, "s": "\u00e9t\u00e9", "e": []}"#,
            r#"[]"#,
            r#""plain""#,
        ];
        for t in texts {
            let v: Value = serde_json::from_str(t).expect("json");
            assert_eq!(Json::parse(t).expect("parses").to_value(), v, "{t}");
        }
    }

    #[test]
    fn lookups_borrow_and_take_the_last_repeated_key() {
        let t = r#"{"k": "first", "n": {"x": "plain"}, "k": "last", "esc": "a\nb"}"#;
        let j = Json::parse(t).expect("parses");
        assert_eq!(j.get("k"), Some(&Json::String("last".into())));
        assert!(matches!(
            j.get("n").and_then(|n| n.get("x")),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert!(matches!(j.get("esc"), Some(Json::String(Cow::Owned(s))) if s == "a\nb"));
        assert_eq!(j.get("missing"), None);
        assert_eq!(j.get("k").and_then(|k| k.get("x")), None);
        assert!(Json::parse("{not json").is_none());
    }
}
