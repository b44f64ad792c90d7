//! Field validation for request bodies, with authentik's (Django REST framework's) messages
//! and its `ValidationError` shape: `{"field": ["message", ...], "non_field_errors": [...]}`.

use crate::pyrepr::python_str;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const REQUIRED: &str = "This field is required.";
pub const NOT_NULL: &str = "This field may not be null.";
pub const NOT_BLANK: &str = "This field may not be blank.";
pub const NOT_STRING: &str = "Not a valid string.";
pub const NOT_BOOL: &str = "Must be a valid boolean.";
pub const NOT_UUID: &str = "Must be a valid UUID.";
pub const NOT_INT: &str = "A valid integer is required.";
pub const NOT_NUL: &str = "Null characters are not allowed.";
pub const NON_FIELD: &str = "non_field_errors";

/// Python's `str.isspace()`: Unicode White_Space plus the four information separators
/// (U+001C..U+001F), which Python counts and Rust does not.
pub fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(python_space)
}

/// DRF `BooleanField.TRUE_VALUES` / `FALSE_VALUES` (`1.0 == 1` in Python, so it is true too).
pub fn drf_bool(v: &Value) -> Option<bool> {
    const TRUE: &[&str] = &[
        "t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1",
    ];
    const FALSE: &[&str] = &[
        "f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "0",
    ];
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if TRUE.contains(&s.as_str()) => Some(true),
        Value::String(s) if FALSE.contains(&s.as_str()) => Some(false),
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f == 1.0 {
                Some(true)
            } else if f == 0.0 {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// DRF `IntegerField.to_internal_value` on `str(data)`: strip `\.0*\s*$`, then Python's
/// `int()` (surrounding whitespace, a sign, ASCII digits with single `_` between digits).
pub fn python_int(text: &str) -> Option<i128> {
    // re_decimal = r"\.0*\s*$": a dot, zeros, then whitespace up to the end.
    let mut t = text.trim_end_matches(python_space);
    let without_zeros = t.trim_end_matches('0');
    if let Some(stripped) = without_zeros.strip_suffix('.') {
        t = stripped;
    }
    let t = python_strip(t);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let mut n: i128 = 0;
    for b in digits.bytes().filter(u8::is_ascii_digit) {
        n = n.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    Some(if neg { -n } else { n })
}

/// One field of a request body: absent, sent as `null`, or sent with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<T> {
    Absent,
    Null,
    Set(T),
}

impl<T> Field<T> {
    /// The PATCH rule for a nullable field: absent keeps `current`, null clears, a value sets.
    pub fn patch_nullable(self, current: Option<T>) -> Option<T> {
        match self {
            Field::Absent => current,
            Field::Null => None,
            Field::Set(v) => Some(v),
        }
    }

    /// For a non-nullable field (null was already rejected): absent keeps `current`.
    pub fn patch(self, current: T) -> T {
        match self {
            Field::Set(v) => v,
            _ => current,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }

    pub fn is_set(&self) -> bool {
        matches!(self, Field::Set(_))
    }
}

/// Collects field errors; empty means valid.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Errors(BTreeMap<String, Vec<String>>);

impl Errors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_value(&self) -> Value {
        let map: Map<String, Value> = self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        Value::Object(map)
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// A single non-field error.
    pub fn non_field(message: impl Into<String>) -> Errors {
        let mut e = Errors::default();
        e.add(NON_FIELD, message);
        e
    }

    /// A single error on one field.
    pub fn single(field: &str, message: impl Into<String>) -> Errors {
        let mut e = Errors::default();
        e.add(field, message);
        e
    }
}

/// The Python type name DRF reports for a value that is not a dict.
pub fn python_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Reads fields of one body, recording each problem under its field name.
pub struct Reader<'a> {
    body: &'a Map<String, Value>,
    pub errors: Errors,
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a Map<String, Value>) -> Self {
        Self {
            body,
            errors: Errors::default(),
        }
    }

    fn raw(&mut self, key: &str, nullable: bool) -> Option<Field<&'a Value>> {
        match self.body.get(key) {
            None => Some(Field::Absent),
            Some(Value::Null) if nullable => Some(Field::Null),
            Some(Value::Null) => {
                self.errors.add(key, NOT_NULL);
                None
            }
            Some(v) => Some(Field::Set(v)),
        }
    }

    /// A string field as DRF's `CharField` reads it: a string, or a number (turned into
    /// Python's `str` of it); surrounding whitespace trimmed; `blank` allows "" (and only
    /// whitespace); NUL characters refused.
    pub fn string(&mut self, key: &str, nullable: bool, blank: bool) -> Field<String> {
        self.string_max(key, nullable, blank, None)
    }

    /// [`Reader::string`] with DRF's `max_length` (counted in characters after trimming).
    pub fn string_max(
        &mut self,
        key: &str,
        nullable: bool,
        blank: bool,
        max_length: Option<usize>,
    ) -> Field<String> {
        let text = match self.raw(key, nullable) {
            Some(Field::Set(Value::String(s))) => s.clone(),
            Some(Field::Set(v @ Value::Number(_))) => python_str(v),
            Some(Field::Set(_)) => {
                self.errors.add(key, NOT_STRING);
                return Field::Absent;
            }
            Some(Field::Null) => return Field::Null,
            _ => return Field::Absent,
        };
        let trimmed = python_strip(&text);
        if trimmed.is_empty() {
            if !blank {
                self.errors.add(key, NOT_BLANK);
                return Field::Absent;
            }
            return Field::Set(String::new());
        }
        let mut ok = true;
        if let Some(max) = max_length {
            if trimmed.chars().count() > max {
                self.errors.add(
                    key,
                    format!("Ensure this field has no more than {max} characters."),
                );
                ok = false;
            }
        }
        if trimmed.contains('\0') {
            self.errors.add(key, NOT_NUL);
            ok = false;
        }
        if ok {
            Field::Set(trimmed.to_string())
        } else {
            Field::Absent
        }
    }

    /// A boolean as DRF's `BooleanField` reads it: JSON booleans, the numbers 1 and 0, and
    /// the strings of its `TRUE_VALUES` / `FALSE_VALUES` (`"true"`, `"1"`, `"yes"`, `"on"`...).
    pub fn boolean(&mut self, key: &str) -> Field<bool> {
        match self.raw(key, false) {
            Some(Field::Set(v)) => match drf_bool(v) {
                Some(b) => Field::Set(b),
                None => {
                    self.errors.add(key, NOT_BOOL);
                    Field::Absent
                }
            },
            _ => Field::Absent,
        }
    }

    /// A string that must be one of the accepted values.
    pub fn choice(
        &mut self,
        key: &str,
        nullable: bool,
        accepted: impl Fn(&str) -> bool,
    ) -> Field<String> {
        match self.raw(key, nullable) {
            // DRF looks a choice up by `str(data)`: `5` finds the choice "5", nothing is trimmed.
            Some(Field::Set(v)) => {
                let text = python_str(v);
                if accepted(&text) && !matches!(v, Value::Array(_) | Value::Object(_)) {
                    return Field::Set(text);
                }
                self.errors
                    .add(key, format!("\"{text}\" is not a valid choice."));
                Field::Absent
            }
            Some(Field::Null) => Field::Null,
            _ => Field::Absent,
        }
    }

    pub fn uuid(&mut self, key: &str, nullable: bool) -> Field<Uuid> {
        match self.raw(key, nullable) {
            Some(Field::Set(Value::String(s))) => match Uuid::parse_str(s) {
                Ok(u) => Field::Set(u),
                Err(_) => {
                    self.errors.add(key, NOT_UUID);
                    Field::Absent
                }
            },
            Some(Field::Set(_)) => {
                self.errors.add(key, NOT_UUID);
                Field::Absent
            }
            Some(Field::Null) => Field::Null,
            _ => Field::Absent,
        }
    }

    /// A list of uuids (a many-to-many field such as a rule's `transports`).
    pub fn uuid_list(&mut self, key: &str) -> Field<Vec<Uuid>> {
        match self.raw(key, false) {
            Some(Field::Set(Value::Array(items))) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str().map(Uuid::parse_str) {
                        Some(Ok(u)) => out.push(u),
                        _ => {
                            self.errors.add(key, NOT_UUID);
                            return Field::Absent;
                        }
                    }
                }
                Field::Set(out)
            }
            Some(Field::Set(v)) => {
                self.errors.add(
                    key,
                    format!(
                        "Expected a list of items but got type \"{}\".",
                        python_type(v)
                    ),
                );
                Field::Absent
            }
            _ => Field::Absent,
        }
    }

    /// An integer within the range of authentik's 32-bit IntegerField, as DRF's
    /// `IntegerField` reads it: `int(re.sub(r"\.0*\s*$", "", str(data)))`, so `5`, `5.0`,
    /// `"5"` and `" 5.00 "` are 5.
    pub fn int32(&mut self, key: &str) -> Field<i64> {
        self.int_range(key, i32::MIN as i64, i32::MAX as i64)
    }

    /// An integer in `min..=max` (DRF's `IntegerField` with min/max validators).
    pub fn int_range(&mut self, key: &str, min: i64, max: i64) -> Field<i64> {
        let v = match self.raw(key, false) {
            Some(Field::Set(v)) => v,
            _ => return Field::Absent,
        };
        if matches!(v, Value::String(s) if s.chars().count() > 1000) {
            self.errors.add(key, "String value too large.");
            return Field::Absent;
        }
        let parsed = match v {
            Value::String(_) | Value::Number(_) => python_int(&python_str(v)),
            _ => None,
        };
        match parsed {
            Some(i) if i > max as i128 => {
                self.errors.add(
                    key,
                    format!("Ensure this value is less than or equal to {max}."),
                );
                Field::Absent
            }
            Some(i) if i < min as i128 => {
                self.errors.add(
                    key,
                    format!("Ensure this value is greater than or equal to {min}."),
                );
                Field::Absent
            }
            Some(i) => Field::Set(i as i64),
            None => {
                self.errors.add(key, NOT_INT);
                Field::Absent
            }
        }
    }

    /// Records "required" for an absent field when the method needs it (POST, PUT).
    pub fn require<T>(&mut self, key: &str, field: &Field<T>, needed: bool) {
        if needed && field.is_absent() && !self.body.contains_key(key) {
            self.errors.add(key, REQUIRED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn absent_null_and_set_are_distinguished() {
        let b = body(json!({"a": null, "b": "x"}));
        let mut r = Reader::new(&b);
        assert_eq!(r.string("a", true, false), Field::Null);
        assert_eq!(r.string("b", true, false), Field::Set("x".into()));
        assert_eq!(r.string("c", true, false), Field::Absent);
        assert!(r.errors.is_empty());
        assert_eq!(Field::<i32>::Absent.patch_nullable(Some(1)), Some(1));
        assert_eq!(Field::<i32>::Null.patch_nullable(Some(1)), None);
        assert_eq!(Field::Set(2).patch_nullable(Some(1)), Some(2));
    }

    #[test]
    fn messages_are_drfs() {
        let b = body(
            json!({"s": "", "n": null, "t": true, "b": "maybe", "c": "nope", "u": "x",
                            "i": 1.5, "big": 4294967296i64, "w": "   ", "z": "a\u{0}b",
                            "l": "abcdef", "ib": true}),
        );
        let mut r = Reader::new(&b);
        r.string("s", false, false);
        r.string("n", false, false);
        r.string("t", false, false);
        r.boolean("b");
        r.choice("c", true, |v| v == "ok");
        r.uuid("u", false);
        r.int32("i");
        r.int32("big");
        r.string("w", true, false);
        r.string("z", false, false);
        r.string_max("l", false, false, Some(5));
        r.int32("ib");
        r.require("missing", &Field::<String>::Absent, true);
        assert_eq!(
            r.errors.to_value(),
            json!({
                "s": [NOT_BLANK], "n": [NOT_NULL], "t": [NOT_STRING], "b": [NOT_BOOL],
                "c": ["\"nope\" is not a valid choice."], "u": [NOT_UUID], "i": [NOT_INT],
                "big": ["Ensure this value is less than or equal to 2147483647."],
                "w": [NOT_BLANK], "z": [NOT_NUL],
                "l": ["Ensure this field has no more than 5 characters."],
                "ib": [NOT_INT],
                "missing": [REQUIRED]
            })
        );
    }

    /// DRF `fields.py`: CharField trims and takes numbers, BooleanField's TRUE/FALSE_VALUES,
    /// IntegerField's `re_decimal` and `int()`.
    #[test]
    fn drf_coercions() {
        let b = body(json!({
            "name": "  padded\t", "num": 5, "flt": 1.5, "big": 1e20,
            "t1": "true", "t2": "1", "t3": 1, "t4": "yes", "t5": "on", "t6": 1.0,
            "f1": "False", "f2": "0", "f3": 0, "f4": "no", "f5": "off",
            "i1": "5", "i2": 5.0, "i3": " 7.00 ", "i4": "-3", "i5": "1_000",
        }));
        let mut r = Reader::new(&b);
        assert_eq!(r.string("name", false, false), Field::Set("padded".into()));
        assert_eq!(r.string("num", false, false), Field::Set("5".into()));
        assert_eq!(r.string("flt", false, false), Field::Set("1.5".into()));
        assert_eq!(r.string("big", false, false), Field::Set("1e+20".into()));
        for k in ["t1", "t2", "t3", "t4", "t5", "t6"] {
            assert_eq!(r.boolean(k), Field::Set(true), "{k}");
        }
        for k in ["f1", "f2", "f3", "f4", "f5"] {
            assert_eq!(r.boolean(k), Field::Set(false), "{k}");
        }
        assert_eq!(r.int32("i1"), Field::Set(5));
        assert_eq!(r.int32("i2"), Field::Set(5));
        assert_eq!(r.int32("i3"), Field::Set(7));
        assert_eq!(r.int32("i4"), Field::Set(-3));
        assert_eq!(r.int32("i5"), Field::Set(1000));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        for bad in ["", "1.5", "1e3", "_1", "1__0", "0x10", "five"] {
            assert_eq!(python_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn python_type_names() {
        assert_eq!(python_type(&json!([])), "list");
        assert_eq!(python_type(&json!("s")), "str");
        assert_eq!(python_type(&json!(1)), "int");
        assert_eq!(python_type(&json!(1.5)), "float");
        assert_eq!(python_type(&json!(null)), "NoneType");
    }
}
