//! A session: the requests of one run or one chat, through one HTTP agent.
//!
//! It owns what stays the same from request to request (the transport and its agent, the
//! request template, the toolbox, the loop's limits) and runs one answer at a time: send,
//! stream the reply through the sink, run the tools the user lets us run, ask again. Every
//! request goes through the one agent, so a connection the server keeps alive is reused by
//! tool-loop follow-ups, retries and chat turns.
//!
//! While an answer runs, [`Progress`] says how far it got (the text of the request in flight,
//! the usage so far): the controlling thread reads it after joining the worker, to report and
//! save an answer that a signal or an error cut short.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value};

use crate::control::supervisor::{Cancel, Deadline};
use crate::decode::dialect::Dialect;
use crate::decode::dialect::Interpreter;
use crate::decode::stream::{self, BodyEnd};
use crate::emit::redact::Blanking;
use crate::error::{ApiError, Cancelled, Panicked, ToolRoundsError};
use crate::event::ToolCall;
use crate::event::Turn;
use crate::event::{Event, Sink, add_usage};
use crate::session::conversation::Conversation;
use crate::tools::toolbox::Toolbox;
use crate::transport::http::{self, Reply, Transport};
use crate::transport::request::Request;
use crate::transport::retry;

/// What a session needs, resolved once from the flags (see [`crate::cli::plan`]).
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) transport: Transport,
    /// URL, headers, key and every body field but `messages`.
    pub(crate) template: Request,
    pub(crate) toolbox: Toolbox,
    pub(crate) max_tool_rounds: u32,
    pub(crate) retries: u32,
    /// Keep the answer's text: for a transcript, a chat's history or a tool loop.
    pub(crate) keep_text: bool,
    /// The choice (of `-n`) whose text and tool calls continue the conversation.
    pub(crate) choice: u64,
    /// `--record`: where each response body goes as it is received.
    pub(crate) record: Option<std::path::PathBuf>,
}

/// How far the answer in flight got; read after the worker is joined.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// A request was sent whose answer has not been added to the conversation.
    pub(crate) in_flight: bool,
    /// The text of that answer so far (when the text is kept).
    pub(crate) text: String,
    /// Its refusal text so far (when the text is kept).
    pub(crate) refusal: String,
    /// The usage reported so far, summed over the requests of this answer.
    pub(crate) usage: Option<Map<String, Value>>,
}

/// After `[DONE]`, the rest of the body (usually just the chunked terminator) is read on a
/// thread, so that ureq puts the connection back in the pool without delaying the answer.
struct Drain {
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// How long the next request waits for the previous body's drain before opening a connection
/// of its own: a server that keeps a body open after `[DONE]` costs this much, once per body.
const DRAIN_PATIENCE: Duration = Duration::from_millis(250);
/// A body that goes on for longer than this after `[DONE]` is not worth a connection.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How often a request being sent looks for a stop.
const STOP_CHECK: Duration = Duration::from_millis(20);

pub(crate) struct Session {
    settings: Settings,
    agent: ureq::Agent,
    cancel: Cancel,
    progress: Progress,
    drains: Vec<Drain>,
    /// Drains that were waited for once and were still reading.
    lingering: Vec<JoinHandle<()>>,
    /// Sending threads a stop left behind in a connection attempt (see [`Session::send`]).
    stuck_senders: Vec<JoinHandle<()>>,
    /// `--timeout` of the request in flight, for the controlling thread to enforce when the
    /// worker cannot (stuck writing, where ureq does not count).
    deadline: Deadline,
}

/// The controlling thread's handle to stop the answer in flight.
pub(crate) struct Stopper {
    cancel: Cancel,
    agent: ureq::Agent,
}

impl Stopper {
    /// Cancels waits, kills running tools and shuts the agent down, which ends a blocked read.
    pub(crate) fn stop(self) {
        self.cancel.cancel();
        crate::control::children::kill_running_tools();
        self.agent.shutdown();
    }
}

impl Session {
    pub(crate) fn new(settings: Settings) -> anyhow::Result<Session> {
        let agent = http::agent(&settings.transport)?;
        Ok(Session {
            settings,
            agent,
            cancel: Cancel::default(),
            progress: Progress::default(),
            drains: Vec::new(),
            lingering: Vec::new(),
            stuck_senders: Vec::new(),
            deadline: Deadline::default(),
        })
    }

    /// The deadline of each request of [`Session::answer`], for [`crate::control::supervisor::Control::supervise`].
    pub(crate) fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    /// A handle for another thread to stop the answer that is about to run.
    pub(crate) fn stopper(&self) -> Stopper {
        Stopper {
            cancel: self.cancel.clone(),
            agent: self.agent.clone(),
        }
    }

    /// After a stop: a new agent (the old one refuses connections) and a fresh cancel flag, for
    /// the chat's next turn.
    pub(crate) fn reopen(&mut self) -> anyhow::Result<()> {
        self.join_drains();
        self.agent = http::agent(&self.settings.transport)?;
        self.cancel = Cancel::default();
        Ok(())
    }

    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Chat's `/model`.
    pub(crate) fn set_model(&mut self, model: &str) {
        self.settings.template.body["model"] = model.into();
    }

    /// Sends the conversation and streams the answer; while the model calls tools that
    /// `--tool-exec` runs, runs them and asks again. Every finished request's turn lands in
    /// `conversation`.
    pub(crate) fn answer(
        &mut self,
        conversation: &mut Conversation,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Vec<Turn>> {
        self.progress = Progress::default();
        let mut turns = Vec::new();
        loop {
            self.cancel.check()?;
            let mut request = self.settings.template.clone();
            request.set_messages(&conversation.messages);
            // Shared with the thread that sends it, not copied: it carries the attachments.
            let mut request = Arc::new(request);
            self.progress.in_flight = true;
            self.progress.text.clear();
            self.progress.refusal.clear();
            let turn = self.exchange(&mut request, sink);
            // The request is over; what follows (its tools) has time limits of its own.
            self.deadline.clear();
            let turn = turn?;
            conversation.push_assistant(&turn.content, &turn.tool_calls);
            if let Some(items) = &turn.output_items {
                // Item ids name stored items; unless the request is stored, they go back without.
                let stored = self.settings.template.body["store"] == true;
                conversation.keep_output_items(items, stored);
            }
            self.progress.in_flight = false;
            self.progress.text.clear();
            let calls = turn.tool_calls.clone();
            turns.push(turn);
            let toolbox = &self.settings.toolbox;
            let runnable: Vec<&ToolCall> = calls.iter().filter(|c| toolbox.runs(&c.name)).collect();
            if runnable.is_empty() {
                return Ok(turns);
            }
            let rounds = turns.len() - 1;
            let max = self.settings.max_tool_rounds;
            if rounds >= max as usize {
                // What the model wanted, shown as a call nobody runs is shown.
                for call in &runnable {
                    sink.emit(&Event::ToolCallNotRun {
                        choice: self.settings.choice,
                        call,
                    })?;
                }
                let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
                let plural = if rounds == 1 { "" } else { "s" };
                return Err(ToolRoundsError(format!(
                    "the model still calls tools ({}) after {rounds} round{plural} (--max-tool-rounds {max})",
                    crate::error::scrub(&names.join(", "))
                ))
                .into());
            }
            // Before the first tool starts: whatever a tool leaves becomes ours to kill.
            crate::control::reaper::adopt();
            for call in &runnable {
                self.cancel.check()?;
                let outcome = toolbox.run(call, &self.cancel)?;
                // A tool killed by the stop is no result to send.
                self.cancel.check()?;
                sink.emit(&Event::ToolResult {
                    choice: self.settings.choice,
                    call,
                    outcome: &outcome,
                })?;
                conversation.push_tool_result(&call.id, &outcome.content);
            }
            if runnable.len() < calls.len() {
                // The other calls are the user's to answer (`--tool-result`); the loop stops here.
                return Ok(turns);
            }
        }
    }

    /// One request: send it (again, if it fails in a way worth retrying), stream the answer
    /// through the sink, and return the assistant's turn.
    fn exchange(
        &mut self,
        request: &mut Arc<Request>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Turn> {
        // Time to first token counts from here, as the user waits: connecting and retries included.
        let sent = Instant::now();
        let reply = self.send_with_retries(request)?;
        // The text is kept once, by the recording sink below, and handed to the turn at the end.
        let keep = self.settings.keep_text;
        // `-n`, or an `n` set with `--extra`; a server's own default is one choice.
        let choices = request.body.get("n").and_then(Value::as_u64).unwrap_or(1);
        let mut interpreter =
            Interpreter::new(request.dialect, sent, self.settings.choice, keep, choices);
        let mut recording = Recording {
            sink,
            progress: &mut self.progress,
            choice: self.settings.choice,
            keep_text: self.settings.keep_text,
        };
        let mut token_reads = 0;
        match reply {
            Reply::EventStream(mut body) => {
                let transport = &self.settings.transport;
                let read_error = |err| http::stream_read_error(err, &request.url, transport);
                let pumped = match &self.settings.record {
                    // The recorder borrows the body: what is drained after `[DONE]` is not
                    // written to a file that the next request may have started again.
                    Some(path) => {
                        let mut recorded = Recorder::wrap(Box::new(&mut body), path);
                        stream::pump(&mut recorded, &mut interpreter, &mut recording, &read_error)?
                    }
                    None => stream::pump(&mut body, &mut interpreter, &mut recording, &read_error)?,
                };
                token_reads = pumped.token_reads;
                if pumped.end == BodyEnd::Done {
                    self.drains.push(drain(body));
                }
            }
            Reply::Json(body, bytes) => {
                if let Some(path) = &self.settings.record {
                    Recorder::wrap(Box::new(&bytes[..]), path).read_to_end(&mut Vec::new())?;
                }
                interpreter.on_completion(&body, &mut recording)?
            }
        }
        let mut turn = interpreter.finish(&mut recording)?;
        turn.token_reads = token_reads;
        turn.content = std::mem::take(&mut self.progress.text);
        turn.refusal = std::mem::take(&mut self.progress.refusal);
        Ok(turn)
    }

    /// Sends until the server answers 2xx or retrying stops making sense. Only failures before
    /// the answer are retried here, so no text is ever printed twice. A 400 that names
    /// `stream_options` is retried once without it, whatever `--retries` says, and the session
    /// stops asking for it.
    fn send_with_retries(&mut self, request: &mut Arc<Request>) -> anyhow::Result<Reply> {
        let mut attempt = 0;
        loop {
            self.cancel.check()?;
            self.wait_for_drains();
            let err = match self.send(request) {
                Ok(reply) => return Ok(reply),
                Err(err) => err,
            };
            self.deadline.clear();
            self.cancel.check()?;
            if retry::rejects_stream_options(&err)
                && let Some(body) = Arc::make_mut(request).body.as_object_mut()
                && body.remove("stream_options").is_some()
            {
                if let Some(template) = self.settings.template.body.as_object_mut() {
                    template.remove("stream_options");
                }
                eprintln!(
                    "gptstream: the server rejects stream_options; retrying without it (no usage will be reported)"
                );
                continue;
            }
            self.wait_to_retry(err, &mut attempt)
                .map_err(|err| hint_at_responses(err, request))?;
        }
    }

    /// After a failed attempt: says so and waits before the next one, or gives back the error
    /// to end with (that one, or the stop that came while waiting).
    fn wait_to_retry(&self, err: anyhow::Error, attempt: &mut u32) -> anyhow::Result<()> {
        let retries = self.settings.retries;
        let (err, wait) = match retry::plan(err, *attempt, retries) {
            retry::Decision::Retry { err, wait } => (err, wait),
            retry::Decision::GiveUp(err) => return Err(err),
        };
        *attempt += 1;
        eprintln!(
            "gptstream: {err:#}; retrying in {:.1}s (retry {attempt} of {retries})",
            wait.as_secs_f64(),
        );
        self.cancel.sleep(wait)
    }

    /// `--list-models`: the template's URL fetched with `GET`, retried as a completion request
    /// is.
    pub(crate) fn get_json(&mut self) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            let err = match http::get_json(
                &self.agent,
                &self.settings.template,
                &self.settings.transport,
            ) {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            self.wait_to_retry(err, &mut attempt)?;
        }
    }

    /// Sends on a thread of its own while this one watches for a stop. The agent's shutdown
    /// ends a request that is waiting for its answer, but nothing can end a connection attempt
    /// (std's `connect_timeout`) or a name lookup early: a stop then returns at once, and the
    /// sending thread is left to end at `--connect-timeout` (it holds no output and no state;
    /// its connection, if it gets one, is refused by the shut-down agent).
    fn send(&mut self, request: &Arc<Request>) -> anyhow::Result<Reply> {
        let transport = &self.settings.transport;
        if let Some(total) = transport.total {
            let host = crate::transport::request::host_of(&request.url);
            let message = http::total_timeout(host, transport);
            self.deadline.set(Instant::now() + total, message);
        }
        let (done, outcome) = mpsc::channel();
        let (agent, sending) = (self.agent.clone(), Arc::clone(request));
        let transport = self.settings.transport.clone();
        let sender = thread::Builder::new()
            .name("send".into())
            .spawn(move || {
                let _ = done.send(http::send(&agent, &sending, &transport));
            })
            .context("cannot start a thread")?;
        loop {
            match outcome.recv_timeout(STOP_CHECK) {
                Ok(reply) => {
                    let _ = sender.join();
                    return reply;
                }
                Err(RecvTimeoutError::Timeout) if self.cancel.is_cancelled() => {
                    self.stuck_senders.push(sender);
                    return Err(Cancelled.into());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = sender.join();
                    return Err(Panicked.into());
                }
            }
        }
    }

    /// Gives the last bodies' drains a moment to hand their connections back to the pool. Each
    /// drain is waited for once: one that is still reading after that (a server holding the
    /// body open after `[DONE]`) lingers until the session shuts the agent down.
    fn wait_for_drains(&mut self) {
        let deadline = Instant::now() + DRAIN_PATIENCE;
        for drain in std::mem::take(&mut self.drains) {
            let left = deadline.saturating_duration_since(Instant::now());
            if drain.done.recv_timeout(left).is_ok() {
                let _ = drain.thread.join();
            } else {
                self.lingering.push(drain.thread);
            }
        }
        let (finished, lingering): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lingering)
            .into_iter()
            .partition(JoinHandle::is_finished);
        for thread in finished {
            let _ = thread.join();
        }
        self.lingering = lingering;
    }

    /// Shuts the agent down (ending any drain still reading) and joins the drains.
    fn join_drains(&mut self) {
        let mut threads: Vec<JoinHandle<()>> = self.drains.drain(..).map(|d| d.thread).collect();
        threads.append(&mut self.lingering);
        if threads.iter().any(|thread| !thread.is_finished()) {
            self.agent.clone().shutdown();
        }
        for thread in threads {
            let _ = thread.join();
        }
        // A sender that is done is joined; one still connecting is not waited for.
        for sender in std::mem::take(&mut self.stuck_senders) {
            if sender.is_finished() {
                let _ = sender.join();
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.join_drains();
    }
}

/// Chat Completions refuses the models that only the Responses API serves ("This model is only
/// supported in v1/responses"): say which flag helps.
fn hint_at_responses(mut err: anyhow::Error, request: &Request) -> anyhow::Error {
    if request.dialect == Dialect::Chat
        && let Some(api) = err.downcast_mut::<ApiError>()
        && api.message.contains("v1/responses")
    {
        api.message.push_str(" (try --api responses)");
    }
    err
}

/// `--record`: the body as read (de-chunked and decompressed by ureq), copied to a file as it
/// arrives, so a stream cut short is recorded up to the cut. The run's secrets are blanked from
/// it where they appear whole (an error that echoes the key); the file is for sharing. A file
/// that cannot be written is said once on stderr and recording stops; the answer goes on.
struct Recorder<'a> {
    inner: Box<dyn Read + Send + 'a>,
    file: Option<Blanking<std::fs::File>>,
    path: std::path::PathBuf,
}

impl<'a> Recorder<'a> {
    fn wrap(inner: Box<dyn Read + Send + 'a>, path: &std::path::Path) -> Box<dyn Read + Send + 'a> {
        match std::fs::File::create(path) {
            Ok(file) => Box::new(Recorder {
                inner,
                file: Some(Blanking::new(file)),
                path: path.to_owned(),
            }),
            Err(err) => {
                eprintln!(
                    "gptstream: warning: cannot record to {}: {err}",
                    path.display()
                );
                inner
            }
        }
    }

    fn stop(&mut self, err: &std::io::Error) {
        eprintln!(
            "gptstream: warning: cannot record to {}: {err}; recording stops",
            self.path.display()
        );
        self.file = None;
    }
}

impl Read for Recorder<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        if let Some(file) = &mut self.file
            && let Err(err) = std::io::Write::write_all(file, &buffer[..n])
        {
            self.stop(&err);
        }
        Ok(n)
    }
}

impl Drop for Recorder<'_> {
    /// The last bytes, held back in case they began a secret.
    fn drop(&mut self) {
        if let Some(file) = self.file.take()
            && let Err(err) = file.finish()
        {
            self.stop(&err);
        }
    }
}

/// Reads the rest of a body to its end on a thread of its own.
fn drain(mut body: Box<dyn Read + Send>) -> Drain {
    let (done_tx, done) = mpsc::channel();
    let thread = thread::spawn(move || {
        let _ = std::io::copy(&mut (&mut body).take(DRAIN_LIMIT), &mut std::io::sink());
        drop(body);
        let _ = done_tx.send(());
    });
    Drain { done, thread }
}

/// The sink of one request: passes every event on, and keeps the progress up to date.
pub(crate) struct Recording<'a> {
    pub(crate) sink: &'a mut dyn Sink,
    pub(crate) progress: &'a mut Progress,
    /// The choice whose text (and refusal) is kept.
    pub(crate) choice: u64,
    pub(crate) keep_text: bool,
}

impl Sink for Recording<'_> {
    fn emit(&mut self, event: &Event<'_>) -> std::io::Result<()> {
        match *event {
            Event::Content { choice, delta } if choice == self.choice && self.keep_text => {
                self.progress.text.push_str(delta);
            }
            Event::Refusal { choice, delta } if choice == self.choice && self.keep_text => {
                self.progress.refusal.push_str(delta);
            }
            Event::Usage(usage) => match &mut self.progress.usage {
                Some(total) => add_usage(total, usage),
                None => self.progress.usage = Some(usage.clone()),
            },
            _ => {}
        }
        self.sink.emit(event)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_text_is_kept_only_when_asked_and_only_for_the_recorded_choice() {
        let recorded = |keep: bool| {
            let mut progress = Progress::default();
            let mut sink = crate::emit::json::JsonSink::new(std::io::sink());
            let mut recording = Recording {
                sink: &mut sink,
                progress: &mut progress,
                choice: 1,
                keep_text: keep,
            };
            for (choice, delta) in [(0, "other "), (1, "long "), (1, "answer")] {
                recording.emit(&Event::Content { choice, delta }).unwrap();
            }
            recording
                .emit(&Event::Refusal {
                    choice: 1,
                    delta: "no",
                })
                .unwrap();
            (progress.text, progress.refusal)
        };
        assert_eq!(recorded(true), ("long answer".to_owned(), "no".to_owned()));
        assert_eq!(
            recorded(false),
            (String::new(), String::new()),
            "a plain run holds no copy of the answer"
        );
    }
}
