//! One stream, from bytes to events: whatever reads the body (a socket, a recorded file, stdin)
//! is pumped through the SSE decoder and the chunk interpreter into a sink, read by read.
//!
//! The live transport ([`crate::session::answer`]) and `--replay` share this path, so every behaviour
//! can be reproduced offline from a recorded stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::decode::dialect::Interpreter;
use crate::decode::sse;
use crate::error::StreamError;
use crate::event::{Event, Sink, Turn};

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

/// What pumping a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pumped {
    pub(crate) end: BodyEnd,
    /// The reads that brought generated tokens (text, reasoning, a refusal, tool-call
    /// fragments): a rate is worth giving only for tokens that came over two or more.
    pub(crate) token_reads: u32,
}

/// Reads the body as it arrives and pushes every byte through decoder and interpreter, until
/// `[DONE]` (the connection may stay open after it) or the end of the body.
pub(crate) fn pump(
    body: &mut dyn Read,
    interpreter: &mut Interpreter,
    sink: &mut dyn Sink,
    read_error: &dyn Fn(io::Error) -> anyhow::Error,
) -> anyhow::Result<Pumped> {
    let mut decoder = sse::Decoder::default();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut sink = TokenWatch {
        sink,
        saw_tokens: false,
    };
    let mut token_reads: u32 = 0;
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => {
                return Ok(Pumped {
                    end: BodyEnd::Eof,
                    token_reads,
                });
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_error(err)),
        };
        let flow = decoder.feed(&buffer[..n], |event| interpreter.on_sse(event, &mut sink))?;
        sink.flush()?;
        if std::mem::take(&mut sink.saw_tokens) {
            token_reads = token_reads.saturating_add(1);
        }
        if flow == ControlFlow::Break(()) {
            return Ok(Pumped {
                end: BodyEnd::Done,
                token_reads,
            });
        }
    }
}

/// Passes events on, noting whether one of them was a generated token.
struct TokenWatch<'a> {
    sink: &'a mut dyn Sink,
    saw_tokens: bool,
}

impl Sink for TokenWatch<'_> {
    fn emit(&mut self, event: &Event<'_>) -> io::Result<()> {
        if let Event::Content { .. }
        | Event::Reasoning { .. }
        | Event::Refusal { .. }
        | Event::ToolCallDelta { .. } = event
        {
            self.saw_tokens = true;
        }
        self.sink.emit(event)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// The largest whole JSON body (a `--no-stream` recording) that `--replay` reads.
const JSON_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// Decodes a recorded body, from a file or stdin (`-`), exactly as a live one, in the dialect
/// its first event speaks. A body that is one JSON object (recorded with `--no-stream`) is read
/// whole, as a non-streamed answer.
pub(crate) fn replay(path: &Path, sink: &mut dyn Sink) -> anyhow::Result<Turn> {
    let mut interpreter = Interpreter::detecting(Instant::now());
    let name = path.display().to_string();
    let read_error =
        |err: io::Error| anyhow::Error::new(err).context(format!("cannot read {name}"));
    let source: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open replay file {name}"))?)
    };
    let mut body = BufReader::with_capacity(READ_BUFFER, source);
    if starts_with_json_object(&mut body).map_err(read_error)? {
        let mut bytes = Vec::new();
        body.take(JSON_BODY_LIMIT)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
            StreamError(format!("{name} is neither SSE nor one JSON object: {err}"))
        })?;
        interpreter.on_completion(&value, sink)?;
    } else {
        // A replay's reads say nothing of how fast the tokens came: it counts none.
        pump(&mut body, &mut interpreter, sink, &read_error)?;
    }
    interpreter.finish(sink)
}

/// Skips leading white space and says whether a `{` comes next (an SSE body starts with a
/// field name, a comment or a blank line, never a brace).
fn starts_with_json_object(body: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let buffer = body.fill_buf()?;
        let Some(first) = buffer.iter().position(|b| !b.is_ascii_whitespace()) else {
            if buffer.is_empty() {
                return Ok(false);
            }
            let all = buffer.len();
            body.consume(all);
            continue;
        };
        let brace = buffer[first] == b'{';
        if brace {
            body.consume(first);
        }
        return Ok(brace);
    }
}
