//! The `eventmatchd` binary: parses the command line and configuration, sets up logging and
//! the shutdown signal, and hands over to the library. Errors are reported here, and only
//! here, with `anyhow`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use eventmatchd::config::Settings;
use eventmatchd::engine::Engine;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "eventmatchd",
    version,
    about = "authentik event notifications on Kafka"
)]
struct Cli {
    /// A TOML file overriding config/default.toml (environment variables override both).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log as JSON lines (same as log.format = "json").
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Process NDJSON events and control commands offline; print the records the daemon
    /// would produce as NDJSON ({"topic", "key", "value"}) on stdout.
    Replay {
        /// Input file; standard input when absent or "-".
        file: Option<PathBuf>,
    },
    /// Create the daemon's topics with the settings it expects (existing ones are kept).
    CreateTopics {
        /// Partitions of the events, notifications and executions topics.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
    /// Send each line of an NDJSON file (or stdin) as one record.
    Send {
        /// events, control, or any topic name.
        topic: String,
        file: Option<PathBuf>,
    },
    /// Print records of a topic as NDJSON.
    Tail {
        /// notifications, results, dlq, executions, events, control, or any topic name.
        topic: String,
        /// Start at the beginning of the topic instead of its end.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
        /// Stop when nothing arrived for this many seconds.
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
    },
    /// Ask a running daemon's HTTP endpoint; exit 0 when it answers 200, 1 otherwise. For
    /// container health checks (the image has no curl).
    Probe {
        /// healthz (alive) or readyz (caught up and consuming).
        #[arg(default_value = "healthz", value_parser = ["healthz", "readyz"])]
        endpoint: String,
        /// Address to ask; defaults to http.listen (an unspecified address means this host).
        #[arg(long)]
        address: Option<String>,
        #[arg(long, default_value_t = 2)]
        timeout_secs: u64,
    },
}

fn init_logging(settings: &Settings, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    if json || settings.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env(cli.config.as_deref())?;
    if let Some(Command::Replay { file }) = cli.command {
        return replay(&settings, file);
    }
    if let Some(Command::Probe {
        endpoint,
        address,
        timeout_secs,
    }) = &cli.command
    {
        let address = address
            .clone()
            .unwrap_or_else(|| settings.http.listen.clone());
        let status =
            eventmatchd::tools::probe(&address, endpoint, Duration::from_secs(*timeout_secs));
        return match status {
            Ok(200) => Ok(()),
            Ok(code) => {
                eprintln!("eventmatchd probe: /{endpoint} answered {code}");
                std::process::exit(1)
            }
            Err(e) => {
                eprintln!("eventmatchd probe: /{endpoint} at {address}: {e}");
                std::process::exit(1)
            }
        };
    }
    init_logging(&settings, cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Run) => {
                eventmatchd::daemon::run(settings, shutdown_signal()).await?;
            }
            Some(Command::CreateTopics {
                partitions,
                replication,
            }) => {
                let created =
                    eventmatchd::kafka::create_topics(&settings, partitions, replication).await?;
                eprintln!("created {} topic(s): {}", created.len(), created.join(", "));
            }
            Some(Command::Send { topic, file }) => {
                let n = match file.filter(|f| f.as_os_str() != "-") {
                    Some(path) => {
                        let f = File::open(&path)
                            .with_context(|| format!("opening {}", path.display()))?;
                        eventmatchd::tools::send(&settings, &topic, BufReader::new(f)).await?
                    }
                    None => eventmatchd::tools::send(&settings, &topic, io::stdin().lock()).await?,
                };
                eprintln!(
                    "sent {n} record(s) to {}",
                    eventmatchd::tools::resolve_topic(&settings, &topic)
                );
            }
            Some(Command::Tail {
                topic,
                from_beginning,
                count,
                idle_secs,
            }) => {
                eventmatchd::tools::tail(
                    &settings,
                    &topic,
                    from_beginning,
                    count,
                    Duration::from_secs(idle_secs),
                    io::stdout().lock(),
                )
                .await?;
            }
            Some(Command::Replay { .. }) | Some(Command::Probe { .. }) => {}
        }
        Ok::<(), anyhow::Error>(())
    })
}

fn replay(settings: &Settings, file: Option<PathBuf>) -> anyhow::Result<()> {
    let engine = Engine::new(settings.catalog(), settings.notifications.max_held)
        .with_anonymous_user_pk(settings.authentik.anonymous_user_pk())
        .with_max_record_bytes(settings.kafka.max_record_bytes())
        .with_gone_horizon(settings.notifications.deleted_horizon_secs as i64)
        .with_format(settings.events.format);
    let stdout = io::stdout().lock();
    let warn = |m: String| eprintln!("eventmatchd replay: {m}");
    let stats = match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            eventmatchd::replay::run(&engine, BufReader::new(f), stdout, warn)?
        }
        None => eventmatchd::replay::run(&engine, io::stdin().lock(), stdout, warn)?,
    };
    eprintln!(
        "eventmatchd replay: {} events ({} invalid, {} skipped), {} commands, {} records out",
        stats.events, stats.invalid, stats.skipped, stats.commands, stats.records
    );
    Ok(())
}
