//! authentik's official clients against a running daemon, unchanged: `authentik-client` from
//! PyPI (Python) and `@goauthentik/api` from npm (node). Each is installed by the test into
//! `target/api-clients/` (kept between runs) and drives the same flow: create a policy, a rule
//! and a binding; the seed's PATCH; events become notifications listed through the client; the
//! seed's seen PATCH; `mark_all_seen`; 400/403/404 as the client's errors; pagination; delete.
//! The README's Python example runs here too.
//!
//! A test skips (printing `SKIPPED:` and why) only when its registry cannot be reached.

mod helpers;

use helpers::api::{self, ADMIN_KEY, USER_KEY, USER_PK};
use helpers::kafka::{Daemon, TestEnv};
use helpers::workload::login_event;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PYTHON_CLIENT: &str = "authentik-client==2026.8.5";
/// The newest `@goauthentik/api` on npm of the 2026.8 series (2026.8.5 is on PyPI only).
const NPM_CLIENT: &str = "@goauthentik/api@2026.8.3";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    let dir = manifest().join("target/api-clients");
    std::fs::create_dir_all(&dir).expect("cache dir");
    dir
}

/// Output that says the registry could not be reached (as opposed to a broken install).
fn unreachable(output: &str) -> bool {
    [
        "Max retries exceeded",
        "NewConnectionError",
        "Temporary failure in name resolution",
        "Could not fetch URL",
        "ENOTFOUND",
        "ECONNREFUSED",
        "ETIMEDOUT",
        "EAI_AGAIN",
        "network request",
    ]
    .iter()
    .any(|s| output.contains(s))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The venv's python with the client installed, or `None` when PyPI is unreachable. Made once
/// per test binary (the tests of this file share it).
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON.get_or_init(install_python).clone()
}

fn install_python() -> Option<PathBuf> {
    let venv = cache().join("py-authentik-client-2026.8.5");
    let py = venv.join("bin/python");
    if py.exists() && run(Command::new(&py).args(["-c", "import authentik_client"])).0 {
        return Some(py);
    }
    let (ok, out) = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    assert!(ok, "python3 -m venv: {out}");
    let (ok, out) = run(Command::new(&py).args(["-m", "pip", "install", "--quiet", PYTHON_CLIENT]));
    if !ok && unreachable(&out) {
        println!("SKIPPED: PyPI cannot be reached to install {PYTHON_CLIENT}:\n{out}");
        return None;
    }
    assert!(ok, "pip install {PYTHON_CLIENT}: {out}");
    Some(py)
}

/// A directory whose node_modules has the client, or `None` when npm is unreachable.
fn node_modules() -> Option<PathBuf> {
    let dir = cache().join("npm-goauthentik-api-2026.8.3");
    if dir
        .join("node_modules/@goauthentik/api/package.json")
        .exists()
    {
        return Some(dir);
    }
    std::fs::create_dir_all(&dir).expect("npm dir");
    std::fs::write(dir.join("package.json"), r#"{"private": true}"#).expect("package.json");
    let (ok, out) = run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", NPM_CLIENT])
        .current_dir(&dir));
    if !ok && unreachable(&out) {
        println!("SKIPPED: npm's registry cannot be reached to install {NPM_CLIENT}:\n{out}");
        return None;
    }
    assert!(ok, "npm install {NPM_CLIENT}: {out}");
    Some(dir)
}

fn step(cmd: &mut Command, d: &Daemon, policy: &str) -> String {
    cmd.env("AK_HOST", format!("http://127.0.0.1:{}", d.port))
        .env("AK_ADMIN", ADMIN_KEY)
        .env("AK_USER", USER_KEY)
        .env("AK_POLICY", policy);
    let (ok, out) = run(cmd);
    assert!(
        ok,
        "{cmd:?} failed:\n{out}\n--- daemon log ---\n{}",
        d.logs()
    );
    out
}

/// The pk printed on the setup step's last line.
fn policy_of(out: &str) -> String {
    let last = out.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["policy"].as_str().expect("policy").to_string()
}

/// Sends 3 login events of the non-admin user and 1 of user 8, and waits until all four are
/// notifications (read through the API itself).
fn send_events(env: &TestEnv, d: &Daemon, tag: u32) {
    let producer = env.producer();
    for i in 0..4u32 {
        let user = if i < 3 { USER_PK as u64 } else { 8 };
        producer.send_json(
            &env.events,
            &login_event(&format!("e{tag:07}-0000-4000-8000-{i:012}"), user),
        );
    }
    producer.flush();
    let admin = api::Api::admin(d);
    assert!(
        helpers::kafka::eventually(std::time::Duration::from_secs(30), || {
            admin.get("/api/v3/events/notifications/").1["pagination"]["count"] == 4
        }),
        "4 notifications"
    );
}

fn flow(script: &str, program: impl Fn() -> Command, tag: u32) {
    let env = TestEnv::new(&format!("api-{script}"), 1);
    let d = api::start(&env, "d1", &[]);
    let path = manifest().join("tests/clients").join(script);
    let setup = step(program().arg(&path).arg("setup"), &d, "");
    let policy = policy_of(&setup);
    send_events(&env, &d, tag);
    let out = step(program().arg(&path).arg("notifications"), &d, &policy);
    assert!(out.contains("client flow: ok"), "{out}");
}

#[test]
fn the_python_client_drives_the_daemon() {
    let Some(py) = python() else { return };
    flow("python_flow.py", || Command::new(&py), 3001);
}

#[test]
fn the_typescript_client_drives_the_daemon() {
    let Some(dir) = node_modules() else { return };
    let modules = dir.join("node_modules");
    flow(
        "ts_flow.cjs",
        || {
            let mut c = Command::new("node");
            c.env("NODE_PATH", &modules);
            c
        },
        3002,
    );
}

/// The README's example (the first ```python block of its "HTTP API" section), as written.
#[test]
fn the_readme_python_example_runs() {
    let Some(py) = python() else { return };
    let readme = std::fs::read_to_string(manifest().join("README.md")).expect("README");
    let section = readme
        .split("\n## HTTP API")
        .nth(1)
        .expect("an \"HTTP API\" section");
    let code = section
        .split("```python\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("a python block");
    assert!(
        code.lines().count() <= 16,
        "the example stays short: {code}"
    );
    let env = TestEnv::new("api-readme", 1);
    let d = api::start(&env, "d1", &[]);
    let file = env_dir(&env).join("example.py");
    std::fs::write(&file, code).expect("write");
    let out = step(Command::new(&py).arg(&file), &d, "");
    // The example lists unseen notifications (none yet) after creating its objects.
    let admin = api::Api::admin(&d);
    let (_, p) = admin.get("/api/v3/policies/event_matcher/");
    assert_eq!(p["pagination"]["count"], 1, "{out}");
    let (_, b) = admin.get("/api/v3/policies/bindings/");
    assert_eq!(b["pagination"]["count"], 1, "{out}");
}

fn env_dir(env: &TestEnv) -> &Path {
    &env.dir
}
