//! The guided parse's scanner: walks a JSON column's text once, builds the values where the
//! policy set's paths end ([`PathTrie`]), each into its slot, and jumps over everything else.
//!
//! Why by hand: a column's text was validated when its event was parsed (it is a
//! `serde_json::value::RawValue`), so skipping a value needs no validation at all: a string
//! is a search for its closing quote eight bytes at a time ([`swar`]), a container a count of
//! brackets outside strings.
//! serde's `IgnoredAny` validates every escape, number and UTF-8 sequence of what it skips, and
//! that was most of the AKQL matcher's parse time. What is built is built by serde_json (a value
//! where a path ends) or borrowed (keys and strings without escapes). On text that is not JSON
//! every slot is left empty; the scanner never panics.

use super::swar;
use super::tree::{Json, PathTrie};
use std::borrow::Cow;

/// The values of `text` (valid JSON) at the paths of `trie`, each into its slot of `out`
/// (`trie`'s slots `None` on entry; `out` may hold other tries' slots too): a path's value is
/// whole; a path that is missing (a step absent or not an object) leaves its slot `None`. A
/// repeated key counts by its last occurrence, as `jsonb` keeps it. Text that is not JSON
/// leaves every slot of `trie` `None`.
pub fn slots<'a>(text: &'a str, trie: &PathTrie, out: &mut [Option<Json<'a>>]) {
    if trie.is_empty() {
        return;
    }
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let ok = s.value(trie, out).is_some() && {
        s.ws();
        s.i == s.b.len()
    };
    if !ok {
        clear(trie, out);
    }
}

/// A key's child in the trie, with its position among the children ([`PathTrie::child_at`]).
type Child<'t> = Option<(usize, &'t PathTrie)>;

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

    fn value(&mut self, trie: &PathTrie, out: &mut [Option<Json<'a>>]) -> Option<()> {
        self.ws();
        if let Some(slot) = trie.slot() {
            let start = self.i;
            let escaped = self.skip_value()?;
            let v = whole(self.text.get(start..self.i)?, escaped)?;
            // A path that goes on below one that ends here (`context.geo` and
            // `context.geo.country`): looked up in the value just built.
            if trie.children().next().is_some() {
                fill_below(&v, trie, out);
            }
            *out.get_mut(slot as usize)? = Some(v);
            return Some(());
        }
        if self.peek()? == b'{' {
            return self.object(trie, out);
        }
        // Not an object: every path below is missing.
        self.skip_value().map(|_| ())
    }

    fn object(&mut self, trie: &PathTrie, out: &mut [Option<Json<'a>>]) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        // The children met so far in this object (the first 64; any further one is cleared
        // whenever it is met).
        let mut met = 0u64;
        loop {
            self.ws();
            let child = self.key(trie)?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            match child {
                Some((at, t)) => {
                    let bit = 1u64.checked_shl(at as u32).unwrap_or(0);
                    if met & bit != 0 || bit == 0 {
                        // A repeated key replaces what its earlier occurrence filled in.
                        clear(t, out);
                    }
                    met |= bit;
                    self.value(t, out)?;
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
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The key at the cursor, as `trie`'s child (with its position) or `None` when `trie`
    /// has no such child (the outer `None`: not a string). A key without escapes is compared
    /// as the bytes between its quotes; one with escapes is unescaped by serde_json first.
    fn key<'t>(&mut self, trie: &'t PathTrie) -> Option<Child<'t>> {
        let start = self.i;
        if self.skip_string()? {
            let key: String = serde_json::from_str(self.text.get(start..self.i)?).ok()?;
            return Some(trie.child_at(key.as_bytes()));
        }
        Some(trie.child_at(self.b.get(start + 1..self.i - 1)?))
    }

    /// Moves past the string at the cursor; whether it had an escape. Inlined into its three
    /// callers: called for every key and most values, its call cost ~13 instructions.
    #[inline(always)]
    fn skip_string(&mut self) -> Option<bool> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let mut escaped = false;
        loop {
            self.i += quote_or_backslash(self.b.get(self.i..)?)?;
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

    /// Moves past the value at the cursor; whether it is a string with an escape.
    #[inline(always)]
    fn skip_value(&mut self) -> Option<bool> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => self.skip_container().map(|_| false),
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
                Some(false)
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

/// The index of the first `"` or `\\` in `b`, eight bytes at a time ([`swar`]): an event's
/// strings are mostly shorter than the 16 bytes below which `memchr2` falls back to a byte
/// loop, and its call cost more than such a string's whole search.
fn quote_or_backslash(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = swar::word(b, i) {
        let hits =
            swar::zero_bytes(w ^ swar::splat(b'"')) | swar::zero_bytes(w ^ swar::splat(b'\\'));
        if hits != 0 {
            return Some(i + swar::first(hits));
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|j| i + j)
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

/// Empties the slots of `trie`'s paths.
fn clear(trie: &PathTrie, out: &mut [Option<Json<'_>>]) {
    if let Some(v) = trie.slot().and_then(|s| out.get_mut(s as usize)) {
        *v = None;
    }
    for (_, t) in trie.children() {
        clear(t, out);
    }
}

/// Fills the slots of the paths below `trie` from `v`, the value at `trie` (built whole).
fn fill_below<'a>(v: &Json<'a>, trie: &PathTrie, out: &mut [Option<Json<'a>>]) {
    for (k, t) in trie.children() {
        match v.get(k) {
            Some(x) => {
                if let Some(slot) = t.slot().and_then(|s| out.get_mut(s as usize)) {
                    *slot = Some(x.clone());
                }
                fill_below(x, t, out);
            }
            None => clear(t, out),
        }
    }
}

/// A value where a path ends, whole (`escaped`: a string with an escape). A string without
/// escapes is borrowed as it is, an integer read in place; anything else is parsed by
/// serde_json.
fn whole(raw: &str, escaped: bool) -> Option<Json<'_>> {
    let b = raw.as_bytes();
    if !escaped && b.len() >= 2 && b[0] == b'"' {
        return raw
            .get(1..raw.len() - 1)
            .map(|s| Json::String(Cow::Borrowed(s)));
    }
    // Small non-negative integers (an object's `pk`): what serde_json would make of them.
    if (1..=18).contains(&b.len())
        && b.iter().all(u8::is_ascii_digit)
        && (b[0] != b'0' || b.len() == 1)
    {
        return raw.parse::<u64>().ok().map(|n| Json::Number(n.into()));
    }
    Json::parse(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATHS: &[&[&str]] = &[
        &["a", "b"],
        &["a", "c"],
        &["a", "b", "deep"],
        &["a"],
        &["e", "f", "g"],
        &["h"],
        &["k\"q", "x"],
        &["é"],
    ];

    /// The trie of [`PATHS`] and each path's slot.
    fn trie() -> (PathTrie, Vec<u32>) {
        let mut t = PathTrie::default();
        let mut next = 0;
        let slots = PATHS
            .iter()
            .map(|p| {
                t.insert(
                    &p.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                    &mut next,
                )
            })
            .collect();
        (t, slots)
    }

    /// The reference: the whole tree, looked up key by key.
    fn lookup<'a>(j: &Json<'a>, p: &[&str]) -> Option<Json<'a>> {
        let mut v = j;
        for k in p {
            v = v.get(k)?;
        }
        Some(v.clone())
    }

    /// Each path's slot holds what a lookup on the whole tree finds (`None`: missing).
    fn agrees(text: &str) -> Result<(), String> {
        let (t, at) = trie();
        let mut out = vec![None; PATHS.len()];
        slots(text, &t, &mut out);
        let whole = Json::parse(text);
        for (p, &slot) in PATHS.iter().zip(&at) {
            let want = whole.as_ref().and_then(|w| lookup(w, p));
            if out[slot as usize] != want {
                return Err(format!(
                    "{text} at {p:?}: {:?} != {want:?}",
                    out[slot as usize]
                ));
            }
        }
        Ok(())
    }

    #[test]
    fn each_slot_holds_what_a_lookup_on_the_whole_tree_finds() {
        for text in [
            r#"{"a": {"b": 1, "c": [1, {"d": 2}]}, "x": "skip", "a": {"b": "last"}}"#,
            r#" { "a" : 5 , "e" : { "f" : { "g" : null } } , "h" : [ { "a" : 1 } ] } "#,
            r#"{"skip": {"deep": ["]}", "\"{", {"x": [[], {}]}]}, "a": {"b": {"deep": [true]}}}"#,
            r#"{"k\"q": {"x": "esc\"aped"}, "\u00e9": -1.5e3, "s": "a\\"}"#,
            r#"{"h": "with \\ backslash and \n", "a": {"b": "\u0041"}}"#,
            r#"{"h": "a string longer than sixteen bytes \" with an escape after", "é": 0}"#,
            r#"{"a": {"b": {"deep": 1}}, "a": {"c": 2}}"#,
            // Repeats inside a nested object: the later occurrence wins, and a path below
            // the earlier one is gone when the later one has no such key.
            r#"{"a": {"b": {"deep": 1}, "c": 3, "b": "flat"}, "e": {"f": 1, "f": {"g": 2}}}"#,
            r#"{"a": {"c": 1, "b": 2, "c": 3, "b": {"deep": 4}, "c": 5}}"#,
            r#"{"e": {"f": {"g": 2}, "x": 0, "f": 1}}"#,
            r#"{"e": {"f": {"g": 1}}, "h": 0, "e": 2}"#,
            r#"{"a": {}, "e": [], "h": {}, "é": 012345}"#,
            r#"{"é": 123456789012345678901234567890, "h": 18}"#,
            r#"{}"#,
            r#"[{"a": 1}]"#,
            r#""text""#,
            r#"12"#,
        ] {
            agrees(text).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn text_that_is_not_json_fills_nothing_and_never_panics() {
        let (t, _) = trie();
        for text in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\": {\"b\": \"x",
            "{\"h\": [1, 2",
            "{\"a\" 1}",
            "{\"h\": \"0123456789abcdefghij",
            "{\"é\": 1} x",
            "}",
            "\"\\",
        ] {
            let mut out = vec![None; PATHS.len()];
            slots(text, &t, &mut out);
            assert!(out.iter().all(Option::is_none), "{text:?}: {out:?}");
        }
    }

    /// The matcher keeps every column's slots in one list: text that is not JSON empties
    /// only its own trie's slots, not another column's.
    #[test]
    fn text_that_is_not_json_leaves_other_slots_alone() {
        let (t, _) = trie();
        let mut out = vec![Some(Json::Bool(true)); PATHS.len() + 1];
        slots("{\"a\": ", &t, &mut out);
        assert!(out[..PATHS.len()].iter().all(Option::is_none), "{out:?}");
        assert_eq!(out[PATHS.len()], Some(Json::Bool(true)));
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[a-z\"\\\\{}\\[\\] é\n]{0,24}".prop_map(serde_json::Value::from),
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
        /// The word-at-a-time search finds what a byte loop finds, at every alignment and
        /// with bytes that differ from `"`/`\\` by one bit or sit next to a zero byte (where
        /// the borrow trick can flag falsely).
        #[test]
        fn quote_search_agrees_with_a_byte_loop(
            b in proptest::collection::vec(prop_oneof![
                Just(b'"'), Just(b'\\'), Just(0u8), Just(1u8), Just(b'"' ^ 1), Just(b'\\' ^ 0x80),
                any::<u8>()
            ], 0..40),
            skip in 0usize..8,
        ) {
            let b = b.get(skip.min(b.len())..).unwrap_or_default();
            let want = b.iter().position(|&c| c == b'"' || c == b'\\');
            prop_assert_eq!(quote_or_backslash(b), want);
        }

        #[test]
        fn slots_agree_with_lookups_on_the_whole_tree(v in json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.expect("json");
            prop_assert!(agrees(&text).is_ok(), "{:?}", agrees(&text));
        }

        /// Repeated keys (which serde_json's `Value` cannot hold): the last one counts.
        #[test]
        fn repeated_keys_count_by_the_last(a in json(), b in json(), c in json()) {
            let text = format!(
                r#"{{"a": {}, "e": {}, "a": {}, "h": {{"a": 1}}}}"#,
                a, b, c
            );
            prop_assert!(agrees(&text).is_ok(), "{:?}", agrees(&text));
        }
    }
}
