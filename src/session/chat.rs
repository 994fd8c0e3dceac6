//! `--chat`: a conversation, one user message per line, from a person at a terminal or a script
//! over a pipe.
//!
//! This thread owns the conversation and the sink, and waits on the control channel for lines
//! from stdin (read on a thread of their own, so typing ahead works), for signals, and for the
//! end of each answer, which streams on a worker thread of the one session.
//!
//! At a terminal, Ctrl-C during an answer stops just that answer: what arrived stays on screen
//! and in the history, marked, and the chat goes on; a failed turn is reported and the chat goes
//! on. Over a pipe, as in a single run, a signal or the first failed turn ends the chat with its
//! exit code, and `--save` keeps the turns that succeeded.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
#[cfg(unix)]
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use anyhow::Context;

use crate::control::supervisor::{Control, Notice};
use crate::error::Signal;
use crate::error::{Interrupted, is_broken_pipe, scrub};
use crate::event::Summary;
use crate::event::{ErrorReport, Event, Interruption, Sink};
use crate::session::answer::{Session, Settings};
use crate::session::conversation::Conversation;
use crate::session::prompt::{MAX_STDIN_BYTES, MAX_STDIN_SHOWN};

const HELP: &str = "commands: /exit (or Ctrl-D), /save PATH, /system TEXT, /model NAME, /clear, /help; \
Ctrl-C stops an answer";

/// What the tool result says of a call no `--tool-exec` runs, so the history stays sendable.
const NOT_RUN: &str = "no --tool-exec runs this tool in this chat";

/// What came from stdin while an answer streamed, taken in order after it.
enum TypedAhead {
    Line(String),
    /// A line longer than a prompt may be: not sent, and said so.
    TooLong,
    /// The end of stdin: leave after the answer.
    End,
}

/// How the chat begins: the prompt from the arguments, and `-a` attachments for the first
/// message.
pub(crate) struct Start {
    pub(crate) first: Option<String>,
    pub(crate) attachments: Vec<serde_json::Value>,
}

struct Chat<'a> {
    session: Session,
    conversation: Conversation,
    sink: &'a mut (dyn Sink + Send),
    save: Option<PathBuf>,
    /// `--schema`: each answer is checked against it.
    schema: Option<serde_json::Value>,
    /// `-a`: sent with the first message, then gone.
    attachments: Vec<serde_json::Value>,
    /// stdin is a terminal: show a prompt, and let Ctrl-C and failed turns only interrupt.
    terminal: bool,
}

/// Runs the chat until `/exit`, the end of stdin, SIGTERM, or (over a pipe) a failed turn.
pub(crate) fn run(
    settings: Settings,
    conversation: Conversation,
    save: Option<PathBuf>,
    start: Start,
    schema: Option<serde_json::Value>,
    sink: &mut (dyn Sink + Send),
) -> anyhow::Result<()> {
    let control = Control::start()?;
    // Stopped and joined when this function returns, however it returns.
    let _lines = LineReader::start(control.sender())?;
    let mut chat = Chat {
        session: Session::new(settings)?,
        conversation,
        sink,
        save,
        schema,
        attachments: start.attachments,
        terminal: io::stdin().is_terminal(),
    };
    chat.talk(&control, start.first)
}

/// The thread that reads stdin line by line and posts each line (then the end) as a notice.
/// Invalid UTF-8 is replaced, not fatal. When the chat ends first, it is told to stop and
/// joined: on Unix it waits in `poll(2)` on stdin and on a pipe of its own, whose closing wakes
/// it; elsewhere nothing can wake a read of a terminal, and it is left to the process's exit.
struct LineReader {
    /// Dropped to wake the thread (its end of the pipe hangs up).
    #[cfg(unix)]
    wake: Option<io::PipeWriter>,
    /// Agreed on under one lock, so a thread about to block in a read it cannot be woken from
    /// is never joined.
    #[cfg(unix)]
    ending: Arc<Mutex<Ending>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl LineReader {
    #[cfg(unix)]
    fn start(notices: Sender<Notice>) -> anyhow::Result<LineReader> {
        use std::os::fd::AsFd;
        let input = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot read stdin")?;
        Self::start_on(input.into(), notices)
    }

    /// Reads lines from `input` (stdin, or a pipe in tests).
    #[cfg(unix)]
    fn start_on(input: std::fs::File, notices: Sender<Notice>) -> anyhow::Result<LineReader> {
        let (woken, wake) = io::pipe().context("cannot make a pipe")?;
        let ending = Arc::new(Mutex::new(Ending::default()));
        let shared = Arc::clone(&ending);
        let thread = thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_lines(input, &woken, &notices, &shared))
            .context("cannot start the stdin thread")?;
        Ok(LineReader {
            wake: Some(wake),
            ending,
            thread: Some(thread),
        })
    }

    #[cfg(not(unix))]
    fn start(notices: Sender<Notice>) -> anyhow::Result<LineReader> {
        let thread = thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = io::stdin().lock();
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match io::BufRead::read_until(&mut stdin, b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if notices.send(Notice::Line(line_text(&line))).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = notices.send(Notice::Eof);
            })
            .context("cannot start the stdin thread")?;
        // Not joined: nothing wakes its read (see above).
        drop(thread);
        Ok(LineReader { thread: None })
    }
}

impl Drop for LineReader {
    /// Tells the thread to stop, and joins it.
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            let mut ending = self.ending.lock().unwrap_or_else(PoisonError::into_inner);
            ending.stop = true;
            if ending.unwakeable {
                // Blocked in a read nothing wakes: left to the process's exit.
                self.thread = None;
            }
            drop(ending);
            drop(self.wake.take());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How the reading thread ends: the chat asked it to `stop`, or it is `unwakeable`, blocked in
/// a read of input that poll(2) cannot wait on.
#[cfg(unix)]
#[derive(Debug, Default)]
struct Ending {
    stop: bool,
    unwakeable: bool,
}

/// A line over the cap is dropped, not sent in part: half a message would mislead the model.
fn say_too_long() {
    eprintln!("gptstream: a line longer than {MAX_STDIN_SHOWN} was not sent");
}

/// A line as the chat takes it: without its line ending, invalid UTF-8 replaced.
fn line_text(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches(['\n', '\r'])
        .to_owned()
}

/// The reading thread: waits until `input` has bytes or `woken` hangs up, reads what is there,
/// and posts each whole line; at the end of the input, the last part line, then the end.
#[cfg(unix)]
fn read_lines(
    mut input: std::fs::File,
    woken: &io::PipeReader,
    notices: &Sender<Notice>,
    ending: &Mutex<Ending>,
) {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::io::Read;
    let mut pending = Vec::new();
    let mut scanned = 0;
    // The line being read is past the cap: its bytes are dropped up to its end.
    let mut overlong = false;
    let mut buffer = [0u8; 8192];
    loop {
        let mut fds = [
            PollFd::new(&input, PollFlags::IN),
            PollFd::new(woken, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            // Never fall into a read nothing can wake: try again shortly.
            Err(_) => {
                thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        if fds[0].revents().contains(PollFlags::NVAL) {
            // Input poll(2) cannot wait on (macOS says so of devices, ttys among them): the read
            // below blocks, and nothing wakes it, so the chat must not wait to join this thread.
            let mut ending = ending.lock().unwrap_or_else(PoisonError::into_inner);
            if ending.stop {
                return;
            }
            ending.unwakeable = true;
        }
        let read = match input.read(&mut buffer) {
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if read == 0 {
            if overlong {
                let _ = notices.send(Notice::LongLine);
            } else if !pending.is_empty() {
                let _ = notices.send(Notice::Line(line_text(&pending)));
            }
            let _ = notices.send(Notice::Eof);
            return;
        }
        pending.extend_from_slice(&buffer[..read]);
        // Only the new bytes are searched: a long line read in pieces costs linear time.
        let mut start = 0;
        while let Some(at) = pending[scanned..].iter().position(|&b| b == b'\n') {
            let end = scanned + at;
            let notice = if std::mem::take(&mut overlong) || end - start > MAX_STDIN_BYTES {
                Notice::LongLine
            } else {
                Notice::Line(line_text(&pending[start..=end]))
            };
            if notices.send(notice).is_err() {
                return;
            }
            start = end + 1;
            scanned = start;
        }
        pending.drain(..start);
        scanned = pending.len();
        // Memory stays bounded whatever the input: a line longer than a prompt may be is not kept.
        if pending.len() > MAX_STDIN_BYTES {
            pending = Vec::new();
            scanned = 0;
            overlong = true;
        }
    }
}

impl Chat<'_> {
    fn talk(&mut self, control: &Control, first: Option<String>) -> anyhow::Result<()> {
        let mut typed_ahead = VecDeque::new();
        let mut first = first;
        loop {
            // Every signal taken so far has had its effect: the watchdog can stand down.
            control.settled();
            let line = match first
                .take()
                .map(TypedAhead::Line)
                .or_else(|| typed_ahead.pop_front())
            {
                Some(TypedAhead::Line(line)) => line,
                Some(TypedAhead::TooLong) => {
                    say_too_long();
                    continue;
                }
                Some(TypedAhead::End) => break,
                None => {
                    self.prompt()?;
                    match control.next() {
                        Notice::Line(line) => line,
                        Notice::Eof => {
                            // Ctrl-D: the shell's prompt goes on a line of its own.
                            self.end_prompt_line()?;
                            break;
                        }
                        Notice::Signal(signal) => {
                            self.at_prompt(signal)?;
                            continue;
                        }
                        Notice::LongLine => {
                            say_too_long();
                            continue;
                        }
                        Notice::Finished | Notice::Deadline => continue,
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
            self.turn(line, control, &mut typed_ahead)?;
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

    fn end_prompt_line(&self) -> io::Result<()> {
        if self.terminal {
            let mut err = io::stderr().lock();
            err.write_all(b"\n")?;
            err.flush()?;
        }
        Ok(())
    }

    /// Ctrl-C at a terminal's prompt only reminds how to leave, as a shell does; SIGTERM, or a
    /// signal to a piped chat, ends the chat and says so.
    fn at_prompt(&mut self, signal: Signal) -> anyhow::Result<()> {
        if signal == Signal::Interrupt && self.terminal {
            eprintln!("\n(/exit or Ctrl-D to leave)");
            return Ok(());
        }
        self.end_prompt_line()?;
        let _ = self.sink.emit(&Event::Interrupted(&Interruption {
            signal,
            usage: None,
        }));
        Err(Interrupted(signal).into())
    }

    /// Runs one slash command; false means leave.
    fn command(&mut self, command: &str) -> anyhow::Result<bool> {
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        let rest = rest.trim();
        match (name, rest.is_empty()) {
            ("exit" | "quit", _) => return Ok(false),
            // A save that fails is said, and the chat goes on: the conversation is still here.
            ("save", false) => match self.conversation.save(Path::new(rest)) {
                Ok(()) => eprintln!(
                    "gptstream: saved {} messages to {rest}",
                    self.conversation.messages.len()
                ),
                Err(err) => eprintln!("gptstream: {}", scrub(&format!("{err:#}"))),
            },
            ("system", false) => {
                self.conversation.set_system(rest);
                eprintln!("gptstream: system message set");
            }
            ("model", false) => {
                self.session.set_model(rest);
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
            _ => eprintln!("gptstream: unknown command /{}; {HELP}", scrub(name)),
        }
        Ok(true)
    }

    /// Sends `line` and streams the answer on a worker thread; lines typed meanwhile wait their
    /// turn in `typed_ahead`.
    fn turn(
        &mut self,
        line: &str,
        control: &Control,
        typed_ahead: &mut VecDeque<TypedAhead>,
    ) -> anyhow::Result<()> {
        let before = self.conversation.messages.len();
        let attachments = std::mem::take(&mut self.attachments);
        self.conversation.push_user_with(line, attachments);
        let started = Instant::now();
        let stopper = self.session.stopper();
        let deadline = self.session.deadline().clone();
        let (session, conversation, sink) =
            (&mut self.session, &mut self.conversation, &mut *self.sink);
        let supervised = control.supervise(
            || stopper.stop(),
            &deadline,
            || session.answer(conversation, sink),
            |notice| match notice {
                Notice::Line(line) => typed_ahead.push_back(TypedAhead::Line(line)),
                Notice::LongLine => typed_ahead.push_back(TypedAhead::TooLong),
                // Ctrl-D while an answer streams: leave after it.
                Notice::Eof => typed_ahead.push_back(TypedAhead::End),
                Notice::Signal(_) | Notice::Finished | Notice::Deadline => {}
            },
        );
        let progress = self.session.progress().clone();
        if supervised.signal.is_some() || supervised.timed_out {
            // The stop shut the agent down; the next turn needs a new one.
            self.session.reopen()?;
        }
        // The worker is joined: a signal has had its effect, whatever the save below takes.
        control.settled();
        match (supervised.result, supervised.signal) {
            (Ok(turns), signal) => {
                let summary = Summary::of(&turns, started);
                if let Some(schema) = &self.schema
                    && (signal.is_none() || (signal == Some(Signal::Interrupt) && self.terminal))
                    && let Err(err) =
                        crate::session::single::check_schema(schema, &turns, &summary, self.sink)
                {
                    // The answer stays in the history, as answered; the check failed.
                    self.answer_calls_not_run();
                    self.save()?;
                    if !self.terminal {
                        return Err(err);
                    }
                    let _ = self
                        .sink
                        .emit(&Event::Error(&ErrorReport::from_error(&err)));
                    eprintln!("gptstream: {err:#}");
                    return Ok(());
                }
                self.sink.emit(&Event::End(&summary))?;
                self.answer_calls_not_run();
                match signal {
                    Some(signal) if signal == Signal::Terminate || !self.terminal => {
                        self.save_saying_why();
                        self.interrupted(signal, None)
                    }
                    _ => self.save(),
                }
            }
            (Err(_), Some(signal)) => {
                let why = format!("interrupted by {}", signal.name());
                let in_flight = progress.in_flight.then_some(progress.text.as_str());
                self.conversation.close_unfinished(in_flight, &why);
                if signal == Signal::Terminate || !self.terminal {
                    let interrupted = self.interrupted(signal, progress.usage);
                    // The signal decides the exit code; a failed save is said as well.
                    self.save_saying_why();
                    return interrupted;
                }
                let _ = self.sink.emit(&Event::Interrupted(&Interruption {
                    signal,
                    usage: progress.usage,
                }));
                self.save()
            }
            (Err(err), None) => {
                // The failed turn is not part of the history.
                if before < self.conversation.messages.len() {
                    // The attachments go with the next message instead.
                    let first = &self.conversation.messages[before]["content"];
                    if let Some(parts) = first.as_array() {
                        self.attachments = parts.iter().skip(1).cloned().collect();
                    }
                }
                self.conversation.messages.truncate(before);
                // A bug (a worker's panic, already said) ends the chat too.
                if is_broken_pipe(&err) || !self.terminal || crate::error::is_reported(&err) {
                    return Err(err);
                }
                // At a terminal the chat goes on; the user may try again.
                let _ = self
                    .sink
                    .emit(&Event::Error(&ErrorReport::from_error(&err)));
                eprintln!("gptstream: {err:#}");
                Ok(())
            }
        }
    }

    /// Reports the signal that ends the chat; the error carries its exit code.
    fn interrupted(
        &mut self,
        signal: Signal,
        usage: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> anyhow::Result<()> {
        let _ = self
            .sink
            .emit(&Event::Interrupted(&Interruption { signal, usage }));
        Err(Interrupted(signal).into())
    }

    /// A turn that ended with calls to tools nobody runs would leave the history unsendable
    /// (the API rejects unanswered `tool_calls`): answer them, saying they were not run.
    fn answer_calls_not_run(&mut self) {
        if self.conversation.answer_unanswered_calls(NOT_RUN) > 0 {
            eprintln!(
                "gptstream: the model called a tool that no --tool-exec runs; the chat told it the call was not run"
            );
        }
    }

    /// [`Self::save`] on the way out of an interrupted chat: a failure is one line on stderr,
    /// and the interruption keeps its exit code.
    fn save_saying_why(&self) {
        if let Err(err) = self.save() {
            eprintln!("gptstream: {err:#}");
        }
    }

    /// `--save`: after every turn, so leaving abruptly loses nothing.
    fn save(&self) -> anyhow::Result<()> {
        match &self.save {
            Some(path) => self.conversation.save(path),
            None => Ok(()),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn line(notice: Notice) -> Option<String> {
        match notice {
            Notice::Line(line) => Some(line),
            _ => None,
        }
    }

    #[test]
    fn lines_are_posted_whole_and_the_last_part_line_at_the_end() {
        let (input, mut output) = io::pipe().unwrap();
        let (notices, inbox) = mpsc::channel();
        let _reader =
            LineReader::start_on(std::os::fd::OwnedFd::from(input).into(), notices).unwrap();
        output.write_all(b"one\r\ntw").unwrap();
        let wait = Duration::from_secs(20);
        assert_eq!(
            line(inbox.recv_timeout(wait).unwrap()).as_deref(),
            Some("one")
        );
        output.write_all(b"o\n\xffthree").unwrap();
        assert_eq!(
            line(inbox.recv_timeout(wait).unwrap()).as_deref(),
            Some("two")
        );
        drop(output);
        assert_eq!(
            line(inbox.recv_timeout(wait).unwrap()).as_deref(),
            Some("\u{fffd}three")
        );
        assert!(matches!(inbox.recv_timeout(wait).unwrap(), Notice::Eof));
    }

    #[test]
    fn a_long_line_read_in_pieces_arrives_whole_with_the_lines_after_it() {
        let (input, mut output) = io::pipe().unwrap();
        let (notices, inbox) = mpsc::channel();
        let _reader =
            LineReader::start_on(std::os::fd::OwnedFd::from(input).into(), notices).unwrap();
        let long = "x".repeat(100_000);
        let writer = thread::spawn(move || {
            for piece in long.as_bytes().chunks(7_000) {
                output.write_all(piece).unwrap();
            }
            output.write_all(b"\nnext\nlast").unwrap();
        });
        let wait = Duration::from_secs(20);
        assert_eq!(
            line(inbox.recv_timeout(wait).unwrap()),
            Some("x".repeat(100_000))
        );
        assert_eq!(
            line(inbox.recv_timeout(wait).unwrap()).as_deref(),
            Some("next")
        );
        writer.join().unwrap();
        assert_eq!(
            line(inbox.recv_timeout(wait).unwrap()).as_deref(),
            Some("last")
        );
        assert!(matches!(inbox.recv_timeout(wait).unwrap(), Notice::Eof));
    }

    #[test]
    fn a_line_past_the_cap_is_dropped_and_said_and_the_next_line_comes_whole() {
        let (input, mut output) = io::pipe().unwrap();
        let (notices, inbox) = mpsc::channel();
        let _reader =
            LineReader::start_on(std::os::fd::OwnedFd::from(input).into(), notices).unwrap();
        let writer = thread::spawn(move || {
            let piece = vec![b'x'; 1 << 20];
            for _ in 0..=MAX_STDIN_BYTES >> 20 {
                output.write_all(&piece).unwrap();
            }
            output.write_all(b"\nnext\n").unwrap();
            // And at the end of the input, with no newline.
            for _ in 0..=MAX_STDIN_BYTES >> 20 {
                output.write_all(&piece).unwrap();
            }
        });
        let wait = Duration::from_secs(60);
        assert!(matches!(
            inbox.recv_timeout(wait).unwrap(),
            Notice::LongLine
        ));
        assert_eq!(
            line(inbox.recv_timeout(wait).unwrap()).as_deref(),
            Some("next")
        );
        writer.join().unwrap();
        assert!(matches!(
            inbox.recv_timeout(wait).unwrap(),
            Notice::LongLine
        ));
        assert!(matches!(inbox.recv_timeout(wait).unwrap(), Notice::Eof));
    }

    #[test]
    fn a_reader_waiting_on_open_input_is_stopped_and_joined() {
        let (input, mut output) = io::pipe().unwrap();
        let (notices, inbox) = mpsc::channel();
        let reader =
            LineReader::start_on(std::os::fd::OwnedFd::from(input).into(), notices).unwrap();
        output.write_all(b"hi\n").unwrap();
        assert!(inbox.recv_timeout(Duration::from_secs(20)).is_ok());
        // The input stays open and silent: only the stop can end the thread's wait.
        let (joined, done) = mpsc::channel();
        let stopper = thread::spawn(move || {
            drop(reader);
            let _ = joined.send(());
        });
        assert!(
            done.recv_timeout(Duration::from_secs(20)).is_ok(),
            "the reader was not joined"
        );
        stopper.join().unwrap();
        drop(output);
    }
}
