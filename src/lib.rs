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

pub mod cli;
mod control;
pub mod decode;
mod emit;
pub mod error;
pub mod event;
mod run;
mod session;
mod tools;
mod transport;

pub use run::{is_reported, run};
