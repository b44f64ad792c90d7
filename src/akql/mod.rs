//! AKQL: the event matcher policy's `query` criterion (authentik 2026.5, upstream #21618),
//! which is djangoql 0.19.1 over authentik's event schema, run by authentik as a PostgreSQL
//! filter on the one event (`EventMatcherPolicy.passes_query`).
//!
//! # Layout
//! * [`lexer`], [`parser`]: djangoql's tokens and grammar (no precedence: `and`/`or` group to
//!   the right), and a printer that parses back to the same tree.
//! * [`compile`]: authentik's schema: the names that exist, the values each takes (strings
//!   only), the `action` choices, and the comparison each becomes. Every error djangoql or
//!   Django would raise is found here.
//! * [`eval`]: evaluation against an event, with PostgreSQL's semantics ([`pg`]): NULL
//!   handling, case-insensitive text operators, `jsonb` text and order, `inet` order.
//!
//! A policy's query is compiled once, when the policy is written ([`Query::compile`]); an
//! error is kept with it, and every evaluation then *raises*: authentik's `PolicyProcess`
//! catches that and the binding is false, whatever `negate` says.

pub mod compile;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod pg;
pub mod program;
pub mod scan;
mod swar;
pub mod tree;

pub use compile::{Choices, KeyField};
pub use eval::{ColumnPaths, Columns, EventView, Slot};
pub use program::{Bound, Memo, Program};

use std::fmt;

/// Which djangoql (or Django) exception the query raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `DjangoQLParserError` (lexing and grammar).
    Parse,
    /// `DjangoQLSchemaError` (names, value types, formats).
    Schema,
    /// A value the field cannot hold (`ValueError`, `ValidationError`: addresses, uuids).
    Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AkqlError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AkqlError {
    pub fn parse(m: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Parse,
            message: m.into(),
        }
    }
    pub fn schema(m: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Schema,
            message: m.into(),
        }
    }
    pub fn value(m: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Value,
            message: m.into(),
        }
    }
}

/// A policy's `query`: its text as stored, and what it compiled to.
pub struct Query {
    text: String,
    compiled: Result<compile::Node, AkqlError>,
    action_keys: Option<Vec<String>>,
    lookup_keys: Option<Vec<(compile::KeyField, Vec<u64>)>>,
}

impl Query {
    pub fn compile(text: &str, choices: &Choices) -> Query {
        let compiled = parser::parse(text).and_then(|e| compile::compile(&e, choices));
        let action_keys = compiled.as_ref().ok().and_then(|n| n.action_keys());
        let lookup_keys = compiled.as_ref().ok().and_then(|n| n.lookup_keys());
        Query {
            text: text.to_string(),
            compiled,
            action_keys,
            lookup_keys,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why every evaluation raises, when the query does not compile.
    pub fn error(&self) -> Option<&AkqlError> {
        self.compiled.as_ref().err()
    }

    /// Whether the event matches; `None` when the query raises.
    pub fn matches(&self, view: &EventView<'_, '_>) -> Option<bool> {
        self.compiled.as_ref().ok().map(|n| n.eval(view))
    }

    /// The action values a matching event must have (see [`compile::Node::action_keys`]).
    pub fn action_keys(&self) -> Option<&[String]> {
        self.action_keys.as_deref()
    }

    /// Fields and value hashes of which a matching event has at least one (see
    /// [`compile::Node::lookup_keys`]).
    pub fn lookup_keys(&self) -> Option<&[(compile::KeyField, Vec<u64>)]> {
        self.lookup_keys.as_deref()
    }

    pub fn tree(&self) -> Option<&compile::Node> {
        self.compiled.as_ref().ok()
    }
}

impl PartialEq for Query {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Query {}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("text", &self.text)
            .field("error", &self.error())
            .finish()
    }
}
