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
//! A policy set reads a known set of paths: [`PathTrie`] holds them, and [`super::scan::guided`]
//! builds only what lies on them. Values off every path are skipped as serde's `IgnoredAny`
//! (scanned, never built); a value where a path ends is built whole, since an operator may read
//! all of it. Every lookup along those paths answers as on the whole tree.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
#[cfg(test)]
use serde::de::{DeserializeSeed, IgnoredAny};
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

/// The key paths a policy set reads below one JSON column.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PathTrie {
    /// Keys read below this point (an authentik object has few: a list beats a map).
    children: Vec<(String, PathTrie)>,
    /// A path ends here: the value is built whole.
    capture: bool,
}

impl PathTrie {
    pub fn insert(&mut self, keys: &[String]) {
        let Some((first, rest)) = keys.split_first() else {
            self.capture = true;
            return;
        };
        let i = match self.children.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                self.children.push((first.clone(), PathTrie::default()));
                self.children.len() - 1
            }
        };
        self.children[i].1.insert(rest);
    }

    /// Nothing is read below this point.
    pub fn is_empty(&self) -> bool {
        !self.capture && self.children.is_empty()
    }

    /// A path ends here.
    pub fn capture(&self) -> bool {
        self.capture
    }

    pub fn child(&self, key: &str) -> Option<&PathTrie> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }
}

#[cfg(test)]
impl<'a> Json<'a> {
    /// The parts of `text` on the paths of `trie`, by serde (validating everything it skips):
    /// the reference [`super::scan::guided`] is tested against.
    pub fn parse_guided(text: &'a str, trie: &PathTrie) -> Option<Self> {
        if trie.is_empty() {
            return Some(Json::Null);
        }
        let mut d = serde_json::Deserializer::from_str(text);
        let v = Guided(trie).deserialize(&mut d).ok()?;
        d.end().ok()?;
        Some(v)
    }
}

#[cfg(test)]
struct Guided<'t>(&'t PathTrie);

#[cfg(test)]
impl<'de> DeserializeSeed<'de> for Guided<'_> {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0.capture {
            Json::deserialize(d)
        } else {
            d.deserialize_any(GuidedVisitor(self.0))
        }
    }
}

#[cfg(test)]
struct GuidedVisitor<'t>(&'t PathTrie);

#[cfg(test)]
impl<'de> Visitor<'de> for GuidedVisitor<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    // Not an object where a path goes on: every lookup below it is missing, as `get` on any
    // non-object is; `Null` stands for it.
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
            match self.0.child(&k) {
                // Kept in order, repeats included: `get` takes the last, as on the whole tree.
                Some(t) => {
                    let v = map.next_value_seed(Guided(t))?;
                    pairs.push((k, v));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Json::Object(pairs))
    }
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

    /// Every lookup along the trie's paths answers as on the whole tree.
    #[test]
    fn guided_parse_answers_lookups_on_its_paths_as_the_whole_tree() {
        let texts = [
            r#"{"a": {"b": 1, "c": [1, {"d": 2}]}, "x": "skip", "a": {"b": "last"}}"#,
            r#"{"a": 5, "e": {"f": {"g": null}}, "h": [{"a": 1}]}"#,
            r#"{"a": {"b": {"deep": [true]}}, "e": "not an object"}"#,
            r#"[{"a": 1}]"#,
            r#""text""#,
        ];
        let paths: Vec<Vec<&str>> = vec![
            vec!["a", "b"],
            vec!["a", "c"],
            vec!["a", "b", "deep"],
            vec!["e", "f", "g"],
            vec!["h"],
            vec!["missing", "x"],
        ];
        let mut trie = PathTrie::default();
        for p in &paths {
            trie.insert(&p.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        }
        let lookup = |j: &Json<'_>, p: &[&str]| {
            let mut v = Some(j.clone());
            for k in p {
                v = v.and_then(|x| x.get(k).cloned());
            }
            v.map(|x| x.to_value())
        };
        for t in texts {
            let whole = Json::parse(t).expect("parses");
            let guided = Json::parse_guided(t, &trie).expect("parses guided");
            for p in &paths {
                // Every prefix too: a path's way answers as the whole tree's where it continues.
                assert_eq!(lookup(&guided, p), lookup(&whole, p), "{t} at {p:?}");
            }
        }
        assert_eq!(Json::parse_guided("{not json", &trie), None);
        assert_eq!(
            Json::parse_guided(r#"{"a": 1}"#, &PathTrie::default()),
            Some(Json::Null),
            "no path: not parsed at all"
        );
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
