//! The API's doors: every 403 shape, 413 on an oversized body (declared or streamed), a slow
//! client that holds neither a worker nor a request slot, keys kept out of logs and metrics,
//! requests counted by route template.

mod helpers;

use helpers::api::{self, Api, ADMIN_KEY, USER_KEY};
use helpers::kafka::TestEnv;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const POLICIES: &str = "/api/v3/policies/event_matcher/";

fn raw(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s
}

/// Reads until the server closes the connection; panics if it is still open after the read
/// timeout (30 s).
fn read_to_close(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        panic!(
            "the server kept the connection open ({e}); read so far: {}",
            String::from_utf8_lossy(&out)
        );
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn authentication_refusals_have_authentiks_shapes() {
    let env = TestEnv::new("api-auth", 1);
    let d = api::start(&env, "d1", &[]);
    let detail = |key: Option<&str>, header: Option<&str>| {
        let c = reqwest::blocking::Client::new();
        let mut req = c.get(format!("http://127.0.0.1:{}{POLICIES}", d.port));
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let r = req.send().expect("send");
        let status = r.status().as_u16();
        let v: serde_json::Value =
            serde_json::from_str(&r.text().unwrap_or_default()).expect("json");
        (status, v["detail"].as_str().unwrap_or_default().to_string())
    };
    let not_provided = (
        403,
        "Authentication credentials were not provided.".to_string(),
    );
    assert_eq!(detail(None, None), not_provided);
    // Since authentik 2025.12 another scheme is "not provided" (it was "Unsupported
    // authentication type" before): `validate_auth` returns None for it.
    assert_eq!(detail(None, Some("Basic dXNlcjpwYXNz")), not_provided);
    assert_eq!(detail(None, Some("Bearer")), not_provided);
    assert_eq!(
        detail(Some("not-a-key"), None),
        (403, "Token invalid/expired".to_string())
    );
    assert_eq!(detail(Some(ADMIN_KEY), None).0, 200);
    let user = Api::new(&d, Some(USER_KEY));
    let denied = user.expect(403, "POST", POLICIES, Some(&json!({"name": "x"})));
    assert_eq!(
        denied,
        json!({"detail": "You do not have permission to perform this action."})
    );
    // Authentication comes before the method check, as in DRF.
    let anonymous = Api::new(&d, None);
    assert_eq!(anonymous.call("PUT", POLICIES, None).0, 403);

    let logs = d.logs();
    let metrics = d.metrics();
    for key in [ADMIN_KEY, USER_KEY, "not-a-key"] {
        assert!(!logs.contains(key), "a key in the logs");
        assert!(!metrics.contains(key), "a key in the metrics");
    }
    assert!(
        metrics.contains(r#"eventmatchd_http_requests_total{method="GET",route="/api/v3/policies/event_matcher/",status="403"} 4"#),
        "{}",
        metrics.lines().filter(|l| l.contains("http_requests")).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn oversized_bodies_are_413_and_slow_clients_hold_no_slot() {
    let env = TestEnv::new("api-limits", 1);
    let d = api::start(
        &env,
        "d1",
        &[
            ("EVENTMATCHD__API__BODY_LIMIT_BYTES", "2048"),
            ("EVENTMATCHD__API__MAX_CONCURRENT_REQUESTS", "1"),
            ("EVENTMATCHD__HTTP__BODY_TIMEOUT_SECS", "8"),
            ("EVENTMATCHD__HTTP__HEADER_TIMEOUT_SECS", "2"),
        ],
    );
    let admin = Api::admin(&d);
    let big = json!({"name": "x".repeat(4096)});
    let e = admin.expect(413, "POST", POLICIES, Some(&big));
    assert!(
        e["detail"].as_str().unwrap_or_default().contains("2048"),
        "{e}"
    );
    // Streamed (chunked, no Content-Length): cut off while reading.
    let mut s = raw(d.port);
    let chunk = "y".repeat(1500);
    write!(
        s,
        "POST {POLICIES} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    )
    .expect("write");
    let answer = read_to_close(s);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Within the limit: created.
    admin.expect(201, "POST", POLICIES, Some(&json!({"name": "fits"})));

    // A client that sends headers and then trickles its body holds a connection, not the one
    // request slot: another client is answered meanwhile; the slow one gets 408.
    let mut slow = raw(d.port);
    write!(
        slow,
        "POST {POLICIES} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .expect("write");
    slow.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    let (status, list) = admin.call("GET", POLICIES, None);
    assert_eq!(status, 200, "{list}");
    admin.expect(
        201,
        "POST",
        POLICIES,
        Some(&json!({"name": "while a client is slow"})),
    );
    // Those were answered while the slow request is still waiting for its body (had it held
    // the slot, they would have waited for its 408).
    slow.set_nonblocking(true).expect("nonblocking");
    let mut probe = [0u8; 64];
    let pending =
        matches!(slow.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(
        pending,
        "the slow request was already answered: {}",
        String::from_utf8_lossy(&probe)
    );
    slow.set_nonblocking(false).expect("blocking");
    let answer = read_to_close(slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A client that never finishes its headers is disconnected after the header timeout.
    let mut dribble = raw(d.port);
    write!(dribble, "GET {POLICIES} HTTP/1.1\r\nHost: t\r\n").expect("write");
    // (The read timeout is 30 s, the header timeout 2 s: closed, not timed out.)
    let answer = read_to_close(dribble);
    assert!(!answer.contains("200 OK"), "{answer}");
    // The header timeout is also the idle limit of a kept-alive connection.
    let mut idle = raw(d.port);
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    let answer = read_to_close(idle);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "answered, then closed when idle: {answer}"
    );
    let (status, _) = admin.call("GET", POLICIES, None);
    assert_eq!(status, 200, "still serving");
}
