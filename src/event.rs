//! The events the chunk interpreter hands to a sink, and the sink trait itself.
//!
//! This is the seam between "what the server meant" and "how we show it": the interpreter
//! produces these from OpenAI chunks, and the text and JSON sinks render them. Events borrow from
//! the chunk being interpreted, so nothing is copied on the way to stdout.

use std::io;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::control::signals::Signal;
use crate::decode::tool_calls::{Fragment, ToolCall};
use crate::tools::toolbox::ToolOutcome;

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
        /// Whole seconds since the epoch ([`unix_seconds`]).
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
    pub content: String,
    /// The complete tool calls of the recorded choice.
    pub tool_calls: Vec<ToolCall>,
    /// `(choice, finish_reason)` for each finished choice, in choice order.
    pub finish_reasons: Vec<(u64, String)>,
    /// The last usage object the server sent.
    pub usage: Option<Map<String, Value>>,
    pub time_to_first_token: Option<Duration>,
    /// Tool calls of every choice.
    pub tool_call_count: usize,
    /// The recorded choice's refusal text, when the text is kept.
    pub refusal: String,
    /// The network reads that brought this request's generated tokens (none for a whole
    /// answer or a replay): see [`Summary::tokens_per_second`].
    pub token_reads: u32,
    /// The Responses API's output items as received (messages, function calls, reasoning), to
    /// send back as they are in a tool loop's next request.
    pub output_items: Option<Vec<Value>>,
}

/// What is known when a signal stops an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Interruption {
    pub signal: Signal,
    /// The usage reported so far (summed over the requests of a tool loop), if any.
    pub usage: Option<Map<String, Value>>,
}

/// How the run went, for the stderr summary and the `end` event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// `(choice, finish_reason)` for each choice of the last request, in choice order.
    pub finish_reasons: Vec<(u64, String)>,
    /// The usage of the one request, or the sum over the requests of a tool loop.
    pub usage: Option<Map<String, Value>>,
    pub tool_calls: usize,
    /// From the start of the first request to its first content, reasoning or tool-call delta.
    pub time_to_first_token: Option<Duration>,
    /// The network reads that brought generated tokens, in the request that had the most.
    pub token_reads: u32,
    pub duration: Duration,
    pub requests: usize,
}

impl Summary {
    /// Completion tokens per second of generation (from the first token to the end), when the
    /// server reported usage and the tokens streamed over two reads or more: tokens that came
    /// in one piece (a `--no-stream` answer, a short stream, a replay) would give a rate of
    /// how fast we parse, not how fast the model writes.
    pub fn tokens_per_second(&self) -> Option<f64> {
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
    pub message: String,
    pub status: Option<u16>,
    pub code: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::unix_seconds;
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
}
