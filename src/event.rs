//! The events the chunk interpreter hands to a sink, and the sink trait itself.
//!
//! This is the seam between "what the server meant" and "how we show it": the interpreter
//! produces these from OpenAI chunks, and the text and JSON sinks render them. Events borrow from
//! the chunk being interpreted, so nothing is copied on the way to stdout.

use std::io;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::error::{ApiError, Signal};

/// A server's creation time (`created`, `created_at`) as whole seconds since the epoch: any JSON
/// number is accepted, since some servers send a float (`1761002000.75`); a fraction is dropped,
/// and zero, a negative, or a time past the year 292 billion is none.
pub(crate) fn unix_seconds(value: Option<&Value>) -> Option<i64> {
    let number = value?.as_number()?;
    let seconds = match number.as_i64() {
        Some(seconds) => seconds,
        None => {
            let float = number.as_f64()?.trunc();
            // `as` saturates; the range check keeps a saturated value out.
            (float.is_finite() && float > 0.0 && float < i64::MAX as f64).then_some(float as i64)?
        }
    };
    (seconds > 0).then_some(seconds)
}

/// One thing that happened in the stream.
#[derive(Debug)]
pub enum Event<'a> {
    /// Once, before anything else, with what the first chunk said of itself.
    Start {
        id: Option<&'a str>,
        model: Option<&'a str>,
        /// Whole seconds since the epoch (see `unix_seconds`).
        created: Option<i64>,
    },
    Content {
        choice: u64,
        delta: &'a str,
    },
    Reasoning {
        choice: u64,
        delta: &'a str,
    },
    Refusal {
        choice: u64,
        delta: &'a str,
    },
    /// A fragment of a tool call, as it streams.
    ToolCallDelta {
        choice: u64,
        fragment: Fragment<'a>,
    },
    /// A complete tool call, once its choice has finished (or the stream has ended).
    ToolCall {
        choice: u64,
        call: &'a ToolCall,
    },
    /// A call that `--tool-exec` would run, left unrun because `--max-tool-rounds` was reached:
    /// text mode prints it as a call nobody runs is printed (JSON mode had its `tool_call`).
    ToolCallNotRun {
        choice: u64,
        call: &'a ToolCall,
    },
    /// gptstream ran a tool call for the user (`--tool-exec`).
    ToolResult {
        choice: u64,
        call: &'a ToolCall,
        outcome: &'a ToolOutcome,
    },
    Finish {
        choice: u64,
        reason: &'a str,
        /// The Responses API's own word for an `incomplete` response (`max_output_tokens`...).
        incomplete_reason: Option<&'a str>,
    },
    /// The answer checked against `--schema`, after the stream: `error` says the first mismatch.
    Schema {
        valid: bool,
        error: Option<&'a str>,
    },
    /// The last usage object the server sent, once per request, after its stream.
    Usage(&'a Map<String, Value>),
    /// The stream ended well.
    End(&'a Summary),
    /// The stream ended well but the run fails after it (the answer does not match
    /// `--schema`): text mode still gives the summary; the `error` event comes last in JSON.
    Completed(&'a Summary),
    /// The run failed; what was already written stays written.
    Error(&'a ErrorReport),
    /// A signal stopped the answer; what was already written stays written.
    Interrupted(&'a Interruption),
}

/// What one request produced: the assistant's turn as the conversation records it, and the
/// facts for the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turn {
    /// The text of the recorded choice (`--choice`, else 0), when the session keeps it (for a
    /// transcript, a tool loop, a chat or `--schema`); otherwise empty, so a long answer costs
    /// no memory. The session's recording sink keeps it, once, for either dialect.
    pub(crate) content: String,
    /// The complete tool calls of the recorded choice.
    pub(crate) tool_calls: Vec<ToolCall>,
    /// `(choice, finish_reason)` for each finished choice, in choice order.
    pub(crate) finish_reasons: Vec<(u64, String)>,
    /// The last usage object the server sent.
    pub(crate) usage: Option<Map<String, Value>>,
    pub(crate) time_to_first_token: Option<Duration>,
    /// Tool calls of every choice.
    pub(crate) tool_call_count: usize,
    /// The recorded choice's refusal text, when the text is kept.
    pub(crate) refusal: String,
    /// The network reads that brought this request's generated tokens (none for a whole
    /// answer or a replay): see [`Summary::tokens_per_second`].
    pub(crate) token_reads: u32,
    /// The Responses API's output items as received (messages, function calls, reasoning), to
    /// send back as they are in a tool loop's next request.
    pub(crate) output_items: Option<Vec<Value>>,
}

/// What is known when a signal stops an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Interruption {
    pub(crate) signal: Signal,
    /// The usage reported so far (summed over the requests of a tool loop), if any.
    pub(crate) usage: Option<Map<String, Value>>,
}

/// How the run went, for the stderr summary and the `end` event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// `(choice, finish_reason)` for each choice of the last request, in choice order.
    pub(crate) finish_reasons: Vec<(u64, String)>,
    /// The usage of the one request, or the sum over the requests of a tool loop.
    pub(crate) usage: Option<Map<String, Value>>,
    pub(crate) tool_calls: usize,
    /// From the start of the first request to its first content, reasoning or tool-call delta.
    pub(crate) time_to_first_token: Option<Duration>,
    /// The network reads that brought generated tokens, in the request that had the most.
    pub(crate) token_reads: u32,
    pub(crate) duration: Duration,
    pub(crate) requests: usize,
}

impl Summary {
    /// Completion tokens per second of generation (from the first token to the end), when the
    /// server reported usage and the tokens streamed over two reads or more: tokens that came
    /// in one piece (a `--no-stream` answer, a short stream, a replay) would give a rate of
    /// how fast we parse, not how fast the model writes.
    pub(crate) fn tokens_per_second(&self) -> Option<f64> {
        if self.token_reads < 2 {
            return None;
        }
        let usage = self.usage.as_ref()?;
        // Chat Completions names them completion tokens, the Responses API output tokens.
        let tokens = usage
            .get("completion_tokens")
            .or_else(|| usage.get("output_tokens"))?
            .as_u64()?;
        let generating = self
            .duration
            .saturating_sub(self.time_to_first_token.unwrap_or_default());
        let secs = generating.as_secs_f64();
        (secs > 0.0).then(|| (tokens as f64 / secs * 10.0).round() / 10.0)
    }
}

impl Summary {
    /// Sums up the turns of one answer, which started at `started`.
    pub(crate) fn of(turns: &[Turn], started: Instant) -> Summary {
        let mut usage: Option<Map<String, Value>> = None;
        for turn_usage in turns.iter().filter_map(|t| t.usage.as_ref()) {
            match &mut usage {
                None => usage = Some(turn_usage.clone()),
                Some(total) => add_usage(total, turn_usage),
            }
        }
        Summary {
            finish_reasons: turns
                .last()
                .map(|t| t.finish_reasons.clone())
                .unwrap_or_default(),
            usage,
            tool_calls: turns.iter().map(|t| t.tool_call_count).sum(),
            time_to_first_token: turns.first().and_then(|t| t.time_to_first_token),
            // Requests that each came in one read do not make a stream together.
            token_reads: turns.iter().map(|t| t.token_reads).max().unwrap_or(0),
            duration: started.elapsed(),
            requests: turns.len(),
        }
    }
}

/// One tool call as assembled so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's position in its turn: 0, 1, 2... in order of first appearance.
    pub(crate) index: usize,
    /// The `index` the server gave, used only for matching.
    pub(crate) server_index: Option<u64>,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: String,
}

impl ToolCall {
    /// A complete call, as a transcript or a test states it.
    pub(crate) fn new(id: &str, name: &str, arguments: &str) -> Self {
        ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
            ..ToolCall::default()
        }
    }

    /// The arguments parsed as JSON, or `None` when they do not parse.
    pub(crate) fn parsed_arguments(&self) -> Option<Value> {
        serde_json::from_str(&self.arguments).ok()
    }
}

/// What one fragment contributed, for live `tool_call_delta` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub(crate) index: usize,
    pub(crate) id: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    pub(crate) arguments_delta: &'a str,
}

/// What running one call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// What goes back to the model as the `tool` message.
    pub(crate) content: String,
    /// The command's exit code; `None` when it did not run or was killed.
    pub(crate) exit_code: Option<i32>,
    /// Bytes the command wrote to stdout, whether kept or not.
    pub(crate) output_bytes: usize,
    pub(crate) truncated: bool,
    pub(crate) timed_out: bool,
    /// The MCP server that ran the call; `None` for a `--tool-exec` command.
    pub(crate) server: Option<String>,
    /// An MCP call's `isError` (or a call that failed on the way); `None` for `--tool-exec`.
    pub(crate) is_error: Option<bool>,
}

impl ToolOutcome {
    pub(crate) fn succeeded(&self) -> bool {
        match self.is_error {
            Some(is_error) => !is_error && !self.timed_out,
            None => self.exit_code == Some(0),
        }
    }

    /// For the stderr note: how a command ended, or whether an MCP call was an error.
    pub(crate) fn describe(&self) -> String {
        match (self.exit_code, self.timed_out, self.is_error) {
            (_, true, _) => "timed out".into(),
            (_, _, Some(true)) => "error".into(),
            (_, _, Some(false)) => "ok".into(),
            (Some(code), _, None) => format!("exit {code}"),
            (None, _, None) => "not run".into(),
        }
    }
}

/// Adds one request's usage into a total: numbers are summed, nested objects (token details)
/// likewise; anything else keeps the first value seen. Only across requests, never within one
/// stream, where the last usage object is the answer.
pub(crate) fn add_usage(total: &mut Map<String, Value>, usage: &Map<String, Value>) {
    for (key, value) in usage {
        match (total.get_mut(key), value) {
            (Some(Value::Number(sum)), Value::Number(n)) => {
                if let (Some(a), Some(b)) = (sum.as_u64(), n.as_u64()) {
                    *sum = a.saturating_add(b).into();
                }
            }
            (Some(Value::Object(sum)), Value::Object(part)) => add_usage(sum, part),
            (None, _) => {
                total.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
}

/// An error as the `--json` error event reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    pub(crate) message: String,
    pub(crate) status: Option<u16>,
    pub(crate) code: Option<String>,
}

/// Where events go: the text sink or the JSON Lines sink.
pub trait Sink {
    fn emit(&mut self, event: &Event<'_>) -> io::Result<()>;

    /// Writes what the sink holds. The pump calls it after decoding each network read, before it
    /// blocks for the next: deltas that arrived together leave in one `write`, and none waits.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ErrorReport {
    /// The `--json` view of an error: the whole message, and status and code when the server
    /// gave them.
    pub(crate) fn from_error(err: &anyhow::Error) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn creation_times_are_whole_seconds_of_any_number() {
        for (value, seconds) in [
            (json!(1761002000), Some(1761002000)),
            (json!(1761002000.75), Some(1761002000)),
            (json!(1e300), None),
            (json!(u64::MAX), None),
            (json!(-5), None),
            (json!(-5.5), None),
            (json!(0), None),
            (json!(0.4), None),
            (json!("1761002000"), None),
            (json!(null), None),
        ] {
            assert_eq!(unix_seconds(Some(&value)), seconds, "{value}");
        }
        assert_eq!(unix_seconds(None), None);
    }

    fn turn(usage: Value) -> Turn {
        Turn {
            usage: usage.as_object().cloned(),
            ..Turn::default()
        }
    }

    #[test]
    fn a_tool_loop_of_requests_each_in_one_read_has_no_rate() {
        let one_read = |reads| Turn {
            token_reads: reads,
            ..turn(json!({"completion_tokens": 5}))
        };
        let started = Instant::now() - std::time::Duration::from_millis(50);
        assert_eq!(
            Summary::of(&[one_read(1), one_read(1)], started).tokens_per_second(),
            None
        );
        assert!(
            Summary::of(&[one_read(1), one_read(2)], started)
                .tokens_per_second()
                .is_some()
        );
    }

    #[test]
    fn usage_over_requests_is_summed_deeply() {
        let turns = [
            turn(
                json!({"prompt_tokens":10,"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":2},"model":"x"}),
            ),
            turn(
                json!({"prompt_tokens":20,"completion_tokens":1,"completion_tokens_details":{"reasoning_tokens":3}}),
            ),
        ];
        let summary = Summary::of(&turns, Instant::now());
        assert_eq!(
            Value::Object(summary.usage.unwrap()),
            json!({"prompt_tokens":30,"completion_tokens":6,"completion_tokens_details":{"reasoning_tokens":5},"model":"x"})
        );
        assert_eq!(summary.requests, 2);
    }

    #[test]
    fn one_request_keeps_its_usage_as_sent() {
        let summary = Summary::of(&[turn(json!({"total_tokens":9}))], Instant::now());
        assert_eq!(
            Value::Object(summary.usage.unwrap()),
            json!({"total_tokens":9})
        );
    }

    #[test]
    fn hostile_usage_numbers_saturate_instead_of_overflowing() {
        let turns = [
            turn(json!({"completion_tokens": u64::MAX})),
            turn(json!({"completion_tokens": 5})),
        ];
        let summary = Summary::of(&turns, Instant::now());
        assert_eq!(summary.usage.unwrap()["completion_tokens"], u64::MAX);
    }
}
