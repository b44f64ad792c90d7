//! Python's `repr` of decoded JSON.
//!
//! authentik builds a notification body as `f"{event.action}: {event.context}"`, which formats
//! the context dict with Python's `repr`. Operators match on those strings downstream, so the
//! rendering has to be Python's to the byte: quote choice and escapes of `str.__repr__`,
//! `True`/`False`/`None`, and `float.__repr__` (shortest round-trip digits, exponent form
//! outside `1e-4 <= |x| < 1e16`, a trailing `.0` on integral values).
//!
//! Known differences, both from how serde_json decodes numbers before we see them: JSON
//! integers outside the i64/u64 range become floats (Python keeps an exact int), and the
//! integer `-0` becomes the float `-0.0` (Python: `0`).

use serde_json::Value;
use std::fmt::Write;
use unicode_general_category::{get_general_category, GeneralCategory};

/// `repr(value)` as CPython 3 prints it for the value `json.loads` would return.
///
/// ```
/// let ctx = serde_json::json!({"user": "jane", "ok": false, "n": null, "big": 1e20, "q": "it's"});
/// assert_eq!(
///     eventmatchd::pyrepr::repr(&ctx),
///     r#"{'user': 'jane', 'ok': False, 'n': None, 'big': 1e+20, 'q': "it's"}"#
/// );
/// ```
pub fn repr(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_repr(&mut out, value);
    out
}

/// Appends `repr(value)` to `out`.
pub fn write_repr(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                write_float(out, f);
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, k);
                out.push_str(": ");
                write_repr(out, v);
            }
            out.push('}');
        }
    }
}

/// `str(value)`: a string is itself, anything else its `repr` (true for every JSON type).
pub fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// CPython's `unicode_repr`.
pub fn write_str(out: &mut String, s: &str) {
    // Single quotes unless the text has a single quote and no double quote.
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    // Printable ASCII other than the quote and backslash is copied in runs; everything else
    // goes through the character rules below.
    let mut run = 0;
    for (i, ch) in s.char_indices() {
        let c = ch as u32;
        if (0x20..0x7f).contains(&c) && ch != quote && ch != '\\' {
            continue;
        }
        out.push_str(&s[run..i]);
        run = i + ch.len_utf8();
        match ch {
            c if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push_str(&s[run..]);
    out.push(quote);
}

/// `str.isprintable` for one non-ASCII character: everything but the "Other" and
/// "Separator" general categories (the ASCII space is handled by the caller).
fn is_printable(c: char) -> bool {
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

/// CPython's `float_repr`: `PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0)`.
pub fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    // Rust's `{:e}` prints the shortest digit string that round-trips, as CPython's repr does;
    // only the placement of the decimal point differs.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let ndigits = digits.len() as i32;
    // Position of the decimal point relative to the start of `digits`.
    let decpt = exp + 1;
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if ndigits > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else if decpt < ndigits {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    } else {
        out.push_str(&digits);
        for _ in 0..(decpt - ndigits) {
            out.push('0');
        }
        out.push_str(".0");
    }
}

/// Appends `repr(json.loads(json))` to `out` straight from the JSON text, without building a
/// `Value` (the event path renders a body this way: one pass, no allocation per key or
/// string). Returns false, with `out` left as it was, when the text is not valid JSON or an
/// object repeats a key: Python keeps the first position and the last value of a repeated
/// key, which only a decoded map can reproduce, so the caller then uses [`write_repr`].
pub fn write_repr_json(out: &mut String, json: &str) -> bool {
    let start = out.len();
    let mut de = serde_json::Deserializer::from_str(json);
    let ok = serde::de::DeserializeSeed::deserialize(Transcode { out: &mut *out }, &mut de)
        .and_then(|()| de.end())
        .is_ok();
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Writes the repr of whatever it is given while serde_json parses it.
struct Transcode<'o> {
    out: &'o mut String,
}

impl<'de> serde::de::DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push_str("None");
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "True" } else { "False" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        write_float(self.out, v);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_str(self.out, v);
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push('[');
        let mut first = true;
        loop {
            if !first {
                // Written before knowing whether an element follows; taken back at the end.
                self.out.push_str(", ");
            }
            if seq
                .next_element_seed(Transcode {
                    out: &mut *self.out,
                })?
                .is_none()
            {
                if !first {
                    self.out.truncate(self.out.len() - 2);
                }
                break;
            }
            first = false;
        }
        self.out.push(']');
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        self.out.push('{');
        // Repeated keys are found with a linear scan while the object is small (most are), and
        // with a hash set past that, so a context with many keys stays linear overall.
        const SCAN: usize = 16;
        let mut keys: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        let mut seen: std::collections::HashSet<std::borrow::Cow<'de, str>> =
            std::collections::HashSet::new();
        let mut count = 0usize;
        while let Some(key) = map.next_key_seed(Key)? {
            let repeated = if count < SCAN {
                keys.contains(&key)
            } else {
                if seen.is_empty() {
                    seen.extend(keys.drain(..));
                }
                seen.contains(&key)
            };
            if repeated {
                return Err(A::Error::custom("repeated key"));
            }
            if count > 0 {
                self.out.push_str(", ");
            }
            write_str(self.out, &key);
            self.out.push_str(": ");
            if count < SCAN {
                keys.push(key);
            } else {
                seen.insert(key);
            }
            count += 1;
            map.next_value_seed(Transcode {
                out: &mut *self.out,
            })?;
        }
        self.out.push('}');
        Ok(())
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each case: JSON text, and what CPython 3.11 printed for `repr(json.loads(text))`
    /// (produced once with `python3 -c 'import json,sys; print(repr(json.loads(...)))'`).
    const CASES: &[(&str, &str)] = include!("../../tests/data/pyrepr_cases.in");

    #[test]
    fn matches_cpython_for_every_recorded_case() {
        let mut failures = Vec::new();
        for (json_text, expected) in CASES {
            let v: Value = serde_json::from_str(json_text).expect("case is valid JSON");
            let got = repr(&v);
            if got != *expected {
                failures.push(format!("{json_text}: got {got:?}, want {expected:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(CASES.len() > 40, "the case table was truncated");
    }

    #[test]
    fn streaming_repr_matches_the_decoded_one_for_every_recorded_case() {
        for (json_text, expected) in CASES {
            let mut got = String::from("x");
            assert!(write_repr_json(&mut got, json_text), "{json_text}");
            assert_eq!(&got[1..], *expected, "{json_text}");
        }
    }

    #[test]
    fn streaming_repr_declines_repeated_keys_and_bad_json() {
        for text in [
            r#"{"a": 1, "b": 2, "a": 3}"#,
            r#"{"a": [1, {"x": 1, "x": 2}]}"#,
            "{",
            "[1,]",
            "1 2",
        ] {
            let mut out = String::from("kept");
            assert!(!write_repr_json(&mut out, text), "{text}");
            assert_eq!(out, "kept", "{text}");
        }
        // What the fallback prints for a repeated key: first position, last value.
        let v: Value = serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).expect("valid");
        assert_eq!(repr(&v), "{'a': 3, 'b': 2}");
    }

    /// Issue 9 item 7: many keys (past the linear-scan size) are checked through a set; a
    /// repeat anywhere is still found, and distinct keys still render.
    #[test]
    fn many_keys_are_checked_for_repeats() {
        let keys: Vec<String> = (0..500).map(|i| format!("\"k{i}\": {i}")).collect();
        let text = format!("{{{}}}", keys.join(", "));
        let mut out = String::new();
        assert!(write_repr_json(&mut out, &text));
        let v: Value = serde_json::from_str(&text).expect("valid");
        assert_eq!(out, repr(&v));
        for dup in ["k3", "k20", "k499"] {
            let text = format!("{{{}, \"{dup}\": 0}}", keys.join(", "));
            let mut out = String::new();
            assert!(!write_repr_json(&mut out, &text), "{dup}");
        }
    }

    #[test]
    fn dict_keeps_key_order_of_the_input() {
        let v: Value = serde_json::from_str(r#"{"z": 1, "a": 2, "m": {"y": null, "b": true}}"#)
            .expect("valid");
        assert_eq!(repr(&v), "{'z': 1, 'a': 2, 'm': {'y': None, 'b': True}}");
    }

    #[test]
    fn str_of_a_string_is_unquoted() {
        assert_eq!(python_str(&json!("it's")), "it's");
        assert_eq!(python_str(&json!(1.5)), "1.5");
        assert_eq!(python_str(&json!(null)), "None");
    }
}
