//! The guided parse's scanner: walks a JSON column's text once, builds the values on the
//! policy set's paths ([`PathTrie`]) and jumps over everything else.
//!
//! Why by hand: a column's text was validated when its event was parsed (it is a
//! `serde_json::value::RawValue`), so skipping a value needs no validation at all: a string
//! is a `memchr2` jump to its closing quote, a container a count of brackets outside strings.
//! serde's `IgnoredAny` validates every escape, number and UTF-8 sequence of what it skips, and
//! that was most of the AKQL matcher's parse time. What is built is built by serde_json (a value
//! where a path ends) or borrowed (keys and strings without escapes). On text that is not JSON
//! the scanner returns `None` or a partial tree; it never panics.

use super::tree::{Json, PathTrie};
use std::borrow::Cow;

/// The parts of `text` (valid JSON) on the paths of `trie`: objects along a path keep only the
/// keys of the trie (repeats included, in order), a value where a path ends is whole, and
/// anything that is not an object where a path goes on is `Null`.
pub fn guided<'a>(text: &'a str, trie: &PathTrie) -> Option<Json<'a>> {
    if trie.is_empty() {
        return Some(Json::Null);
    }
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let v = s.value(trie)?;
    s.ws();
    (s.i == s.b.len()).then_some(v)
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, trie: &PathTrie) -> Option<Json<'a>> {
        self.ws();
        if trie.capture() {
            let start = self.i;
            self.skip_value()?;
            return whole(self.text.get(start..self.i)?);
        }
        if self.peek()? == b'{' {
            return self.object(trie);
        }
        self.skip_value()?;
        Some(Json::Null)
    }

    fn object(&mut self, trie: &PathTrie) -> Option<Json<'a>> {
        self.i += 1;
        let mut pairs = Vec::new();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(Json::Object(pairs));
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            match trie.child(&key) {
                Some(t) => {
                    let v = self.value(t)?;
                    pairs.push((key, v));
                }
                None => {
                    self.ws();
                    self.skip_value()?;
                }
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(Json::Object(pairs));
                }
                _ => return None,
            }
        }
    }

    /// A string at the cursor: borrowed when it has no escapes, else unescaped by serde_json.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.i;
        let escaped = self.skip_string()?;
        let raw = self.text.get(start..self.i)?;
        if escaped {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            raw.get(1..raw.len() - 1).map(Cow::Borrowed)
        }
    }

    /// Moves past the string at the cursor; whether it had an escape.
    fn skip_string(&mut self) -> Option<bool> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let mut escaped = false;
        loop {
            let j = memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            self.i += j;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Some(escaped);
            }
            escaped = true;
            // The escaped character; past the end is not JSON.
            self.i += 2;
            if self.i > self.b.len() {
                return None;
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string().map(|_| ()),
            b'{' | b'[' => self.skip_container(),
            _ => {
                // A number or a literal: up to the next delimiter.
                let rest = &self.b[self.i..];
                let n = rest
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(rest.len());
                if n == 0 {
                    return None;
                }
                self.i += n;
                Some(())
            }
        }
    }

    fn skip_container(&mut self) -> Option<()> {
        let mut depth = 0usize;
        while let Some(&c) = self.b.get(self.i) {
            match STRUCTURAL[c as usize] {
                0 => {}
                QUOTE => {
                    self.skip_string()?;
                    continue;
                }
                OPEN => depth += 1,
                _ => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Some(());
                    }
                }
            }
            self.i += 1;
        }
        None
    }
}

const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;

/// The bytes a skipped container's scan stops at, by class.
static STRUCTURAL: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = QUOTE;
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t
};

/// A value where a path ends, whole. A string without escapes is borrowed as it is; anything
/// else is parsed by serde_json.
fn whole(raw: &str) -> Option<Json<'_>> {
    let b = raw.as_bytes();
    if b.len() >= 2 && b[0] == b'"' && !b[1..b.len() - 1].contains(&b'\\') {
        return Some(Json::String(Cow::Borrowed(&raw[1..raw.len() - 1])));
    }
    Json::parse(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn trie(paths: &[&[&str]]) -> PathTrie {
        let mut t = PathTrie::default();
        for p in paths {
            t.insert(&p.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        }
        t
    }

    const PATHS: &[&[&str]] = &[
        &["a", "b"],
        &["a", "c"],
        &["a", "b", "deep"],
        &["e", "f", "g"],
        &["h"],
        &["k\"q", "x"],
        &["é"],
    ];

    #[test]
    fn the_scanner_builds_what_the_serde_guided_parse_builds() {
        let t = trie(PATHS);
        for text in [
            r#"{"a": {"b": 1, "c": [1, {"d": 2}]}, "x": "skip", "a": {"b": "last"}}"#,
            r#" { "a" : 5 , "e" : { "f" : { "g" : null } } , "h" : [ { "a" : 1 } ] } "#,
            r#"{"skip": {"deep": ["]}", "\"{", {"x": [[], {}]}]}, "a": {"b": {"deep": [true]}}}"#,
            r#"{"k\"q": {"x": "esc\"aped"}, "\u00e9": -1.5e3, "s": "a\\"}"#,
            r#"{"h": "with \\ backslash and \n", "a": {"b": "\u0041"}}"#,
            r#"{"a": {}, "e": [], "h": {}}"#,
            r#"{}"#,
            r#"[{"a": 1}]"#,
            r#""text""#,
            r#"12"#,
        ] {
            assert_eq!(guided(text, &t), Json::parse_guided(text, &t), "{text}");
        }
    }

    #[test]
    fn text_that_is_not_json_never_panics() {
        let t = trie(PATHS);
        for text in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\": {\"b\": \"x",
            "{\"h\": [1, 2",
            "{\"a\" 1}",
            "}",
            "\"\\",
        ] {
            assert_eq!(guided(text, &t), None, "{text:?}");
        }
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[a-z\"\\\\{}\\[\\] é\n]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "a", "b", "c", "e", "f", "g", "h", "deep", "k\"q", "é", "z"
                        ]),
                        inner
                    ),
                    0..5
                )
                .prop_map(|kv| serde_json::Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_the_serde_guided_parse(v in json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.expect("json");
            let t = trie(PATHS);
            prop_assert_eq!(guided(&text, &t), Json::parse_guided(&text, &t));
        }
    }
}
