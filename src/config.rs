//! Configuration: `config/default.toml` (compiled in, so every key has a default wherever the
//! binary runs), overridden by an optional file and by `EVENTMATCHD__SECTION__KEY`
//! environment variables. Unknown keys are rejected and every value is checked at start;
//! an error names the key.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub const ENV_PREFIX: &str = "EVENTMATCHD";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub events: EventSettings,
    pub http: HttpSettings,
    pub api: ApiSettings,
    pub catalog: CatalogSettings,
    pub authentik: AuthentikSettings,
    pub notifications: NotificationSettings,
    pub shutdown: ShutdownSettings,
    pub watchdog: WatchdogSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    pub control_group_id: String,
    /// Allows the librdkafka overrides that void eventmatchd's guarantees ([`UNSAFE_PROPERTIES`]).
    pub unsafe_properties: bool,
    /// Static group membership (KIP-345): this instance's stable id, librdkafka's
    /// `group.instance.id` in the event group (and with `-control` in the control group).
    /// Empty: dynamic membership.
    pub instance_id: String,
    /// librdkafka passthrough; nested tables flattened to dotted names by [`Settings::load`].
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
}

/// librdkafka properties whose override silently voids at-least-once delivery, ordering or
/// catch-up, with the only values that keep them (none: any override is unsafe). Refused at
/// start unless `kafka.unsafe_properties = true`.
pub const UNSAFE_PROPERTIES: &[(&str, &[&str], &str)] = &[
    (
        "acks",
        &["all", "-1"],
        "outputs must be on every in-sync replica before an input offset is stored",
    ),
    (
        "enable.idempotence",
        &["true"],
        "librdkafka's own retries must not duplicate or reorder a key's states",
    ),
    (
        "enable.partition.eof",
        &[],
        "readers need it on (catch-up), group members off",
    ),
    (
        "auto.offset.reset",
        &[],
        "a group without committed offsets must start at the beginning",
    ),
    (
        "enable.auto.commit",
        &["true"],
        "stored offsets are committed by auto-commit",
    ),
];

impl KafkaSettings {
    /// The first unsafe override, as (key, why).
    pub fn unsafe_override(&self) -> Option<(String, &'static str)> {
        let props = self.librdkafka_properties();
        UNSAFE_PROPERTIES.iter().find_map(|(key, safe, why)| {
            let v = props.get(*key)?;
            (!safe.contains(&v.to_ascii_lowercase().as_str())).then(|| (key.to_string(), *why))
        })
    }

    /// How long the group coordinator may wait for a member that stopped heartbeating
    /// (`session.timeout.ms`, librdkafka's default 45 s when not overridden).
    pub fn session_timeout(&self) -> std::time::Duration {
        self.millis("session.timeout.ms", 45_000)
    }

    /// How often a group member heartbeats (`heartbeat.interval.ms`, librdkafka's default 3 s
    /// when not overridden).
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        self.millis("heartbeat.interval.ms", 3_000)
    }

    /// A librdkafka property in milliseconds, or `default` when it is not set (or not a number).
    fn millis(&self, key: &str, default: u64) -> std::time::Duration {
        let ms = self
            .librdkafka_properties()
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default);
        std::time::Duration::from_millis(ms)
    }

    /// The largest record the producer may write (`message.max.bytes`, librdkafka's default
    /// 1,000,000 when not overridden).
    pub fn max_record_bytes(&self) -> usize {
        self.librdkafka_properties()
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }
}

/// A librdkafka property value: TOML and the environment give strings, numbers or booleans.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PropertyValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nested(BTreeMap<String, PropertyValue>),
}

impl PropertyValue {
    fn flatten_into(&self, prefix: &str, out: &mut BTreeMap<String, String>) {
        match self {
            PropertyValue::Text(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            PropertyValue::Int(i) => {
                out.insert(prefix.to_string(), i.to_string());
            }
            PropertyValue::Float(f) => {
                out.insert(prefix.to_string(), f.to_string());
            }
            PropertyValue::Bool(b) => {
                out.insert(prefix.to_string(), b.to_string());
            }
            PropertyValue::Nested(map) => {
                for (k, v) in map {
                    v.flatten_into(&format!("{prefix}.{k}"), out);
                }
            }
        }
    }
}

impl KafkaSettings {
    /// The passthrough properties as librdkafka names and string values.
    pub fn librdkafka_properties(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.properties {
            v.flatten_into(k, &mut out);
        }
        out
    }
}

/// How records on the event topic are shaped (README "Feeding events").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// `authentik`, `debezium` or `auto` (each record's shape decides).
    pub format: crate::ingest::Format,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    pub events: String,
    pub control: String,
    pub notifications: String,
    pub results: String,
    pub dlq: String,
    pub executions: String,
}

impl Topics {
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            ("topics.events", &self.events),
            ("topics.control", &self.control),
            ("topics.notifications", &self.notifications),
            ("topics.results", &self.results),
            ("topics.dlq", &self.dlq),
            ("topics.executions", &self.executions),
        ]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: String,
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_connections: usize,
}

/// The authentik REST API (`crate::api`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// A list of tables in a file; a JSON array in a string from the environment.
    #[serde(deserialize_with = "tokens_from_list_or_json")]
    pub tokens: Vec<ApiToken>,
    pub body_limit_bytes: usize,
    pub write_timeout_secs: u64,
    pub max_concurrent_requests: usize,
    pub default_page_size: usize,
    pub max_page_size: usize,
}

/// One `[[api.tokens]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    pub user: i64,
    #[serde(default)]
    pub admin: bool,
}

// Never print a key: settings are logged and shown in errors.
impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .field("user", &self.user)
            .field("admin", &self.admin)
            .finish()
    }
}

fn tokens_from_list_or_json<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ApiToken>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<ApiToken>),
        Json(String),
    }
    match Either::deserialize(d)? {
        Either::List(l) => Ok(l),
        // An empty variable means no tokens, as an empty list does.
        Either::Json(s) if s.trim().is_empty() => Ok(Vec::new()),
        Either::Json(s) => serde_json::from_str(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "api.tokens: not a JSON array of {{key or key_file, user, admin}}: {e}"
            ))
        }),
    }
}

/// A token with its key read (from `key` or `key_file`).
#[derive(Clone)]
pub struct ResolvedToken {
    pub key: String,
    pub user: i64,
    pub admin: bool,
}

impl ApiSettings {
    /// The tokens with their keys, files read. Errors name the entry, never the key.
    pub fn resolve_tokens(&self) -> Result<Vec<ResolvedToken>, ConfigError> {
        let mut out = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key_name = format!("api.tokens[{i}]");
            let key = match (&t.key, &t.key_file) {
                (Some(k), None) => k.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|e| invalid(&key_name, format!("key_file {}: {e}", path.display())))?
                    // Secret files usually end with a newline.
                    .trim()
                    .to_string(),
                _ => return Err(invalid(&key_name, "set exactly one of key and key_file")),
            };
            if key.trim().is_empty() || key.chars().any(char::is_whitespace) {
                return Err(invalid(
                    &key_name,
                    "the key must be non-empty and contain no whitespace (it is sent as `Authorization: Bearer <key>`)",
                ));
            }
            out.push(ResolvedToken {
                key,
                user: t.user,
                admin: t.admin,
            });
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    pub extra_actions: Vec<String>,
    pub extra_apps: Vec<String>,
    pub extra_models: Vec<String>,
}

/// Facts about the authentik installation the events come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthentikSettings {
    /// The pk of authentik's `AnonymousUser` (the user of execution records for events
    /// without a user); 0 when unknown (rendered as null).
    pub anonymous_user_pk: i64,
}

impl AuthentikSettings {
    pub fn anonymous_user_pk(&self) -> serde_json::Value {
        match self.anonymous_user_pk {
            0 => serde_json::Value::Null,
            pk => serde_json::Value::from(pk),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    pub max_held: usize,
    pub sweep_interval_secs: u64,
    /// How long a deleted (or evicted) notification of an event without `expires` is
    /// remembered, so that reprocessing its event emits nothing. The notification topic's
    /// `delete.retention.ms` must cover it.
    pub deleted_horizon_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSettings {
    /// How long a component may hold partitions with lag without finishing any work.
    pub deadline_secs: u64,
    /// How often lag is read from the broker.
    pub interval_secs: u64,
    /// How long a group may make no progress with work waiting while this instance holds none
    /// of its partitions before this instance rejoins it (see [`crate::watchdog`]).
    pub group_deadline_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    pub drain_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: String,
    pub level: String,
}

impl Settings {
    /// Loads defaults, then `file` (if any), then the `EVENTMATCHD__*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("catalog.extra_actions")
                .with_list_parse_key("catalog.extra_apps")
                .with_list_parse_key("catalog.extra_models")
                .try_parsing(true)
                .source(Some(vars)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process environment.
    pub fn from_env(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load(file, std::env::vars())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.api.resolve_tokens()?;
        for (key, v) in [
            ("api.body_limit_bytes", self.api.body_limit_bytes),
            (
                "api.write_timeout_secs",
                self.api.write_timeout_secs as usize,
            ),
            (
                "api.max_concurrent_requests",
                self.api.max_concurrent_requests,
            ),
            ("api.default_page_size", self.api.default_page_size),
            ("api.max_page_size", self.api.max_page_size),
            (
                "http.header_timeout_secs",
                self.http.header_timeout_secs as usize,
            ),
            (
                "http.body_timeout_secs",
                self.http.body_timeout_secs as usize,
            ),
            ("http.max_connections", self.http.max_connections),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must name at least one broker"));
        }
        for part in self.kafka.brokers.split(',') {
            let part = part.trim();
            let ok = part
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(invalid(
                    "kafka.brokers",
                    format!("{part:?} is not host:port"),
                ));
            }
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        if self.kafka.control_group_id.trim().is_empty() {
            return Err(invalid("kafka.control_group_id", "must not be empty"));
        }
        if self.kafka.control_group_id == self.kafka.group_id {
            return Err(invalid(
                "kafka.control_group_id",
                "must differ from kafka.group_id",
            ));
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (key, name) in self.topics.all() {
            if name.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
            let legal = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !legal || name.len() > 249 {
                return Err(invalid(
                    key,
                    format!("{name:?} is not a legal Kafka topic name"),
                ));
            }
            if let Some(other) = seen.insert(name, key) {
                return Err(invalid(key, format!("{name:?} is also {other}")));
            }
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!("{:?} is not an ip:port address", self.http.listen),
            ));
        }
        if self.notifications.max_held == 0 {
            return Err(invalid("notifications.max_held", "must be at least 1"));
        }
        if self.notifications.sweep_interval_secs == 0 {
            return Err(invalid(
                "notifications.sweep_interval_secs",
                "must be at least 1",
            ));
        }
        if self.watchdog.interval_secs == 0 {
            return Err(invalid("watchdog.interval_secs", "must be at least 1"));
        }
        if self.watchdog.deadline_secs < self.watchdog.interval_secs {
            return Err(invalid(
                "watchdog.deadline_secs",
                "must be at least watchdog.interval_secs",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", "is not a valid filter directive"));
        }
        let id = &self.kafka.instance_id;
        if id.len() > 240
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "kafka.instance_id",
                format!("{id:?} must be at most 240 of [A-Za-z0-9._-] (empty: dynamic membership)"),
            ));
        }
        if self.watchdog.group_deadline_secs < self.watchdog.interval_secs {
            return Err(invalid(
                "watchdog.group_deadline_secs",
                "must be at least watchdog.interval_secs",
            ));
        }
        if let Some((key, why)) = self.kafka.unsafe_override() {
            if !self.kafka.unsafe_properties {
                return Err(invalid(
                    &format!("kafka.properties.{key}"),
                    format!("overriding it voids eventmatchd's guarantees ({why}); set kafka.unsafe_properties = true to allow it anyway"),
                ));
            }
        }
        for key in self.kafka.librdkafka_properties().keys() {
            // These are managed by the daemon; overriding them would break at-least-once.
            if matches!(
                key.as_str(),
                "enable.auto.offset.store" | "group.id" | "bootstrap.servers" | "group.instance.id"
            ) {
                return Err(invalid(
                    &format!("kafka.properties.{key}"),
                    "is set by eventmatchd itself (use kafka.brokers / kafka.group_id)",
                ));
            }
        }
        Ok(())
    }

    pub fn catalog(&self) -> crate::catalog::Catalog {
        crate::catalog::Catalog::new(
            &self.catalog.extra_actions,
            &self.catalog.extra_apps,
            &self.catalog.extra_models,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err_text(r: Result<Settings, ConfigError>) -> String {
        r.expect_err("should fail").to_string()
    }

    #[test]
    fn defaults_load_and_match_the_documented_values() {
        let s = Settings::load(None, env(&[])).expect("defaults are valid");
        assert_eq!(s.topics.events, "authentik.events");
        assert_eq!(s.topics.control, "authentik.control");
        assert_eq!(s.topics.notifications, "authentik.notifications");
        assert_eq!(s.topics.results, "authentik.control.results");
        assert_eq!(s.topics.dlq, "authentik.events.dlq");
        assert_eq!(s.topics.executions, "authentik.policy_executions");
        assert_eq!(s.http.listen, "127.0.0.1:9464");
        assert!(s.kafka.librdkafka_properties().is_empty());
    }

    #[test]
    fn api_tokens_from_file_key_file_and_env() {
        let mut secret = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(secret, "s3cret-from-file").expect("write");
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(
            f,
            "[[api.tokens]]\nkey = \"k1\"\nuser = 7\nadmin = true\n[[api.tokens]]\nkey_file = {:?}\nuser = 8",
            secret.path()
        )
        .expect("write");
        let s = Settings::load(Some(f.path()), env(&[])).expect("valid");
        let t = s.api.resolve_tokens().expect("tokens");
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].key.as_str(), t[0].user, t[0].admin), ("k1", 7, true));
        assert_eq!(
            (t[1].key.as_str(), t[1].user, t[1].admin),
            ("s3cret-from-file", 8, false),
            "the file's trailing newline is not part of the key"
        );
        assert!(
            !format!("{s:?}").contains("k1\""),
            "Debug never prints a key"
        );
        let s = Settings::load(
            None,
            env(&[(
                "EVENTMATCHD__API__TOKENS",
                r#"[{"key": "from-env", "user": 9, "admin": true}]"#,
            )]),
        )
        .expect("valid");
        let t = s.api.resolve_tokens().expect("tokens");
        assert_eq!((t[0].key.as_str(), t[0].user), ("from-env", 9));
        assert!(Settings::load(None, env(&[]))
            .expect("defaults")
            .api
            .tokens
            .is_empty());
        for (bad, why) in [
            (r#"[{"user": 9}]"#, "api.tokens[0]"),
            (r#"[{"key": "a b", "user": 9}]"#, "api.tokens[0]"),
            (
                r#"[{"key": "a", "key_file": "/x", "user": 9}]"#,
                "api.tokens[0]",
            ),
            (
                r#"[{"key_file": "/nonexistent/eventmatchd", "user": 9}]"#,
                "/nonexistent",
            ),
            ("not json", "api.tokens"),
        ] {
            let e = Settings::load(None, env(&[("EVENTMATCHD__API__TOKENS", bad)]))
                .expect_err(bad)
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = Settings::load(None, env(&[("EVENTMATCHD__API__MAX_PAGE_SIZE", "0")]))
            .expect_err("zero")
            .to_string();
        assert!(e.contains("api.max_page_size"), "{e}");
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(
            f,
            "[kafka]\nbrokers = \"file:1\"\ngroup_id = \"g-file\"\n[topics]\nevents = \"ev.file\""
        )
        .expect("write");
        let s = Settings::load(
            Some(f.path()),
            env(&[
                ("EVENTMATCHD__KAFKA__BROKERS", "envhost:9093"),
                ("EVENTMATCHD__CATALOG__EXTRA_ACTIONS", "a_new,b_new"),
                ("EVENTMATCHD__NOTIFICATIONS__MAX_HELD", "5"),
                ("OTHER__KAFKA__BROKERS", "ignored:1"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.kafka.brokers, "envhost:9093");
        assert_eq!(s.kafka.group_id, "g-file");
        assert_eq!(s.topics.events, "ev.file");
        assert_eq!(s.notifications.max_held, 5);
        assert_eq!(s.catalog.extra_actions, vec!["a_new", "b_new"]);
        assert!(s.catalog().is_action("b_new"));
    }

    #[test]
    fn librdkafka_passthrough_from_file_and_env() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"queue.buffering.max.ms\" = 5\n[kafka.properties.sasl]\nmechanism = \"PLAIN\"").expect("write");
        let s = Settings::load(
            Some(f.path()),
            env(&[("EVENTMATCHD__KAFKA__PROPERTIES__SASL__USERNAME", "svc")]),
        )
        .expect("valid");
        let p = s.kafka.librdkafka_properties();
        assert_eq!(
            p.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(
            p.get("queue.buffering.max.ms").map(String::as_str),
            Some("5")
        );
        assert_eq!(p.get("sasl.mechanism").map(String::as_str), Some("PLAIN"));
        assert_eq!(p.get("sasl.username").map(String::as_str), Some("svc"));
    }

    /// Issue 9 item 6: each override that voids a guarantee is refused, naming the key;
    /// the safe values are accepted; `kafka.unsafe_properties` allows them.
    #[test]
    fn unsafe_librdkafka_overrides_are_refused_by_name() {
        for (key, value) in [
            ("ACKS", "0"),
            ("ACKS", "1"),
            ("ENABLE__IDEMPOTENCE", "false"),
            ("ENABLE__PARTITION__EOF", "false"),
            ("AUTO__OFFSET__RESET", "latest"),
            ("ENABLE__AUTO__COMMIT", "false"),
        ] {
            let var = format!("EVENTMATCHD__KAFKA__PROPERTIES__{key}");
            let dotted = key.to_ascii_lowercase().replace("__", ".");
            let e = err_text(Settings::load(None, env(&[(&var, value)])));
            assert!(
                e.contains(&format!("kafka.properties.{dotted}"))
                    && e.contains("unsafe_properties"),
                "{key}={value}: {e}"
            );
            let allowed = Settings::load(
                None,
                env(&[
                    (&var, value),
                    ("EVENTMATCHD__KAFKA__UNSAFE_PROPERTIES", "true"),
                ]),
            );
            assert!(allowed.is_ok(), "{key}={value} with the switch");
        }
        let e = err_text(Settings::load(
            None,
            env(&[(
                "EVENTMATCHD__KAFKA__PROPERTIES__ENABLE__AUTO__OFFSET__STORE",
                "true",
            )]),
        ));
        assert!(
            e.contains("kafka.properties.enable.auto.offset.store"),
            "{e}"
        );
        for (key, value) in [
            ("ACKS", "all"),
            ("ACKS", "-1"),
            ("ENABLE__IDEMPOTENCE", "true"),
        ] {
            let var = format!("EVENTMATCHD__KAFKA__PROPERTIES__{key}");
            assert!(
                Settings::load(None, env(&[(&var, value)])).is_ok(),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "[kafka]\nbrokerz = \"x:1\"").expect("write");
        assert!(err_text(Settings::load(Some(f.path()), env(&[]))).contains("brokerz"));
        let e = err_text(Settings::load(
            None,
            env(&[("EVENTMATCHD__TOPICS__EVENTZ", "x")]),
        ));
        assert!(e.contains("eventz"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("EVENTMATCHD__KAFKA__BROKERS", "nohostport", "kafka.brokers"),
            ("EVENTMATCHD__HTTP__LISTEN", "localhost", "http.listen"),
            ("EVENTMATCHD__TOPICS__DLQ", "authentik.events", "topics.dlq"),
            (
                "EVENTMATCHD__TOPICS__RESULTS",
                "bad topic!",
                "topics.results",
            ),
            (
                "EVENTMATCHD__NOTIFICATIONS__MAX_HELD",
                "0",
                "notifications.max_held",
            ),
            ("EVENTMATCHD__LOG__FORMAT", "xml", "log.format"),
            (
                "EVENTMATCHD__KAFKA__CONTROL_GROUP_ID",
                "eventmatchd",
                "kafka.control_group_id",
            ),
            (
                "EVENTMATCHD__KAFKA__PROPERTIES__GROUP__ID",
                "x",
                "kafka.properties.group.id",
            ),
        ];
        for (var, value, key) in cases {
            let e = err_text(Settings::load(None, env(&[(var, value)])));
            assert!(e.contains(key), "{var}={value}: {e}");
        }
        let e = err_text(Settings::load(
            None,
            env(&[("EVENTMATCHD__NOTIFICATIONS__MAX_HELD", "many")]),
        ));
        assert!(e.contains("max_held"), "{e}");
        let e = err_text(Settings::load(
            Some(Path::new("/nonexistent/eventmatchd.toml")),
            env(&[]),
        ));
        assert!(e.contains("--config"), "{e}");
    }
}
