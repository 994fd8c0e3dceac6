//! Bytes to events: the SSE decoder, the two dialects' interpreters and tool-call
//! accumulation. No I/O but the pump that reads a body (a socket, or for `--replay` a file or
//! stdin).

pub mod chunk;
pub(crate) mod dialect;
pub(crate) mod responses;
pub mod sse;
pub(crate) mod stream;
pub(crate) mod tool_calls;
