//! Input formats: how authentik's events reach the event topic, turned into the record the
//! engine takes (authentik's API serialisation of an `Event`, see [`crate::events`]).
//!
//! authentik does not write to Kafka. Its events reach a topic either
//! * natively, as authentik's API serialises them (a producer of your own), or
//! * by change data capture of its table `authentik_events_event` with Debezium's PostgreSQL
//!   connector ([`debezium`]).
//!
//! authentik's own log line for a new event (`"Created Event"`, `events/models.py`
//! `Event.save`) carries `action`, `context`, `client_ip` and `user` only: no event uuid (from
//! which notification pks are derived), no `app`, no `created`. It is refused with a reason
//! saying so, rather than given an invented pk; README "Feeding events".
//!
//! # Layout
//! * [`detect`]: whether a record may be other than native (`events.format = "auto"`),
//!   without parsing it.
//! * [`debezium`]: the change-event envelope (schemas on or off), the unwrapped row
//!   (`ExtractNewRecordState`), and the row → Event conversion.

pub mod debezium;
pub mod detect;

use crate::events::EventError;
use serde::Deserialize;
use std::borrow::Cow;

/// `events.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// authentik's API serialisation only (what eventmatchd took before formats existed).
    Authentik,
    /// Debezium change events or unwrapped rows of `authentik_events_event` only.
    Debezium,
    /// Each record's shape decides (a native event, a change event, an unwrapped row).
    #[default]
    Auto,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Authentik => "authentik",
            Format::Debezium => "debezium",
            Format::Auto => "auto",
        }
    }
}

/// Why a record that is not an event was skipped (the `reason` label of
/// `eventmatchd_events_skipped_total`). Skipped records are never dead-lettered.
pub const SKIP_REASONS: [&str; 5] = ["tombstone", "update", "delete", "truncate", "message"];

/// What a record is, in the engine's terms.
#[derive(Debug, PartialEq)]
pub enum Ingested<'a> {
    /// An event in authentik's API shape (the record itself when it already is one).
    Event(Cow<'a, [u8]>),
    /// Not an event (a tombstone, an update, a delete...): counted under this reason.
    Skip(&'static str),
}

/// Turns one record value (`None`: a Kafka tombstone) into an event or a skip.
pub fn ingest(format: Format, value: Option<&[u8]>) -> Result<Ingested<'_>, EventError> {
    let Some(bytes) = value else {
        return match format {
            // Kept as before formats existed: a native topic has no tombstones, so one is a
            // record to look at (the dead-letter topic says "not JSON").
            Format::Authentik => Ok(Ingested::Event(Cow::Borrowed(&[]))),
            _ => Ok(Ingested::Skip("tombstone")),
        };
    };
    match format {
        Format::Authentik => Ok(Ingested::Event(Cow::Borrowed(bytes))),
        Format::Debezium => debezium::ingest(bytes, true),
        Format::Auto if detect::maybe_not_native(bytes) => debezium::ingest_auto(bytes),
        Format::Auto => Ok(Ingested::Event(Cow::Borrowed(bytes))),
    }
}
