//! Integration tests: the real `gptstream` binary against a scripted HTTP server on 127.0.0.1.
//! One test binary (as ripgrep and just do) so it links once.

mod server;
mod socks;
mod util;

mod attach;
mod chat;
mod cli;
mod color;
mod errors;
mod escapes;
mod hostile;
mod interop;
mod json;
mod mcp;
mod mcp_config;
mod mcp_hostile;
mod mcp_http;
mod mcp_modern;
mod models;
mod modes;
mod profiles;
mod proxy;
mod reliability;
mod replay;
mod requests;
mod responses;
mod schema;
mod secrets;
mod signals;
mod stdin;
mod terminal_safety;
mod text;
mod tls;
mod tools;
mod transcripts;
