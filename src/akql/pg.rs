//! What PostgreSQL (locale C.UTF-8, time zone UTC) does with the values authentik's query
//! compiles to: `UPPER`, the text of `jsonb` and `timestamptz`, the order of `jsonb` and
//! `inet`. Measured on PostgreSQL 15 (see `../shared/akql-cases.json`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::IpAddr;

/// `UPPER(x)` under C.UTF-8: each character on its own (glibc `towupper`), so a character
/// whose upper case is several characters (`ß`) stays as it is.
pub fn upper(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_lowercase()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(upper_char).collect())
}

fn upper_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let mut u = c.to_uppercase();
    match (u.next(), u.next()) {
        (Some(one), None) => one,
        _ => c,
    }
}

/// The text `~` and friends see for a JSON value: a string's content, a number as written,
/// `true`/`false`, objects and arrays as PostgreSQL prints `jsonb`. `None` for JSON null
/// (SQL NULL: the operator and its negation both fail).
pub fn json_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Array(_) | Value::Object(_) => {
            let mut out = String::new();
            jsonb_out(v, &mut out);
            Some(Cow::Owned(out))
        }
    }
}

/// `jsonb_out`: object keys shortest first, then by bytes; `", "` and `": "` separators.
pub fn jsonb_out(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                jsonb_out(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_string(k, out);
                out.push_str(": ");
                if let Some(x) = o.get(k) {
                    jsonb_out(x, out);
                }
            }
            out.push('}');
        }
    }
}

/// PostgreSQL's `escape_json`.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The `jsonb` order of a value against a string: an empty array < null < strings (code
/// point) < numbers < booleans < other arrays < objects.
pub fn jsonb_cmp_str(v: &Value, s: &str) -> Ordering {
    let rank = |v: &Value| match v {
        Value::Array(a) if a.is_empty() => 0,
        Value::Null => 1,
        Value::String(_) => 2,
        Value::Number(_) => 3,
        Value::Bool(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    };
    match v {
        Value::String(x) => x.as_str().cmp(s),
        other => rank(other).cmp(&2),
    }
}

/// `inet` order for host addresses: IPv4 before IPv6, then the address.
pub fn inet_cmp(a: &IpAddr, b: &IpAddr) -> Ordering {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => x.cmp(y),
        (IpAddr::V6(x), IpAddr::V6(y)) => x.cmp(y),
        (IpAddr::V4(_), IpAddr::V6(_)) => Ordering::Less,
        (IpAddr::V6(_), IpAddr::V4(_)) => Ordering::Greater,
    }
}

/// The text of a `timestamptz` in UTC: `2024-09-13 14:05:42.17+00` (microseconds, trailing
/// zeros dropped, no fraction when whole).
pub fn timestamptz_text(t: &DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.nanosecond() / 1000;
    if micros > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str("+00");
    s
}

/// PostgreSQL keeps microseconds: the instant a stored `created` compares as.
pub fn to_micros(t: &DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.nanosecond();
    let rounded = (nanos + 500) / 1000 * 1000;
    if rounded >= 1_000_000_000 {
        // 999_999_500 ns and above round up into the next second.
        let base = t.with_nanosecond(0).unwrap_or(*t);
        return base + chrono::Duration::seconds(1);
    }
    t.with_nanosecond(rounded).unwrap_or(*t)
}

/// djangoql's `DateTimeField` value: Python `strptime` with `%Y-%m-%d %H:%M:%S`,
/// `%Y-%m-%d %H:%M` or `%Y-%m-%d` (in UTC). `strptime` takes one or two digits for every
/// field but the year.
pub fn parse_query_time(s: &str) -> Option<DateTime<Utc>> {
    let (date, time) = match s.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(y)? as i32, short(m)?, short(day)?)?;
    let time = match time {
        None => NaiveTime::MIN,
        Some(t) => {
            let parts: Vec<&str> = t.split(':').collect();
            let (h, mi, sec) = match parts.as_slice() {
                [h, m] => (short(h)?, short(m)?, 0),
                [h, m, s] => (short(h)?, short(m)?, short(s)?),
                _ => return None,
            };
            NaiveTime::from_hms_opt(h, mi, sec)?
        }
    };
    Some(NaiveDateTime::new(date, time).and_utc())
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn short(s: &str) -> Option<u32> {
    if s.len() > 2 {
        return None;
    }
    digits(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upper_is_per_character() {
        assert_eq!(upper("élodie"), "ÉLODIE");
        assert_eq!(upper("straße"), "STRAßE");
        assert!(matches!(upper("ABC.1"), Cow::Borrowed(_)));
    }

    #[test]
    fn jsonb_text_orders_keys_by_length_then_bytes() {
        let v = json!({"path": "/x", "args": {}, "method": "GET", "a\"b": [1, true, null, "é"]});
        assert_eq!(
            json_text(&v).unwrap(),
            r#"{"a\"b": [1, true, null, "é"], "args": {}, "path": "/x", "method": "GET"}"#
        );
        assert_eq!(json_text(&json!("x")).unwrap(), "x");
        assert_eq!(json_text(&json!(0.75)).unwrap(), "0.75");
        assert!(json_text(&Value::Null).is_none());
    }

    #[test]
    fn jsonb_order() {
        assert_eq!(jsonb_cmp_str(&json!([]), "a"), Ordering::Less);
        assert_eq!(jsonb_cmp_str(&Value::Null, ""), Ordering::Less);
        assert_eq!(jsonb_cmp_str(&json!("b"), "a"), Ordering::Greater);
        assert_eq!(jsonb_cmp_str(&json!(1), "zzz"), Ordering::Greater);
        assert_eq!(jsonb_cmp_str(&json!({}), "a"), Ordering::Greater);
    }

    #[test]
    fn timestamps() {
        let t = DateTime::parse_from_rfc3339("2024-09-13T14:05:42.170Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamptz_text(&t), "2024-09-13 14:05:42.17+00");
        let whole = t.with_nanosecond(0).unwrap();
        assert_eq!(timestamptz_text(&whole), "2024-09-13 14:05:42+00");
        assert_eq!(
            parse_query_time("2024-09-13 14:06"),
            Some(
                DateTime::parse_from_rfc3339("2024-09-13T14:06:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        assert!(
            parse_query_time("2024-9-1").is_some(),
            "strptime: one digit"
        );
        for bad in [
            "2025-07",
            "2025-02-30",
            "2025-01-01T00:00",
            "2025-01-01 25:00",
            "",
        ] {
            assert!(parse_query_time(bad).is_none(), "{bad}");
        }
    }
}
