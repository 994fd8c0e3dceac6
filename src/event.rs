//! The events the chunk interpreter hands to a sink, and the sink trait itself.
//!
//! This is the seam between "what the server meant" and "how we show it": the interpreter
//! produces these from OpenAI chunks, and the text and JSON sinks render them. Events borrow from
//! the chunk being interpreted, so nothing is copied on the way to stdout.

use std::io;
use std::time::Duration;

use serde_json::Value;

use crate::tools::{Fragment, ToolCall};

/// One thing that happened in the stream.
#[derive(Debug)]
pub enum Event<'a> {
    /// Once, before anything else, with what the first chunk said of itself.
    Start {
        id: Option<&'a str>,
        model: Option<&'a str>,
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
    Finish {
        choice: u64,
        reason: &'a str,
    },
    /// The last usage object the server sent, once, after the stream.
    Usage(&'a serde_json::Map<String, Value>),
    /// The stream ended well.
    End(&'a Summary),
    /// The run failed; what was already written stays written.
    Error(&'a ErrorReport),
}

/// How the stream went, for the stderr summary and the `end` event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// `(choice, finish_reason)` for each choice, in choice order.
    pub finish_reasons: Vec<(u64, String)>,
    pub usage: Option<serde_json::Map<String, Value>>,
    pub tool_calls: usize,
    /// From the start of the request to the first content, reasoning or tool-call delta.
    pub time_to_first_token: Option<Duration>,
    pub duration: Duration,
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
}
