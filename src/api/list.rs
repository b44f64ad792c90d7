//! What every list route shares: query parameters as DRF reads them, authentik's pagination
//! (`authentik/api/pagination.py`), DRF's `OrderingFilter` and `SearchFilter`. Pure.

use super::ApiError;
use serde_json::{json, Value};
use std::cmp::Ordering;

/// A query string, in order, repeated keys kept (`target_in` is sent once per value).
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        Params(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The last value of a key, as Django's `QueryDict.get`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a filter: django-filter ignores an empty one.
    pub fn filter(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every non-empty value of a key.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Python's `int()` of a query string value: surrounding whitespace and a sign allowed.
fn python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    t.parse().ok()
}

/// The page size: `page_size` when it is a positive integer (at most `max`), the default
/// otherwise (DRF's `_positive_int(strict=True)` failing falls back to it).
pub fn page_size(params: &Params, default: usize, max: usize) -> usize {
    match params.get("page_size").and_then(python_int) {
        Some(n) if n > 0 => (n as usize).min(max),
        _ => default,
    }
}

/// One page of `items` in authentik's envelope. A page that is not an integer, below 1 or past
/// the last is 404 "Invalid page." (Django's `Paginator.validate_number`; an empty list still
/// has page 1). `render` is called only for the page's items.
pub fn paginate<T>(
    items: &[T],
    params: &Params,
    size: usize,
    render: impl Fn(&T) -> Value,
) -> Result<Value, ApiError> {
    let count = items.len();
    let size = size.max(1);
    let num_pages = count.div_ceil(size).max(1);
    let number = match params.get("page") {
        None => 1,
        Some("last") => num_pages,
        Some(p) => match python_int(p) {
            Some(n) if n >= 1 && (n as usize) <= num_pages => n as usize,
            _ => return Err(ApiError::detail(404, "Invalid page.")),
        },
    };
    let start = (number - 1) * size;
    let end = (start + size).min(count);
    let results: Vec<Value> = items[start.min(count)..end].iter().map(render).collect();
    Ok(json!({
        "pagination": {
            "next": if number < num_pages { number + 1 } else { 0 },
            "previous": number.saturating_sub(1),
            "count": count,
            "current": number,
            "total_pages": num_pages,
            "start_index": if count == 0 { 0 } else { start + 1 },
            "end_index": if number == num_pages { count } else { number * size },
        },
        "results": results,
        "autocomplete": {},
    }))
}

/// A value a list is ordered by. PostgreSQL puts NULL after every value ascending (and so
/// first descending).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Bool(bool),
    Int(i64),
    /// A uuid: PostgreSQL orders them by their bytes, which is the order of their text too.
    Uuid(u128),
    Text(String),
    Null,
}

impl From<Option<String>> for SortKey {
    fn from(v: Option<String>) -> Self {
        v.map(SortKey::Text).unwrap_or(SortKey::Null)
    }
}

/// DRF's `OrderingFilter`: `ordering` is comma-separated fields, `-` for descending; unknown
/// fields are dropped, and with none left the view's default applies.
pub fn ordering<'a>(
    params: &'a Params,
    valid: &[&str],
    default: &[&'a str],
) -> Vec<(String, bool)> {
    let asked: Vec<(String, bool)> = params
        .get("ordering")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter_map(|t| {
            let (desc, name) = match t.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, t),
            };
            valid.contains(&name).then(|| (name.to_string(), desc))
        })
        .collect();
    if !asked.is_empty() {
        return asked;
    }
    default
        .iter()
        .map(|t| match t.strip_prefix('-') {
            Some(n) => (n.to_string(), true),
            None => (t.to_string(), false),
        })
        .collect()
}

/// Sorts by the fields of `order`, `key` giving an item's value of a field. Stable: items equal
/// on every field keep their order.
pub fn sort_by<T>(items: &mut [T], order: &[(String, bool)], key: impl Fn(&T, &str) -> SortKey) {
    items.sort_by(|a, b| {
        for (field, desc) in order {
            let o = key(a, field).cmp(&key(b, field));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

/// DRF's `SearchFilter`: `search` split at commas and whitespace (NULs removed); every term
/// must occur, case-insensitively, in at least one of the item's search fields.
pub fn search_terms(params: &Params) -> Vec<String> {
    params
        .get("search")
        .unwrap_or_default()
        .replace('\0', "")
        .replace(',', " ")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect()
}

pub fn matches_search(terms: &[String], fields: &[&str]) -> bool {
    terms
        .iter()
        .all(|t| fields.iter().any(|f| f.to_lowercase().contains(t.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q))
    }

    fn page(count: usize, q: &str) -> Result<Value, ApiError> {
        let items: Vec<usize> = (1..=count).collect();
        let p = params(q);
        let size = page_size(&p, 20, 100);
        paginate(&items, &p, size, |i| json!(i))
    }

    #[test]
    fn pagination_envelope_is_authentiks() {
        let v = page(45, "page=2").expect("page 2");
        assert_eq!(
            v["pagination"],
            json!({"next": 3, "previous": 1, "count": 45, "current": 2, "total_pages": 3,
                   "start_index": 21, "end_index": 40})
        );
        assert_eq!(v["results"][0], json!(21));
        assert_eq!(v["results"].as_array().map(Vec::len), Some(20));
        assert_eq!(v["autocomplete"], json!({}));
        let last = page(45, "page=3").expect("last");
        assert_eq!(last["pagination"]["next"], json!(0), "0, never null");
        assert_eq!(last["pagination"]["end_index"], json!(45));
        assert_eq!(
            page(45, "page=last").expect("last")["pagination"]["current"],
            json!(3)
        );
        let empty = page(0, "").expect("an empty list has page 1");
        assert_eq!(
            empty["pagination"],
            json!({"next": 0, "previous": 0, "count": 0, "current": 1, "total_pages": 1,
                   "start_index": 0, "end_index": 0})
        );
    }

    #[test]
    fn invalid_pages_are_404() {
        for q in ["page=4", "page=0", "page=-1", "page=x", "page=1.0", "page="] {
            let e = page(45, q).expect_err(q);
            assert_eq!(
                (e.status, e.body.clone()),
                (404, json!({"detail": "Invalid page."})),
                "{q}"
            );
        }
        assert!(page(45, "page=%2B2").is_ok(), "Python's int() takes a sign");
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(&params(""), 20, 100), 20);
        assert_eq!(page_size(&params("page_size=5"), 20, 100), 5);
        assert_eq!(page_size(&params("page_size=500"), 20, 100), 100);
        for bad in ["page_size=0", "page_size=-3", "page_size=abc"] {
            assert_eq!(page_size(&params(bad), 20, 100), 20, "{bad}");
        }
        assert_eq!(
            page(45, "page_size=10&page=5").expect("p5")["pagination"]["end_index"],
            json!(45)
        );
    }

    #[test]
    fn ordering_drops_unknown_fields_and_falls_back() {
        let valid = ["name", "order"];
        assert_eq!(
            ordering(&params("ordering=-name,bogus"), &valid, &["order"]),
            vec![("name".to_string(), true)]
        );
        assert_eq!(
            ordering(&params("ordering=bogus"), &valid, &["-order"]),
            vec![("order".to_string(), true)]
        );
        let mut items = vec![(2, Some("b")), (1, None), (3, Some("a"))];
        let key = |i: &(i64, Option<&str>), f: &str| match f {
            "order" => SortKey::Int(i.0),
            _ => SortKey::from(i.1.map(str::to_string)),
        };
        sort_by(&mut items, &[("name".into(), false)], key);
        assert_eq!(
            items.iter().map(|i| i.0).collect::<Vec<_>>(),
            vec![3, 2, 1],
            "NULL last ascending"
        );
        sort_by(&mut items, &[("name".into(), true)], key);
        assert_eq!(
            items.iter().map(|i| i.0).collect::<Vec<_>>(),
            vec![1, 2, 3],
            "NULL first descending"
        );
    }

    #[test]
    fn search_needs_every_term_in_some_field() {
        let terms = search_terms(&params("search=Log%2Cfail"));
        assert_eq!(terms, vec!["log", "fail"]);
        assert!(matches_search(&terms, &["Login failed"]));
        assert!(matches_search(&terms, &["login", "FAILED"]));
        assert!(!matches_search(&terms, &["login"]));
        assert!(matches_search(&search_terms(&params("")), &["x"]));
    }

    #[test]
    fn repeated_keys_are_kept_and_get_takes_the_last() {
        let p = params("target_in=a&target_in=b&name=x&name=y&seen=");
        assert_eq!(p.all("target_in"), vec!["a", "b"]);
        assert_eq!(p.get("name"), Some("y"));
        assert_eq!(p.filter("seen"), None, "an empty filter is no filter");
    }
}
