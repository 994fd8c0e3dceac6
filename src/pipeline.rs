//! The run: flags in, one request (or a replayed body) through decoder, interpreter and sink.
//!
//! ```text
//! args + stdin -> conversation -> request -> http | replay -> sse::Decoder -> chunk::Interpreter -> sink
//!                      ^                                                            |
//!                      +------------ tool results (--tool-exec) <---- turn ---------+
//! ```
//! Bytes are pushed through as they are read; nothing waits for the end of the body. A turn that
//! calls tools the user lets us run loops back as a follow-up request.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::CommandFactory;

use crate::chunk::{Interpreter, Turn};
use crate::cli::Args;
use crate::conversation::Conversation;
use crate::error::{ApiError, Interrupted, ToolRoundsError, UsageError, is_broken_pipe};
use crate::event::{ErrorReport, Event, Sink, Summary};
use crate::http::{self, Reply, Transport};
use crate::interrupt::{self, Signal};
use crate::output::json::JsonSink;
use crate::output::text::{TextOptions, TextSink};
use crate::request::Request;
use crate::shared::{Shared, StreamSink};
use crate::toolbox::{self, Toolbox};
use crate::tools::ToolCall;
use crate::{output, prompt, request, retry, sse};

/// One read from the network or a file: large enough to drain a fast stream in few syscalls.
const READ_BUFFER: usize = 32 * 1024;

/// Runs gptstream with parsed flags.
///
/// The stream runs on a thread of its own so that this one can answer a signal at any moment,
/// even while the stream thread waits for a silent server.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(shell) = args.completions {
        return print_completions(shell);
    }
    let chat = args.chat || starts_a_chat(&args);
    let shared = Shared::new(sink(&args, chat), args.save_partial || chat);
    if chat {
        return crate::chat::run(Arc::new(args), shared);
    }
    let (ended, outcome) = mpsc::channel();
    let on_signal = ended.clone();
    interrupt::on_signal(move |signal| {
        let _ = on_signal.send(Ended::Signal(signal));
    })
    .context("cannot listen for signals")?;
    let args = Arc::new(args);
    let mut stream_sink = shared.stream();
    let stream_args = Arc::clone(&args);
    thread::Builder::new()
        .name("stream".into())
        .spawn(move || {
            let result = stream(&stream_args, &mut stream_sink);
            let _ = ended.send(Ended::Done(result));
        })
        .context("cannot start the stream thread")?;
    match outcome.recv() {
        Ok(Ended::Done(result)) => {
            if let Err(err) = &result
                && !is_broken_pipe(err)
            {
                // Best effort: if stdout is gone too, the stderr line from main still tells.
                let _ = shared.emit(&Event::Error(&ErrorReport::from_error(err)));
            }
            result
        }
        Ok(Ended::Signal(signal)) => {
            toolbox::kill_running_tools();
            let unfinished = shared.interrupt(signal);
            if args.save_partial
                && let (Some(path), Some(transcript)) = (&args.save, unfinished.transcript(None))
            {
                transcript.save(path)?;
            }
            Err(Interrupted(signal).into())
        }
        Err(_) => Err(anyhow::anyhow!("the stream thread stopped without a word")),
    }
}

/// How the stream thread's run ended, or the signal that ended it first.
enum Ended {
    Done(anyhow::Result<()>),
    Signal(Signal),
}

/// Plain `gptstream` at a terminal, with nothing to send yet, is a chat.
fn starts_a_chat(args: &Args) -> bool {
    args.prompt.is_empty()
        && args.replay.is_none()
        && !args.dry_run
        && args.tool_results.is_empty()
        && !args.tools.iter().any(|path| path == Path::new("-"))
        && io::stdin().is_terminal()
        && io::stdout().is_terminal()
}

/// The text or JSON sink, writing to stdout and stderr.
fn sink(args: &Args, chat: bool) -> Box<dyn Sink + Send> {
    if args.json {
        return Box::new(JsonSink::new(output::stdout()));
    }
    let options = TextOptions {
        reasoning: args.reasoning,
        quiet: args.quiet,
        end_with_newline: chat || io::stdout().is_terminal(),
        stderr_is_terminal: io::stderr().is_terminal(),
        choice: args.choice.map_or(0, u64::from),
        all_choices: args.choices > 1 && args.choice.is_none(),
    };
    let executed = args
        .tool_exec
        .iter()
        .filter_map(|spec| toolbox::parse_exec(spec).map(|(name, _)| name.to_owned()))
        .collect();
    Box::new(
        TextSink::new(output::stdout(), io::LineWriter::new(io::stderr()), options)
            .with_executed_tools(executed),
    )
}

fn stream(args: &Args, sink: &mut StreamSink) -> anyhow::Result<()> {
    if let Some(path) = &args.replay {
        return replay(path, sink);
    }
    let api_key = request::load_api_key(args)?;
    let tools_from_stdin = args.tools.iter().any(|path| path == Path::new("-"));
    let stdin = if args.no_stdin && !tools_from_stdin {
        None
    } else {
        prompt::read_stdin_if_piped()?
    };
    // `--tools -` claims stdin; the prompt must then come from the arguments.
    let (prompt_stdin, tools_stdin) = if tools_from_stdin {
        (None, stdin)
    } else {
        (stdin, None)
    };
    let toolbox = toolbox(args, tools_stdin.as_deref())?;
    let mut conversation = conversation(args, prompt_stdin.as_deref())?;
    let mut request = request::build(args, &conversation.messages, &toolbox.definitions, api_key)?;
    if args.dry_run {
        return request.print_dry_run(&mut io::stdout().lock(), &mut io::stderr().lock());
    }
    let transport = transport(args)?;
    let started = Instant::now();
    let turns = match answer(
        &mut request,
        args,
        &toolbox,
        &transport,
        &mut conversation,
        sink,
    ) {
        Ok(turns) => turns,
        Err(err) => {
            if let (true, Some(path)) = (args.save_partial, &args.save) {
                let partial = sink.partial().unwrap_or_default();
                conversation.push_partial_answer(&partial, &format!("{err:#}"));
                conversation.save(path)?;
            }
            return Err(err);
        }
    };
    if let Some(path) = &args.save {
        conversation.save(path)?;
    }
    sink.emit(&Event::End(&Summary::of_turns(&turns, started)))?;
    Ok(())
}

/// Sends the conversation and streams the answer; while the model calls tools that
/// `--tool-exec` runs, runs them and asks again. Every turn lands in `conversation`.
pub(crate) fn answer(
    request: &mut Request,
    args: &Args,
    toolbox: &Toolbox,
    transport: &Transport,
    conversation: &mut Conversation,
    sink: &mut StreamSink,
) -> anyhow::Result<Vec<Turn>> {
    // The answer's text is needed only to continue the conversation: saved, chat, or a tool loop.
    let keep_text = args.save.is_some() || !args.tool_exec.is_empty() || sink.keeps_partial();
    let mut turns = Vec::new();
    loop {
        sink.checkpoint(conversation);
        let turn = exchange(request, args, transport, keep_text, sink)?;
        conversation.push_assistant(&turn.content, &turn.tool_calls);
        let calls = turn.tool_calls.clone();
        turns.push(turn);
        let runnable: Vec<&ToolCall> = calls
            .iter()
            .filter(|c| toolbox.executor(&c.name).is_some())
            .collect();
        if runnable.is_empty() {
            return Ok(turns);
        }
        let rounds = turns.len() - 1;
        if rounds >= args.max_tool_rounds as usize {
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            return Err(ToolRoundsError(format!(
                "the model still calls tools ({}) after {rounds} rounds (--max-tool-rounds {})",
                names.join(", "),
                args.max_tool_rounds
            ))
            .into());
        }
        for call in &runnable {
            let outcome = toolbox.run(call)?;
            sink.emit(&Event::ToolResult {
                choice: 0,
                call,
                outcome: &outcome,
            })?;
            conversation.push_tool_result(&call.id, &outcome.content);
        }
        if runnable.len() < calls.len() {
            // The other calls are the user's to answer (`--tool-result`); the loop stops here.
            return Ok(turns);
        }
        request.set_messages(&conversation.messages);
    }
}

/// The tools from `--tools` (`-` being `tools_stdin`) and `--tool-exec`, with their limits.
pub(crate) fn toolbox(args: &Args, tools_stdin: Option<&str>) -> anyhow::Result<Toolbox> {
    let mut toolbox = Toolbox::load(&args.tools, tools_stdin, &args.tool_exec)?;
    toolbox.max_output = args.max_tool_output;
    toolbox.timeout = Some(seconds("--tool-timeout", args.tool_timeout)?);
    Ok(toolbox)
}

/// The messages to send: `--messages`, then `-s`, then `--tool-result`s, then the prompt.
fn conversation(args: &Args, stdin: Option<&str>) -> anyhow::Result<Conversation> {
    let mut conversation = match &args.messages {
        Some(path) => Conversation::load(path)?,
        None => Conversation::new(),
    };
    let continuing = !conversation.messages.is_empty();
    if let Some(system) = &args.system {
        conversation.set_system(system);
    }
    for spec in &args.tool_results {
        let (id, text) = tool_result(spec)?;
        if !conversation.pending_tool_call_ids().contains(&id) {
            return Err(UsageError(format!(
                "--tool-result {id}: the last assistant message in --messages has no tool call with that id"
            ))
            .into());
        }
        conversation.push_tool_result(id, &text);
    }
    match prompt::user_message(&args.prompt, stdin) {
        Ok(text) => conversation.push_user(&text),
        // Continuing a conversation needs no new prompt (e.g. after tool results).
        Err(_) if continuing => {}
        Err(err) => return Err(err.into()),
    }
    Ok(conversation)
}

/// Parses `--tool-result ID=TEXT` or `ID=@FILE`.
fn tool_result(spec: &str) -> anyhow::Result<(&str, String)> {
    let Some((id, value)) = spec.split_once('=').filter(|(id, _)| !id.is_empty()) else {
        return Err(UsageError(format!(
            "bad --tool-result {spec:?}: expected ID=TEXT or ID=@FILE"
        ))
        .into());
    };
    let text = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --tool-result file {path}"))?,
        None => value.to_owned(),
    };
    Ok((id, text))
}

/// One request: send it (again, if it fails in a way worth retrying), stream the answer through
/// the sink, and return the assistant's turn.
fn exchange(
    request: &mut Request,
    args: &Args,
    transport: &Transport,
    keep_text: bool,
    sink: &mut dyn Sink,
) -> anyhow::Result<Turn> {
    // Time to first token counts from here, as the user waits: connecting and retries included.
    let sent = Instant::now();
    let reply = send_with_retries(request, args, transport)?;
    let mut interpreter = Interpreter::new(sent).keeping_text(keep_text);
    match reply {
        Reply::EventStream(mut body) => {
            let read_error = |err| http::stream_read_error(err, &request.url, transport);
            pump(&mut body, &mut interpreter, sink, &read_error)?;
        }
        Reply::Json(body) => interpreter.on_completion(&body, sink)?,
    }
    interpreter.finish(sink)
}

/// Sends until the server answers 2xx or retrying stops making sense. Only failures before the
/// answer are retried here, so no text is ever printed twice. A 400 that names `stream_options`
/// is retried once without it, whatever `--retries` says.
fn send_with_retries(
    request: &mut Request,
    args: &Args,
    transport: &Transport,
) -> anyhow::Result<Reply> {
    let mut attempt = 0;
    loop {
        let err = match http::send(request, transport) {
            Ok(reply) => return Ok(reply),
            Err(err) => err,
        };
        if retry::rejects_stream_options(&err)
            && let Some(body) = request.body.as_object_mut()
            && body.remove("stream_options").is_some()
        {
            eprintln!(
                "gptstream: the server rejects stream_options; retrying without it (no usage will be reported)"
            );
            continue;
        }
        let (err, wait) = match retry::plan(err, attempt, args.retries) {
            retry::Decision::Retry { err, wait } => (err, wait),
            retry::Decision::GiveUp(err) => return Err(err),
        };
        attempt += 1;
        eprintln!(
            "gptstream: {err:#}; retrying in {:.1}s (retry {attempt} of {})",
            wait.as_secs_f64(),
            args.retries
        );
        std::thread::sleep(wait);
    }
}

/// Decodes a recorded body, from a file or stdin, exactly as a live one.
fn replay(path: &Path, sink: &mut dyn Sink) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut interpreter = Interpreter::new(started);
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
    let turn = interpreter.finish(sink)?;
    sink.emit(&Event::End(&Summary::of_turns(&[turn], started)))?;
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
        sink.flush()?;
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

/// Whether the connection will need TLS: an https:// server, or a proxy reached over https.
/// Without it, `--cacert`/`SSL_CERT_FILE` is not read: a system-wide bundle costs ~400 KiB of
/// memory to parse, half of everything gptstream allocates for a plain http:// server.
fn uses_tls(args: &Args) -> bool {
    let https = |url: &str| {
        url.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    let mut env_proxies = [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok());
    https(&args.base_url)
        || args.proxy.as_deref().is_some_and(https)
        || env_proxies.any(|proxy| https(&proxy))
}

pub(crate) fn transport(args: &Args) -> anyhow::Result<Transport> {
    Ok(Transport {
        connect: seconds("--connect-timeout", args.connect_timeout)?,
        first_byte: seconds("--first-byte-timeout", args.first_byte_timeout)?,
        idle: seconds("--idle-timeout", args.idle_timeout)?,
        total: args.timeout.map(|t| seconds("--timeout", t)).transpose()?,
        proxy: args.proxy.clone(),
        roots: args
            .cacert
            .as_deref()
            .filter(|_| uses_tls(args))
            .map(http::load_roots)
            .transpose()?,
        verbose: args.verbose,
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
