//! The run: flags in, one request (or a replayed body) through decoder, interpreter and sink.
//!
//! ```text
//! args + stdin -> prompt -> request -> http | replay -> sse::Decoder -> chunk::Interpreter -> sink
//! ```
//! Bytes are pushed through as they are read; nothing waits for the end of the body.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::CommandFactory;

use crate::chunk::Interpreter;
use crate::cli::Args;
use crate::error::{ApiError, UsageError, is_broken_pipe};
use crate::event::{ErrorReport, Event, Sink};
use crate::http::{self, Reply, Timeouts};
use crate::output::json::JsonSink;
use crate::output::text::{TextOptions, TextSink};
use crate::{prompt, request, sse};

/// One read from the network or a file: large enough to drain a fast stream in few syscalls.
const READ_BUFFER: usize = 64 * 1024;

/// Runs gptstream with parsed flags.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(shell) = args.completions {
        return print_completions(shell);
    }
    let mut sink: Box<dyn Sink> = if args.json {
        Box::new(JsonSink::new(io::stdout().lock()))
    } else {
        let options = TextOptions {
            reasoning: args.reasoning,
            quiet: args.quiet,
            stdout_is_terminal: io::stdout().is_terminal(),
            stderr_is_terminal: io::stderr().is_terminal(),
        };
        Box::new(TextSink::new(
            io::stdout().lock(),
            io::stderr().lock(),
            options,
        ))
    };
    let result = stream(&args, sink.as_mut());
    if let Err(err) = &result
        && !is_broken_pipe(err)
    {
        // Best effort: if stdout is gone too, the stderr line from main still tells.
        let _ = sink.emit(&Event::Error(&ErrorReport::from_error(err)));
    }
    result
}

fn stream(args: &Args, sink: &mut dyn Sink) -> anyhow::Result<()> {
    if let Some(path) = &args.replay {
        return replay(path, sink);
    }
    let api_key = request::load_api_key(args)?;
    let stdin = if args.no_stdin {
        None
    } else {
        prompt::read_stdin_if_piped()?
    };
    let user = prompt::user_message(&args.prompt, stdin.as_deref())?;
    let request = request::build(args, &user, api_key)?;
    if args.dry_run {
        return request.print_dry_run(&mut io::stdout().lock(), &mut io::stderr().lock());
    }
    let timeouts = timeouts(args)?;
    let started = Instant::now();
    let mut interpreter = Interpreter::new(started);
    match http::send(&request, &timeouts)? {
        Reply::EventStream(mut body) => {
            let read_error = |err| http::stream_read_error(err, &request.url, &timeouts);
            pump(&mut body, &mut interpreter, sink, &read_error)?;
        }
        Reply::Json(body) => interpreter.on_completion(&body, sink)?,
    }
    interpreter.finish(sink)?;
    Ok(())
}

/// Decodes a recorded body, from a file or stdin, exactly as a live one.
fn replay(path: &Path, sink: &mut dyn Sink) -> anyhow::Result<()> {
    let mut interpreter = Interpreter::new(Instant::now());
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
    interpreter.finish(sink)?;
    Ok(())
}

/// Reads the body as it arrives and pushes every byte through decoder and interpreter, until
/// `[DONE]` (the connection may stay open after it) or the end of the body.
fn pump(
    body: &mut dyn Read,
    interpreter: &mut Interpreter,
    sink: &mut dyn Sink,
    read_error: &dyn Fn(io::Error) -> anyhow::Error,
) -> anyhow::Result<()> {
    let mut decoder = sse::Decoder::default();
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_error(err)),
        };
        let flow = decoder.feed(&buffer[..n], |event| interpreter.on_sse(event, sink))?;
        if flow == ControlFlow::Break(()) {
            return Ok(());
        }
    }
}

fn seconds(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            UsageError(format!(
                "{flag} must be a positive number of seconds, got {secs}"
            ))
            .into()
        })
}

fn timeouts(args: &Args) -> anyhow::Result<Timeouts> {
    Ok(Timeouts {
        connect: seconds("--connect-timeout", args.connect_timeout)?,
        first_byte: seconds("--first-byte-timeout", args.first_byte_timeout)?,
        idle: seconds("--idle-timeout", args.idle_timeout)?,
        total: args.timeout.map(|t| seconds("--timeout", t)).transpose()?,
    })
}

/// Generated in memory first: clap_complete panics on a write error, and `| head` is one.
fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "gptstream", &mut script);
    let mut stdout = io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(())
}

impl ErrorReport {
    /// The `--json` view of an error: the whole message, and status and code when the server
    /// gave them.
    pub fn from_error(err: &anyhow::Error) -> Self {
        let api = err
            .chain()
            .find_map(|cause| cause.downcast_ref::<ApiError>());
        ErrorReport {
            message: format!("{err:#}"),
            status: api.and_then(|a| a.status),
            code: api.and_then(|a| a.code.clone()),
        }
    }
}
