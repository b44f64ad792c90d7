//! The `eventmatchd` binary: parses the command line and configuration, then hands over to
//! the library. Errors are reported here, and only here, with `anyhow`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use eventmatchd::config::Settings;
use eventmatchd::engine::Engine;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process NDJSON events and control commands offline; print the records the daemon
    /// would produce as NDJSON ({"topic", "key", "value"}) on stdout.
    Replay {
        /// Input file; standard input when absent or "-".
        file: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env(cli.config.as_deref())?;
    match cli.command {
        Command::Replay { file } => replay(&settings, file),
    }
}

fn replay(settings: &Settings, file: Option<PathBuf>) -> anyhow::Result<()> {
    let engine = Engine::new(settings.catalog(), settings.notifications.max_held);
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
        "eventmatchd replay: {} events ({} invalid), {} commands, {} records out",
        stats.events, stats.invalid, stats.commands, stats.records
    );
    Ok(())
}
