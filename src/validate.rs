//! Field validation for request bodies, with authentik's (Django REST framework's) messages
//! and its `ValidationError` shape: `{"field": ["message", ...], "non_field_errors": [...]}`.

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
pub const NON_FIELD: &str = "non_field_errors";

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

    /// A string field; `blank` allows "".
    pub fn string(&mut self, key: &str, nullable: bool, blank: bool) -> Field<String> {
        match self.raw(key, nullable) {
            Some(Field::Set(Value::String(s))) => {
                if s.is_empty() && !blank {
                    self.errors.add(key, NOT_BLANK);
                    Field::Absent
                } else {
                    Field::Set(s.clone())
                }
            }
            Some(Field::Set(_)) => {
                self.errors.add(key, NOT_STRING);
                Field::Absent
            }
            Some(Field::Null) => Field::Null,
            _ => Field::Absent,
        }
    }

    pub fn boolean(&mut self, key: &str) -> Field<bool> {
        match self.raw(key, false) {
            Some(Field::Set(Value::Bool(b))) => Field::Set(*b),
            Some(Field::Set(_)) => {
                self.errors.add(key, NOT_BOOL);
                Field::Absent
            }
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
            Some(Field::Set(Value::String(s))) if accepted(s) => Field::Set(s.clone()),
            Some(Field::Set(v)) => {
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.errors
                    .add(key, format!("\"{shown}\" is not a valid choice."));
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

    /// An integer within the range of authentik's 32-bit IntegerField.
    pub fn int32(&mut self, key: &str) -> Field<i64> {
        match self.raw(key, false) {
            Some(Field::Set(Value::Number(n))) => match n.as_i64() {
                Some(i) if i > i32::MAX as i64 => {
                    self.errors.add(
                        key,
                        format!("Ensure this value is less than or equal to {}.", i32::MAX),
                    );
                    Field::Absent
                }
                Some(i) if i < i32::MIN as i64 => {
                    self.errors.add(
                        key,
                        format!(
                            "Ensure this value is greater than or equal to {}.",
                            i32::MIN
                        ),
                    );
                    Field::Absent
                }
                Some(i) => Field::Set(i),
                None => {
                    self.errors.add(key, NOT_INT);
                    Field::Absent
                }
            },
            Some(Field::Set(_)) => {
                self.errors.add(key, NOT_INT);
                Field::Absent
            }
            _ => Field::Absent,
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
            json!({"s": "", "n": null, "t": 5, "b": "yes", "c": "nope", "u": "x",
                            "i": 1.5, "big": 4294967296i64}),
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
        r.require("missing", &Field::<String>::Absent, true);
        assert_eq!(
            r.errors.to_value(),
            json!({
                "s": [NOT_BLANK], "n": [NOT_NULL], "t": [NOT_STRING], "b": [NOT_BOOL],
                "c": ["\"nope\" is not a valid choice."], "u": [NOT_UUID], "i": [NOT_INT],
                "big": ["Ensure this value is less than or equal to 2147483647."],
                "missing": [REQUIRED]
            })
        );
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
