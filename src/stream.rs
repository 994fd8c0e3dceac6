//! One stream, from bytes to events: whatever reads the body (a socket, a recorded file, stdin)
//! is pumped through the SSE decoder and the chunk interpreter into a sink, read by read.
//!
//! The live transport ([`crate::session`]) and `--replay` share this path, so every behaviour
//! can be reproduced offline from a recorded stream.

use std::fs::File;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::dialect::Interpreter;
use crate::event::Sink;
use crate::event::Turn;
use crate::sse;

/// One read from the network or a file: large enough to drain a fast stream in few syscalls.
const READ_BUFFER: usize = 32 * 1024;

/// How a pumped body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// The body ended (end of file, or the last chunk of the HTTP body).
    Eof,
    /// `[DONE]` came; the body may go on (a terminating chunk) or stay open.
    Done,
}

/// Reads the body as it arrives and pushes every byte through decoder and interpreter, until
/// `[DONE]` (the connection may stay open after it) or the end of the body.
pub(crate) fn pump(
    body: &mut dyn Read,
    interpreter: &mut Interpreter,
    sink: &mut dyn Sink,
    read_error: &dyn Fn(io::Error) -> anyhow::Error,
) -> anyhow::Result<BodyEnd> {
    let mut decoder = sse::Decoder::default();
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => return Ok(BodyEnd::Eof),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_error(err)),
        };
        let flow = decoder.feed(&buffer[..n], |event| interpreter.on_sse(event, sink))?;
        sink.flush()?;
        if flow == ControlFlow::Break(()) {
            return Ok(BodyEnd::Done);
        }
    }
}

/// Decodes a recorded body, from a file or stdin (`-`), exactly as a live one, in the dialect
/// its first event speaks.
pub(crate) fn replay(path: &Path, sink: &mut dyn Sink) -> anyhow::Result<Turn> {
    let mut interpreter = Interpreter::detecting(Instant::now());
    let name = path.display().to_string();
    let read_error =
        |err: io::Error| anyhow::Error::new(err).context(format!("cannot read {name}"));
    if path == Path::new("-") {
        pump(&mut io::stdin().lock(), &mut interpreter, sink, &read_error)?;
    } else {
        let mut file =
            File::open(path).with_context(|| format!("cannot open replay file {name}"))?;
        pump(&mut file, &mut interpreter, sink, &read_error)?;
    }
    interpreter.finish(sink)
}
