//! gptstream: stream a chat completion from any OpenAI-compatible server into a pipe.
//!
//! The stages of the data's path, one folder each, each importing only from the stages below
//! it (README, "How it works"): `cli` (flags, config file → one `Plan`) → `session`
//! (the conversation and its drivers: one answer, a chat) → `tools` (`--tools`, `--tool-exec`)
//! → `control` (the worker, signals, child processes) → `transport` (request, HTTP, proxy,
//! retry) → `decode` (SSE → chunk or Responses events) → `emit` (text and JSON sinks). Under
//! them all: `event` (the pipeline's vocabulary) and `error` (error kinds and exit codes).
//! The SSE decoder, the interpreters and the sinks do no I/O of their own (the sinks write to
//! whatever `Write` they are given) and are tested on bytes.
//!
//! What is `pub` here is what the binary and the benchmarks use; everything else is
//! `pub(crate)`, so rustc finds what is dead.

mod cli;
mod control;
pub mod decode;
mod emit;
pub mod error;
pub mod event;
mod run;
mod session;
mod tools;
mod transport;

pub use cli::args::Args;
pub use error::is_reported;
pub use run::run;
