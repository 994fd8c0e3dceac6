//! The user's tools: their definitions, the runner of `--tool-exec` commands, and the MCP
//! client that brings a server's tools (`--mcp`).

pub(crate) mod exec;
pub(crate) mod mcp;
pub(crate) mod toolbox;

/// What ends a tool result cut at `--max-tool-output`, so the model knows it has only part of
/// it: the same words for a command's output and an MCP server's result.
pub(crate) fn truncation_note(total_bytes: usize, kept_bytes: usize) -> String {
    format!("\n[output truncated by gptstream: {total_bytes} bytes, first {kept_bytes} kept]")
}
