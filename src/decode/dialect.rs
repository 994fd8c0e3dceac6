//! The two dialects of the one pipeline: Chat Completions and the Responses API. Each is a
//! request shape (see [`crate::transport::request`]) and an interpreter; everything else (decoder, sinks,
//! transcript, tool loop, retries, exit codes) is shared.

use std::ops::ControlFlow;
use std::time::Instant;

use serde_json::Value;

use crate::event::{Sink, Turn};
use crate::{decode::chunk, decode::responses, decode::sse};

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `POST {base}/chat/completions`.
    Chat,
    /// `POST {base}/responses`.
    Responses,
}

/// The interpreter of one stream, of either dialect, or not yet decided (`--replay`, which
/// learns the dialect from the first event).
pub(crate) enum Interpreter {
    Chat(chunk::Interpreter),
    Responses(responses::Interpreter),
    Undecided(Instant),
}

impl Interpreter {
    /// `keep`: keep what the next request needs to continue the conversation (the Responses
    /// API's output items). `choices`: how many the request asked for (`n`).
    pub(crate) fn new(
        dialect: Dialect,
        request_started: Instant,
        choice: u64,
        keep: bool,
        choices: u64,
    ) -> Self {
        match dialect {
            Dialect::Chat => Interpreter::Chat(
                chunk::Interpreter::new(request_started)
                    .recording_choice(choice)
                    .asking_choices(choices),
            ),
            Dialect::Responses => Interpreter::Responses(
                responses::Interpreter::new(request_started).keeping_items(keep),
            ),
        }
    }

    /// An interpreter that picks its dialect from the first event: a JSON `type` starting
    /// with `response.` (or `error`) is the Responses API, anything else a chat completion
    /// chunk.
    pub(crate) fn detecting(started: Instant) -> Self {
        Interpreter::Undecided(started)
    }

    pub(crate) fn on_sse(
        &mut self,
        event: sse::Event<'_>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<ControlFlow<()>> {
        if let Interpreter::Undecided(started) = *self {
            let data = event.data.trim_ascii();
            if data.is_empty() || data == "[DONE]" {
                // Nothing to tell the dialect by: a chat stream's rules apply.
                *self = Interpreter::Chat(chunk::Interpreter::new(started));
            } else {
                let responses = serde_json::from_str::<Value>(data)
                    .ok()
                    .and_then(|body| body.get("type")?.as_str().map(str::to_owned))
                    // Chat chunks carry `object`, not `type`; a Responses stream may begin with
                    // its `error` event.
                    .is_some_and(|kind| kind.starts_with("response.") || kind == "error");
                *self = if responses {
                    Interpreter::Responses(responses::Interpreter::new(started))
                } else {
                    Interpreter::Chat(chunk::Interpreter::new(started))
                };
            }
        }
        match self {
            Interpreter::Chat(chat) => chat.on_sse(event, sink),
            Interpreter::Responses(responses) => responses.on_sse(event, sink),
            Interpreter::Undecided(_) => Ok(ControlFlow::Continue(())),
        }
    }

    pub(crate) fn on_completion(
        &mut self,
        body: &Value,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        if let Interpreter::Undecided(started) = *self {
            *self = if body.get("object").and_then(Value::as_str) == Some("response") {
                Interpreter::Responses(responses::Interpreter::new(started))
            } else {
                Interpreter::Chat(chunk::Interpreter::new(started))
            };
        }
        match self {
            Interpreter::Chat(chat) => chat.on_completion(body, sink),
            Interpreter::Responses(responses) => responses.on_completion(body, sink),
            Interpreter::Undecided(_) => Ok(()),
        }
    }

    pub(crate) fn finish(self, sink: &mut dyn Sink) -> anyhow::Result<Turn> {
        match self {
            Interpreter::Chat(chat) => chat.finish(sink),
            Interpreter::Responses(responses) => responses.finish(sink),
            // An empty body: as a chat stream, it is truncated.
            Interpreter::Undecided(started) => chunk::Interpreter::new(started).finish(sink),
        }
    }
}
