//! gptstream: stream a chat completion from any OpenAI-compatible server into a pipe.
//!
//! The stages of the data's path, one module each (see `pipeline` for how they connect):
//! `cli` → `prompt` + `conversation` → `request` → `http` → `sse` → `chunk` (with `tools`) →
//! `output`; `toolbox` runs tool calls for the user and feeds the results back.
//! `sse`, `chunk`, `tools` and `output` do no I/O of their own and are tested on bytes.

pub mod chat;
pub mod chunk;
pub mod cli;
pub mod conversation;
pub mod error;
pub mod event;
pub mod http;
pub mod interrupt;
pub mod output;
pub mod pipeline;
pub mod prompt;
pub mod redact;
pub mod request;
pub mod retry;
pub mod shared;
pub mod sse;
pub mod toolbox;
pub mod tools;

pub use pipeline::run;
