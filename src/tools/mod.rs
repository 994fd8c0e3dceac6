//! The user's tools: their definitions, the runner of `--tool-exec` commands, and the MCP
//! client that brings a server's tools (`--mcp`).

pub(crate) mod exec;
pub(crate) mod mcp;
pub(crate) mod toolbox;
