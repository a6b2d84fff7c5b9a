//! Checkpoints: session continuity for agents. Canonical content hashing, field
//! diffs, the handoff document, transcript chunking and secret redaction. Pure
//! functions over plain data; the store keeps the rows.

mod redact;

pub use redact::Redactor;
