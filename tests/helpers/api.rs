//! Driving the daemon's HTTP API (`/api/v3/`) from tests: tokens, a daemon with the API on,
//! requests that answer `(status, JSON)`.
#![allow(dead_code)]

use super::kafka::{eventually, Daemon, TestEnv};
use serde_json::Value;
use std::time::Duration;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const USER_KEY: &str = "test-user-key-0123456789";
/// The non-admin token's user.
pub const USER_PK: i64 = 7;

/// `api.tokens` as the environment carries it: an admin (user 1) and user 7.
pub fn tokens_json() -> String {
    format!(
        r#"[{{"key": "{ADMIN_KEY}", "user": 1, "admin": true}}, {{"key": "{USER_KEY}", "user": {USER_PK}}}]"#
    )
}

/// A daemon with the API on, ready.
pub fn start(env: &TestEnv, name: &str, extra: &[(&str, &str)]) -> Daemon {
    let tokens = tokens_json();
    let mut vars = vec![("EVENTMATCHD__API__TOKENS", tokens.as_str())];
    vars.extend_from_slice(extra);
    let mut d = Daemon::start(env, name, &vars);
    d.wait_ready(Duration::from_secs(60));
    d
}

/// Two daemons with the API on, once exactly one of them owns the control partition: the
/// owner first, then the other.
pub fn start_pair(env: &TestEnv, extra: &[(&str, &str)]) -> (Daemon, Daemon) {
    let d1 = start(env, "d1", extra);
    let d2 = start(env, "d2", extra);
    assert!(
        eventually(Duration::from_secs(60), || d1.owns_control()
            != d2.owns_control()),
        "exactly one owner of the control partition"
    );
    if d1.owns_control() {
        (d1, d2)
    } else {
        (d2, d1)
    }
}

/// A client of one daemon with one key.
pub struct Api {
    pub base: String,
    pub key: Option<String>,
    client: reqwest::blocking::Client,
}

impl Api {
    pub fn new(daemon: &Daemon, key: Option<&str>) -> Self {
        Self {
            base: format!("http://127.0.0.1:{}", daemon.port),
            key: key.map(str::to_string),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    pub fn admin(daemon: &Daemon) -> Self {
        Self::new(daemon, Some(ADMIN_KEY))
    }

    /// One request; the body is sent as JSON. Answers the status and the JSON body (`Null`
    /// when empty).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        (status, json)
    }

    /// A request with a body sent as it is, under `content_type`.
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(m, format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .body(body.to_string());
        if let Some(k) = &self.key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    /// A request expected to answer `status`; returns the body.
    pub fn expect(&self, status: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (s, v) = self.call(method, path, body);
        assert_eq!(s, status, "{method} {path} answered {s}: {v}");
        v
    }
}
