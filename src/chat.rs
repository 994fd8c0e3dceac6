//! `--chat`: a conversation, one user message per line, from a person at a terminal or a script
//! over a pipe.
//!
//! The main thread owns the conversation and reads one channel: lines from stdin (read on a
//! thread of their own, so typing ahead works), signals, and the answers of the stream thread
//! that each turn starts. Ctrl-C during an answer cancels just that answer: what arrived stays on
//! screen and in the history, marked, and the chat goes on.

use std::collections::VecDeque;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use anyhow::Context;

use crate::cli::Args;
use crate::conversation::Conversation;
use crate::error::{Interrupted, UsageError, is_broken_pipe};
use crate::event::{ErrorReport, Event, Summary};
use crate::interrupt::{self, Signal};
use crate::pipeline;
use crate::request::{self, ApiKey, Request};
use crate::shared::Shared;
use crate::toolbox::{self, Toolbox};

const HELP: &str = "commands: /exit (or Ctrl-D), /save PATH, /system TEXT, /model NAME, /clear, /help; \
Ctrl-C stops an answer";

/// What the chat waits for.
enum Input {
    Line(String),
    Eof,
    Signal(Signal),
    /// Turn `n` ended: the conversation it grew, and whether the server rejected `stream_options`.
    Answered(u64, anyhow::Result<(Conversation, bool)>),
}

/// What stays the same from turn to turn.
struct Chat {
    args: Arc<Args>,
    api_key: Option<ApiKey>,
    toolbox: Arc<Toolbox>,
    transport: crate::http::Transport,
    shared: Shared,
    conversation: Conversation,
    model: String,
    /// The server said no to `stream_options`: stop asking.
    usage_rejected: bool,
    /// stdin is a terminal: show a prompt, and let Ctrl-C at the prompt only remind.
    terminal: bool,
}

/// Runs the chat until `/exit`, the end of stdin, or SIGTERM.
pub fn run(args: Arc<Args>, shared: Shared) -> anyhow::Result<()> {
    if args
        .tools
        .iter()
        .any(|path| path == std::path::Path::new("-"))
    {
        return Err(
            UsageError("--tools - cannot be used with --chat: stdin is the chat".into()).into(),
        );
    }
    let toolbox = pipeline::toolbox(&args, None)?;
    let mut conversation = match &args.messages {
        Some(path) => Conversation::load(path)?,
        None => Conversation::new(),
    };
    if let Some(system) = &args.system {
        conversation.set_system(system);
    }
    let mut chat = Chat {
        api_key: request::load_api_key(&args)?,
        toolbox: Arc::new(toolbox),
        transport: pipeline::transport(&args)?,
        model: args.model.clone(),
        args,
        shared,
        conversation,
        usage_rejected: false,
        terminal: io::stdin().is_terminal(),
    };
    let (inputs, input) = mpsc::channel();
    let on_signal = inputs.clone();
    interrupt::on_signal(move |signal| {
        let _ = on_signal.send(Input::Signal(signal));
    })
    .context("cannot listen for signals")?;
    read_lines(inputs.clone())?;
    chat.talk(&inputs, &input)
}

/// Reads stdin line by line on a thread of its own; invalid UTF-8 is replaced, not fatal.
fn read_lines(inputs: mpsc::Sender<Input>) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']).to_owned();
                        if inputs.send(Input::Line(text)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = inputs.send(Input::Eof);
        })
        .context("cannot start the stdin thread")?;
    Ok(())
}

impl Chat {
    fn talk(
        &mut self,
        inputs: &mpsc::Sender<Input>,
        input: &mpsc::Receiver<Input>,
    ) -> anyhow::Result<()> {
        let mut typed_ahead = VecDeque::new();
        let mut first = Some(self.args.prompt.join(" ")).filter(|p| !p.trim().is_empty());
        let mut turn = 0;
        loop {
            let line = match first.take().or_else(|| typed_ahead.pop_front()) {
                Some(line) => line,
                None => {
                    self.prompt()?;
                    match input.recv() {
                        Ok(Input::Line(line)) => line,
                        Ok(Input::Eof) | Err(_) => break,
                        Ok(Input::Signal(signal)) => {
                            self.at_prompt(signal)?;
                            continue;
                        }
                        // A cancelled turn's late answer: already dealt with.
                        Ok(Input::Answered(..)) => continue,
                    }
                }
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(command) = line.strip_prefix('/') {
                if self.command(command)? {
                    continue;
                }
                break;
            }
            turn += 1;
            self.conversation.push_user(line);
            self.start_turn(turn, inputs)?;
            self.finish_turn(turn, input, &mut typed_ahead)?;
        }
        Ok(())
    }

    fn prompt(&self) -> io::Result<()> {
        if self.terminal {
            let mut err = io::stderr().lock();
            err.write_all(b"you> ")?;
            err.flush()?;
        }
        Ok(())
    }

    /// Ctrl-C at the prompt only reminds how to leave, as a shell does; SIGTERM leaves.
    fn at_prompt(&self, signal: Signal) -> anyhow::Result<()> {
        if signal == Signal::Interrupt && self.terminal {
            eprintln!("\n(/exit or Ctrl-D to leave)");
            return Ok(());
        }
        Err(Interrupted(signal).into())
    }

    /// Runs one slash command; false means leave.
    fn command(&mut self, command: &str) -> anyhow::Result<bool> {
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        let rest = rest.trim();
        match (name, rest.is_empty()) {
            ("exit" | "quit", _) => return Ok(false),
            ("save", false) => {
                self.conversation.save(std::path::Path::new(rest))?;
                eprintln!(
                    "gptstream: saved {} messages to {rest}",
                    self.conversation.messages.len()
                );
            }
            ("system", false) => {
                self.conversation.set_system(rest);
                eprintln!("gptstream: system message set");
            }
            ("model", false) => {
                self.model = rest.to_owned();
                eprintln!("gptstream: model {rest}");
            }
            ("clear", _) => {
                self.conversation.clear();
                eprintln!("gptstream: history cleared");
            }
            ("help", _) => eprintln!("{HELP}"),
            ("save" | "system" | "model", true) => {
                eprintln!("gptstream: /{name} needs a value; {HELP}")
            }
            _ => eprintln!("gptstream: unknown command /{name}; {HELP}"),
        }
        Ok(true)
    }

    /// Starts turn `turn` on a stream thread with a copy of the conversation.
    fn start_turn(&self, turn: u64, inputs: &mpsc::Sender<Input>) -> anyhow::Result<()> {
        let mut request = request::build(
            &self.args,
            &self.conversation.messages,
            &self.toolbox.definitions,
            self.api_key.clone(),
        )?;
        request.body["model"] = self.model.clone().into();
        if self.usage_rejected
            && let Some(body) = request.body.as_object_mut()
        {
            body.remove("stream_options");
        }
        let (args, toolbox, transport) = (
            Arc::clone(&self.args),
            Arc::clone(&self.toolbox),
            self.transport.clone(),
        );
        let mut conversation = self.conversation.clone();
        let mut sink = self.shared.stream();
        let answered = inputs.clone();
        thread::Builder::new()
            .name("stream".into())
            .spawn(move || {
                let started = Instant::now();
                let result = pipeline::answer(
                    &mut request,
                    &args,
                    &toolbox,
                    &transport,
                    &mut conversation,
                    &mut sink,
                )
                .and_then(|turns| {
                    use crate::event::Sink;
                    sink.emit(&Event::End(&Summary::of_turns(&turns, started)))?;
                    Ok((conversation, rejected_usage(&request)))
                });
                let _ = answered.send(Input::Answered(turn, result));
            })
            .context("cannot start the stream thread")?;
        Ok(())
    }

    /// Waits for turn `turn` to end, or cancels it on Ctrl-C. Lines typed meanwhile wait their turn.
    fn finish_turn(
        &mut self,
        turn: u64,
        input: &mpsc::Receiver<Input>,
        typed_ahead: &mut VecDeque<String>,
    ) -> anyhow::Result<()> {
        loop {
            match input.recv() {
                Ok(Input::Answered(n, result)) if n == turn => return self.answered(result),
                Ok(Input::Answered(..)) => {}
                Ok(Input::Line(line)) => typed_ahead.push_back(line),
                // Ctrl-D while an answer streams: leave after it.
                Ok(Input::Eof) => typed_ahead.push_back("/exit".into()),
                Ok(Input::Signal(signal)) => {
                    toolbox::kill_running_tools();
                    let unfinished = self.shared.interrupt(signal);
                    let before = std::mem::take(&mut self.conversation);
                    self.conversation = unfinished.transcript(Some(before)).unwrap_or_default();
                    self.save()?;
                    if signal == Signal::Terminate {
                        return Err(Interrupted(signal).into());
                    }
                    return Ok(());
                }
                Err(_) => anyhow::bail!("the stream thread stopped without a word"),
            }
        }
    }

    fn answered(&mut self, result: anyhow::Result<(Conversation, bool)>) -> anyhow::Result<()> {
        match result {
            Ok((conversation, usage_rejected)) => {
                self.conversation = conversation;
                self.usage_rejected |= usage_rejected;
                self.save()
            }
            Err(err) if is_broken_pipe(&err) => Err(err),
            Err(err) => {
                // The chat goes on; the user may try again.
                let _ = self
                    .shared
                    .emit(&Event::Error(&ErrorReport::from_error(&err)));
                eprintln!("gptstream: {err:#}");
                if self
                    .conversation
                    .messages
                    .last()
                    .is_some_and(|m| m["role"] == "user")
                {
                    self.conversation.messages.pop();
                }
                Ok(())
            }
        }
    }

    /// `--save`: after every turn, so leaving abruptly loses nothing.
    fn save(&self) -> anyhow::Result<()> {
        match &self.args.save {
            Some(path) => self.conversation.save(path),
            None => Ok(()),
        }
    }
}

fn rejected_usage(request: &Request) -> bool {
    request.body.get("stream_options").is_none()
}
