//! gptstream: stream a chat completion from any OpenAI-compatible server into a pipe.
//!
//! The stages of the data's path, one module each: `cli` (+ `config`, the profile file) →
//! `plan` (flags resolved once: `prompt`, `attach`, `conversation`, `request`, `schema`,
//! `toolbox`) → `session` (requests through one `http` agent, each body laid out by `body`) →
//! `stream` (`sse` → `chunk` or `responses`, with `tool_calls`) → `output`. Beside it: `models`
//! (`--list-models`) and `manual` (`--man`). Around it, the control
//! path: `run` and `chat` drive a session, `control` runs each answer on a worker thread and
//! stops and joins it on a `signals` notice. `sse`, `chunk`, `tool_calls` and `output` do no
//! I/O of their own and are tested on bytes.

mod attach;
mod body;
mod chat;
pub mod chunk;
pub mod cli;
mod config;
mod control;
mod conversation;
mod dialect;
pub mod error;
pub mod event;
mod http;
mod manual;
mod models;
mod output;
mod plan;
mod prompt;
mod proxy;
mod reaper;
mod redact;
mod request;
mod responses;
mod retry;
mod run;
mod schema;
mod session;
mod signals;
pub mod sse;
mod stream;
mod tool_calls;
mod toolbox;

pub use run::{is_reported, run};
