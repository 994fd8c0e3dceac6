//! The default sink: the answer text of choice 0 on stdout, everything else on stderr.
//!
//! Content deltas are written as soon as the network read that carried them is decoded, all of
//! that read's deltas in one `write` to an unbuffered stdout: nothing waits for more input.
//! Complete tool calls follow the text on stdout as one JSON line each. Reasoning and refusals go to stderr, and so does the
//! one-line summary at the end.

use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::emit::terminal;
use crate::error::scrub;
use crate::event::{Event, Interruption, Sink, Summary};

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// How the text sink behaves, decided once from the flags and the terminals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextOptions {
    pub(crate) show_reasoning: bool,
    pub(crate) quiet: bool,
    /// The answer gets a final newline if it lacks one: on a terminal, so the shell prompt does
    /// not follow it, and in chat, so answers never run together.
    pub(crate) end_with_newline: bool,
    /// Reasoning and the summary are dimmed (`--color`, `NO_COLOR`, a terminal).
    pub(crate) dim: bool,
    /// The choice whose text streams to stdout (`--choice`, else 0).
    pub(crate) choice: u64,
    /// `-n` above 1 without `--choice`: the other choices are held and printed after it.
    pub(crate) all_choices: bool,
    /// `--schema` with `--tool-exec`: a request's text waits until it is known to be the
    /// answer, so stdout holds the JSON alone; text said before running tools goes to stderr.
    pub(crate) hold_until_answer: bool,
    /// Stdout is a terminal: the answer's control characters are shown, not obeyed (see
    /// [`terminal::visible`]); a pipe gets its exact bytes.
    pub(crate) clean_answer: bool,
}

/// The most text held back for the other choices of `-n`, all together.
const MAX_HELD: usize = 64 * 1024 * 1024;

pub(crate) struct TextSink<O: Write, E: Write> {
    out: O,
    err: E,
    options: TextOptions,
    /// The last byte written to stdout, to know whether a newline is owed.
    last_out_byte: Option<u8>,
    /// A stderr line (reasoning or refusal) is open and needs a newline before anything else.
    err_line_open: bool,
    refusal_started: bool,
    /// Tools gptstream runs itself: their calls are noted on stderr, not printed on stdout.
    executed_tools: Vec<String>,
    /// With `all_choices`: the text of every choice but the streamed one, printed at the end.
    held: std::collections::BTreeMap<u64, String>,
    held_bytes: usize,
    /// With `all_choices`: the streamed choice's header is out.
    header_written: bool,
    /// Stdout bytes not yet written: the deltas of the network read being decoded.
    pending: Vec<u8>,
    /// With `hold_until_answer`: the text of the request in flight, not yet known to be the
    /// answer.
    unsure: String,
}

impl<O: Write, E: Write> TextSink<O, E> {
    pub(crate) fn new(out: O, err: E, options: TextOptions) -> Self {
        TextSink {
            out,
            err,
            options,
            last_out_byte: None,
            err_line_open: false,
            refusal_started: false,
            executed_tools: Vec::new(),
            held: Default::default(),
            held_bytes: 0,
            header_written: false,
            pending: Vec::with_capacity(8192),
            unsure: String::new(),
        }
    }

    /// Names the tools that `--tool-exec` runs, whose calls are not output but steps.
    pub(crate) fn with_executed_tools(mut self, names: Vec<String>) -> Self {
        self.executed_tools = names;
        self
    }

    /// Queues bytes for stdout; [`Self::flush_out`] writes them. Deltas of one network read go
    /// out in one `write`; anything else is written at once.
    fn write_out(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.close_err_line()?;
        self.pending.extend_from_slice(bytes);
        if let Some(&last) = bytes.last() {
            self.last_out_byte = Some(last);
        }
        Ok(())
    }

    /// Answer text for stdout, made safe first when stdout is a terminal.
    fn write_answer(&mut self, text: &str) -> io::Result<()> {
        if self.options.clean_answer {
            self.write_out(terminal::visible(text).as_bytes())
        } else {
            self.write_out(text.as_bytes())
        }
    }

    /// A delta of choice `choice`: streamed if it is the shown one, held if all are shown.
    fn content(&mut self, choice: u64, delta: &str) -> io::Result<()> {
        if choice == self.options.choice && self.options.hold_until_answer {
            self.held_bytes += delta.len();
            if self.held_bytes > MAX_HELD {
                // Not released by the error that follows: the run ends without an answer.
                self.unsure = String::new();
                return Err(io::Error::other(format!(
                    "more than {} MiB of text before the answer; use --json",
                    MAX_HELD >> 20
                )));
            }
            self.unsure.push_str(delta);
            return Ok(());
        }
        if choice == self.options.choice {
            if self.options.all_choices && !self.header_written {
                self.header_written = true;
                self.choice_header(choice)?;
            }
            return self.write_answer(delta);
        }
        if !self.options.all_choices {
            return Ok(());
        }
        self.held_bytes += delta.len();
        if self.held_bytes > MAX_HELD {
            return Err(io::Error::other(format!(
                "the other choices hold more than {} MiB of text; use --choice K or --json",
                MAX_HELD >> 20
            )));
        }
        self.held.entry(choice).or_default().push_str(delta);
        Ok(())
    }

    /// `[choice K]` on stderr, on a line of its own, before that choice's text on stdout.
    fn choice_header(&mut self, choice: u64) -> io::Result<()> {
        self.close_err_line()?;
        self.out_line_start()?;
        writeln!(self.err, "[choice {choice}]")?;
        self.err.flush()
    }

    /// The held text of a request is the answer after all: out it goes.
    fn release_unsure(&mut self) -> io::Result<()> {
        let text = std::mem::take(&mut self.unsure);
        self.held_bytes = 0;
        self.write_answer(&text)
    }

    /// The held text of a request came before tools ran: not the answer, so stderr has it.
    fn divert_unsure(&mut self) -> io::Result<()> {
        let text = std::mem::take(&mut self.unsure);
        self.held_bytes = 0;
        if text.is_empty() || self.options.quiet {
            return Ok(());
        }
        self.close_err_line()?;
        self.write_err_dimmed(&terminal::visible(&text))?;
        if !text.ends_with('\n') {
            self.err.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Prints the held choices, in order, each after its header: never interleaved.
    fn release_held(&mut self) -> io::Result<()> {
        for (choice, text) in std::mem::take(&mut self.held) {
            self.choice_header(choice)?;
            self.write_answer(&text)?;
        }
        Ok(())
    }

    fn flush_out(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let written = self
                .out
                .write_all(&self.pending)
                .and_then(|()| self.out.flush());
            self.pending.clear();
            written?;
        }
        Ok(())
    }

    fn close_err_line(&mut self) -> io::Result<()> {
        if self.err_line_open {
            self.err_line_open = false;
            self.err.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Starts a new stdout line unless we are already at the start of one. The newline is
    /// written at once: a stderr line may follow, and on a terminal both land on one screen.
    fn out_line_start(&mut self) -> io::Result<()> {
        match self.last_out_byte {
            Some(b'\n') | None => Ok(()),
            Some(_) => {
                self.write_out(b"\n")?;
                self.flush_out()
            }
        }
    }

    fn write_err_dimmed(&mut self, text: &str) -> io::Result<()> {
        if self.options.dim {
            write!(self.err, "{DIM}{text}{RESET}")?;
        } else {
            self.err.write_all(text.as_bytes())?;
        }
        self.err.flush()
    }

    fn summarize(&mut self, summary: &Summary) -> io::Result<()> {
        self.close_err_line()?;
        if self.options.end_with_newline {
            self.out_line_start()?;
        }
        for (choice, reason) in &summary.finish_reasons {
            let warning = match reason.as_str() {
                "length" => {
                    "the answer was cut off by the token limit (finish_reason=length); raise --max-tokens"
                }
                "content_filter" => {
                    "the answer was stopped by the server's content filter (finish_reason=content_filter)"
                }
                _ => continue,
            };
            let which = if *choice == 0 {
                String::new()
            } else {
                format!("choice {choice}: ")
            };
            writeln!(self.err, "gptstream: warning: {which}{warning}")?;
        }
        if self.options.quiet {
            return Ok(());
        }
        self.write_summary(&summary_line(summary))
    }

    fn write_summary(&mut self, line: &str) -> io::Result<()> {
        if self.options.dim {
            writeln!(self.err, "{DIM}{line}{RESET}")
        } else {
            writeln!(self.err, "{line}")
        }
    }

    /// Ends the open lines, then says so: the text already shown stays as it is.
    fn interrupted(&mut self, interruption: &Interruption) -> io::Result<()> {
        self.close_err_line()?;
        if self.options.end_with_newline {
            self.out_line_start()?;
        }
        if self.options.quiet {
            return Ok(());
        }
        self.write_summary(&interrupted_line(interruption))
    }
}

/// The stderr summary, in `key=value` form so it reads well and greps well:
/// `finish_reason=stop prompt_tokens=12 completion_tokens=34 total_tokens=46`.
pub(crate) fn summary_line(summary: &Summary) -> String {
    let mut parts = Vec::new();
    for (choice, reason) in &summary.finish_reasons {
        if *choice == 0 {
            parts.push(format!("finish_reason={}", scrub(reason)));
        } else {
            parts.push(format!("finish_reason[{choice}]={}", scrub(reason)));
        }
    }
    if summary.finish_reasons.is_empty() {
        parts.push("finish_reason=none".into());
    }
    if summary.tool_calls > 0 {
        parts.push(format!("tool_calls={}", summary.tool_calls));
    }
    if summary.requests > 1 {
        parts.push(format!("requests={}", summary.requests));
    }
    usage_parts(summary.usage.as_ref(), &mut parts);
    if let Some(ttft) = summary.time_to_first_token {
        parts.push(format!("ttft_ms={}", millis(ttft)));
    }
    parts.push(format!("duration_ms={}", millis(summary.duration)));
    if let Some(rate) = summary.tokens_per_second() {
        parts.push(format!("tokens_per_second={rate}"));
    }
    parts.join(" ")
}

/// Milliseconds with one decimal: enough to see a local server's sub-millisecond latency.
pub(crate) fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// `prompt_tokens=… completion_tokens=… total_tokens=…`, or `usage=none`.
fn usage_parts(usage: Option<&Map<String, Value>>, parts: &mut Vec<String>) {
    match usage {
        Some(usage) => {
            // In the server's own names: Chat Completions' or the Responses API's.
            for key in [
                "prompt_tokens",
                "input_tokens",
                "completion_tokens",
                "output_tokens",
                "total_tokens",
            ] {
                if let Some(n) = usage.get(key).and_then(Value::as_u64) {
                    parts.push(format!("{key}={n}"));
                }
            }
            let reasoning = ["completion_tokens_details", "output_tokens_details"]
                .into_iter()
                .find_map(|details| usage.get(details)?.get("reasoning_tokens")?.as_u64())
                .filter(|&n| n > 0);
            if let Some(n) = reasoning {
                parts.push(format!("reasoning_tokens={n}"));
            }
        }
        None => parts.push("usage=none".into()),
    }
}

/// The stderr line of an interrupted answer: `interrupted signal=SIGINT usage=none`.
pub(crate) fn interrupted_line(interruption: &Interruption) -> String {
    let mut parts = vec![
        "interrupted".to_owned(),
        format!("signal={}", interruption.signal.name()),
    ];
    usage_parts(interruption.usage.as_ref(), &mut parts);
    parts.join(" ")
}

impl<O: Write, E: Write> Sink for TextSink<O, E> {
    /// A text delta waits for [`Sink::flush`] at the end of its network read; every other event
    /// first writes what waits, so stdout and stderr keep their order.
    fn emit(&mut self, event: &Event<'_>) -> io::Result<()> {
        if let Event::Content { choice, delta } = *event {
            return self.content(choice, delta);
        }
        self.flush_out()?;
        self.render(event)?;
        self.flush_out()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_out()
    }
}

impl<O: Write, E: Write> TextSink<O, E> {
    fn render(&mut self, event: &Event<'_>) -> io::Result<()> {
        match *event {
            Event::Content { choice, delta } => self.content(choice, delta),
            Event::Reasoning { choice, delta }
                if choice == self.options.choice && self.options.show_reasoning =>
            {
                self.err_line_open = true;
                self.write_err_dimmed(&terminal::visible(delta))
            }
            Event::Refusal { choice, delta } if choice == self.options.choice => {
                if !self.refusal_started {
                    self.refusal_started = true;
                    self.close_err_line()?;
                    self.err.write_all(b"gptstream: the model refused: ")?;
                }
                self.err_line_open = true;
                self.err.write_all(terminal::visible(delta).as_bytes())?;
                self.err.flush()
            }
            // A new request of a tool loop: its text starts on a new line.
            Event::Start { .. } => self.out_line_start(),
            Event::ToolCall { choice, call }
                if choice == self.options.choice && self.executed_tools.contains(&call.name) =>
            {
                Ok(())
            }
            Event::ToolResult { call, outcome, .. } => {
                self.divert_unsure()?;
                self.close_err_line()?;
                if self.options.quiet && outcome.succeeded() {
                    return Ok(());
                }
                let truncated = if outcome.truncated { ", truncated" } else { "" };
                let server = match &outcome.server {
                    Some(server) => format!(" on {}", scrub(server)),
                    None => String::new(),
                };
                writeln!(
                    self.err,
                    "gptstream: ran tool {} ({}){server}: {}, {} bytes{truncated}",
                    scrub(&call.name),
                    scrub(&call.id),
                    outcome.describe(),
                    outcome.output_bytes
                )
            }
            Event::ToolCall { choice, call } | Event::ToolCallNotRun { choice, call }
                if choice == self.options.choice =>
            {
                self.release_unsure()?;
                let arguments = call.parsed_arguments();
                if arguments.is_none() {
                    self.close_err_line()?;
                    writeln!(
                        self.err,
                        "gptstream: warning: the arguments of tool call {} ({}) are not valid JSON; kept raw as arguments_raw",
                        scrub(&call.name),
                        scrub(&call.id)
                    )?;
                }
                // Field by field, so the line reads id, name, arguments as documented.
                let mut line = String::from("{\"id\":");
                line.push_str(&serde_json::to_string(&call.id)?);
                line.push_str(",\"name\":");
                line.push_str(&serde_json::to_string(&call.name)?);
                line.push_str(",\"arguments\":");
                line.push_str(&serde_json::to_string(&arguments)?);
                if arguments.is_none() {
                    line.push_str(",\"arguments_raw\":");
                    line.push_str(&serde_json::to_string(&call.arguments)?);
                }
                line.push_str("}\n");
                self.out_line_start()?;
                self.write_answer(&line)
            }
            Event::Schema { .. } => self.release_unsure(),
            Event::End(summary) | Event::Completed(summary) => {
                self.release_unsure()?;
                self.release_held()?;
                self.summarize(summary)
            }
            Event::Interrupted(interruption) => {
                self.release_unsure()?;
                self.release_held()?;
                self.interrupted(interruption)
            }
            Event::Error(_) => {
                self.release_unsure()?;
                self.release_held()?;
                // main prints the error itself; here we only end any open line first.
                self.close_err_line()?;
                if self.options.end_with_newline {
                    self.out_line_start()?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn options() -> TextOptions {
        TextOptions {
            show_reasoning: true,
            quiet: false,
            end_with_newline: false,
            dim: false,
            choice: 0,
            all_choices: false,
            hold_until_answer: false,
            clean_answer: false,
        }
    }

    fn render(options: TextOptions, events: &[Event<'_>]) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut sink = TextSink::new(&mut out, &mut err, options);
        for event in events {
            sink.emit(event).unwrap();
        }
        sink.flush().unwrap();
        drop(sink);
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn summary(reason: &str) -> Summary {
        Summary {
            finish_reasons: vec![(0, reason.into())],
            usage: None,
            tool_calls: 0,
            time_to_first_token: None,
            token_reads: 0,
            duration: Duration::ZERO,
            requests: 1,
        }
    }

    #[test]
    fn only_choice_zero_content_reaches_stdout_byte_exact() {
        let s = summary("stop");
        let (out, err) = render(
            options(),
            &[
                Event::Reasoning {
                    choice: 0,
                    delta: "hmm",
                },
                Event::Content {
                    choice: 0,
                    delta: "Hel",
                },
                Event::Content {
                    choice: 1,
                    delta: "other",
                },
                Event::Content {
                    choice: 0,
                    delta: "lo",
                },
                Event::End(&s),
            ],
        );
        assert_eq!(out, "Hello");
        assert_eq!(err, "hmm\nfinish_reason=stop usage=none duration_ms=0\n");
    }

    #[test]
    fn hidden_reasoning_and_quiet_leave_stderr_empty() {
        let s = summary("stop");
        let quiet = TextOptions {
            show_reasoning: false,
            quiet: true,
            ..options()
        };
        let (out, err) = render(
            quiet,
            &[
                Event::Reasoning {
                    choice: 0,
                    delta: "hmm",
                },
                Event::End(&s),
            ],
        );
        assert_eq!((out.as_str(), err.as_str()), ("", ""));
    }

    #[test]
    fn a_terminal_gets_a_final_newline_and_dim_text_a_pipe_does_not() {
        let s = summary("stop");
        let tty = TextOptions {
            end_with_newline: true,
            dim: true,
            ..options()
        };
        let (out, err) = render(
            tty,
            &[
                Event::Content {
                    choice: 0,
                    delta: "hi",
                },
                Event::End(&s),
            ],
        );
        assert_eq!(out, "hi\n");
        assert_eq!(
            err,
            format!("{DIM}finish_reason=stop usage=none duration_ms=0{RESET}\n")
        );
    }

    #[test]
    fn length_warns_even_when_quiet() {
        let s = summary("length");
        let quiet = TextOptions {
            quiet: true,
            ..options()
        };
        let (_, err) = render(quiet, &[Event::End(&s)]);
        assert!(
            err.starts_with("gptstream: warning: the answer was cut off"),
            "{err}"
        );
    }

    #[test]
    fn summary_line_lists_finish_tool_calls_and_usage() {
        let usage = serde_json::from_str(
            r#"{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"completion_tokens_details":{"reasoning_tokens":8}}"#,
        )
        .unwrap();
        let s = Summary {
            finish_reasons: vec![(0, "tool_calls".into()), (1, "stop".into())],
            usage: Some(usage),
            tool_calls: 2,
            time_to_first_token: Some(Duration::from_millis(120)),
            token_reads: 2,
            duration: Duration::from_millis(2120),
            ..summary("x")
        };
        assert_eq!(
            summary_line(&s),
            "finish_reason=tool_calls finish_reason[1]=stop tool_calls=2 prompt_tokens=12 completion_tokens=34 total_tokens=46 reasoning_tokens=8 ttft_ms=120 duration_ms=2120 tokens_per_second=17"
        );
        // Tokens that came in one read give no rate.
        let one_read = Summary {
            token_reads: 1,
            ..s
        };
        assert!(!summary_line(&one_read).contains("tokens_per_second"));
    }
}
