//! The pure logic: parsing, validation, matching, notification building and the held index,
//! and the engine that ties them together. No I/O: everything here is unit-tested without a
//! broker, and the same code runs in the daemon and in `eventmatchd replay`.

pub mod catalog;
pub mod control;
pub mod engine;
pub mod events;
pub mod index;
pub mod matcher;
pub mod notify;
pub mod policy;
pub mod policyset;
pub mod pyrepr;
pub mod rules;
pub mod validate;
