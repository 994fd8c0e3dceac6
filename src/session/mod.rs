//! The conversation and its drivers: one answer with its tool loop, a chat, transcripts,
//! attachments and the schema check.

pub(crate) mod answer;
pub(crate) mod attach;
pub(crate) mod chat;
pub(crate) mod conversation;
pub(crate) mod models;
pub(crate) mod prompt;
pub(crate) mod replace;
pub(crate) mod schema;
pub(crate) mod single;
