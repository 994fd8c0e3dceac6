//! The chunk interpreter: SSE events carrying OpenAI `chat.completion.chunk` objects in,
//! [`Event`]s out.
//!
//! It owns the OpenAI semantics and nothing else: `[DONE]`, deltas per choice, reasoning and
//! refusal fields, tool-call accumulation, finish reasons, the last usage object, error objects in
//! the stream, and the decision whether a stream that ended was complete. No I/O happens here, so
//! tests drive it with strings and a recording sink.

mod plain;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

use serde_json::Value;

use plain::PlainChunk;

use crate::decode::sse;
use crate::decode::tool_calls::ToolCalls;
use crate::error::{ApiError, StreamError, scrub};
use crate::event::ToolCall;
pub(crate) use crate::event::Turn;
use crate::event::{Event, Sink, unix_seconds};

/// More distinct choices than anyone asks for: past it the stream is treated as hostile.
const MAX_CHOICES: usize = 256;

#[derive(Debug, Default)]
struct ChoiceState {
    finish_reason: Option<String>,
    tool_calls: ToolCalls,
}

/// The interpreter's memory of the stream so far.
#[derive(Debug)]
pub struct Interpreter {
    request_started: Instant,
    started: bool,
    saw_done: bool,
    choices: BTreeMap<u64, ChoiceState>,
    turn: Turn,
    /// The choice whose text and tool calls make the turn.
    recorded_choice: u64,
    /// Whether to try [`PlainChunk`] before the general `Value` path (off only in tests that
    /// prove the two agree).
    plain_path: bool,
    /// How many choices the request asked for (`n`), when known (not in a replay): a choice
    /// past them is a malformed stream, not text to hold or print.
    choices_asked: Option<u64>,
}

/// The chunk fields that start the answer (`start` event).
struct Header<'a> {
    id: Option<&'a str>,
    model: Option<&'a str>,
    created: Option<i64>,
}

impl<'a> Header<'a> {
    fn of(chunk: &'a Value) -> Self {
        Header {
            id: non_empty_str(chunk, "id"),
            model: non_empty_str(chunk, "model"),
            created: unix_seconds(chunk.get("created")),
        }
    }
}

impl Turn {
    fn first_token(&mut self, request_started: Instant) {
        if self.time_to_first_token.is_none() {
            self.time_to_first_token = Some(request_started.elapsed());
        }
    }
}

fn non_empty_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Interpreter {
    /// `request_started` is when the request was sent, for time-to-first-token and duration.
    pub fn new(request_started: Instant) -> Self {
        Interpreter {
            request_started,
            started: false,
            saw_done: false,
            choices: BTreeMap::new(),
            turn: Turn::default(),
            recorded_choice: 0,
            plain_path: true,
            choices_asked: None,
        }
    }

    /// Refuses a choice index of `n` or more: the request asked for `n` choices.
    pub(crate) fn asking_choices(mut self, n: u64) -> Self {
        self.choices_asked = Some(n);
        self
    }

    /// Makes choice `choice` (of `-n`) the one whose tool calls the turn records.
    pub(crate) fn recording_choice(mut self, choice: u64) -> Self {
        self.recorded_choice = choice;
        self
    }

    /// Interprets one SSE event. `Break` means `[DONE]`: stop reading.
    pub fn on_sse(
        &mut self,
        event: sse::Event<'_>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<ControlFlow<()>> {
        match event.kind {
            "message" => {}
            "error" => {
                let body = serde_json::from_str::<Value>(event.data).ok();
                let error = body
                    .as_ref()
                    .and_then(|b| ApiError::from_body(b, None))
                    .unwrap_or_else(|| ApiError::new(None, None, event.data));
                return Err(error.into());
            }
            // Named events we do not know (`ping`, vendor extensions) are not chunks.
            _ => return Ok(ControlFlow::Continue(())),
        }
        let data = event.data.trim_ascii();
        if data == "[DONE]" {
            self.saw_done = true;
            return Ok(ControlFlow::Break(()));
        }
        if data.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        if self.plain_path
            && let Some(chunk) = PlainChunk::parse(data)
        {
            self.on_plain_chunk(&chunk, sink)?;
            return Ok(ControlFlow::Continue(()));
        }
        let chunk: Value = serde_json::from_str(data).map_err(|err| {
            let excerpt: String = data.chars().take(80).collect();
            StreamError(format!(
                "malformed chunk, not JSON ({err}): {}",
                scrub(&excerpt)
            ))
        })?;
        if !chunk.is_object() {
            return Err(StreamError(format!(
                "malformed chunk, not a JSON object: {}",
                scrub(data)
            ))
            .into());
        }
        self.on_chunk(&chunk, "delta", sink)?;
        Ok(ControlFlow::Continue(()))
    }

    /// Interprets a complete, non-streamed chat completion (from a server that ignored
    /// `stream: true`) as if it had been streamed in one chunk.
    pub(crate) fn on_completion(
        &mut self,
        body: &Value,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        if !body.is_object() {
            return Err(StreamError("the JSON response is not an object".into()).into());
        }
        self.on_chunk(body, "message", sink)?;
        self.saw_done = true;
        Ok(())
    }

    fn on_chunk(
        &mut self,
        chunk: &Value,
        delta_key: &str,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        if let Some(error) = ApiError::from_body(chunk, None) {
            return Err(error.into());
        }
        let header = Header::of(chunk);
        if !self.started && (header.id.is_some() || header.model.is_some()) {
            self.start(&header, sink)?;
        }
        if let Some(Value::Object(usage)) = chunk.get("usage") {
            self.turn.usage = Some(usage.clone());
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return Ok(());
        };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            self.enter_choice(index, &header, sink)?;
            if let Some(delta) = choice.get(delta_key) {
                self.on_delta(index, delta, sink)?;
            }
            self.finish_choice(index, non_empty_str(choice, "finish_reason"), sink)?;
        }
        Ok(())
    }

    /// [`Self::on_chunk`] for a [`PlainChunk`], event for event.
    fn on_plain_chunk(
        &mut self,
        chunk: &PlainChunk<'_>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        let header = Header {
            id: chunk.id(),
            model: chunk.model(),
            created: chunk.created,
        };
        if !self.started && (header.id.is_some() || header.model.is_some()) {
            self.start(&header, sink)?;
        }
        for choice in chunk.choices() {
            self.enter_choice(choice.index, &header, sink)?;
            if let Some(text) = choice.content() {
                self.content(choice.index, text, sink)?;
            }
            if let Some(text) = choice.reasoning() {
                self.reasoning(choice.index, text, sink)?;
            }
            if let Some(text) = choice.refusal() {
                self.refusal(choice.index, text, sink)?;
            }
            self.finish_choice(choice.index, choice.finish_reason(), sink)?;
        }
        Ok(())
    }

    fn start(&mut self, header: &Header<'_>, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.started = true;
        sink.emit(&Event::Start {
            id: header.id,
            model: header.model,
            created: header.created.filter(|&c| c > 0),
        })?;
        Ok(())
    }

    /// Emits a choice's complete tool calls and keeps the recorded choice's for the conversation.
    fn emit_tool_calls(
        turn: &mut Turn,
        recorded_choice: u64,
        choice: u64,
        calls: Vec<ToolCall>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        for mut call in calls {
            if call.id.is_empty() {
                // Some servers send no id; the conversation needs one to answer the call.
                call.id = format!("call_{}", call.index);
            }
            sink.emit(&Event::ToolCall {
                choice,
                call: &call,
            })?;
            turn.tool_call_count += 1;
            if choice == recorded_choice {
                turn.tool_calls.push(call);
            }
        }
        Ok(())
    }

    /// Before a choice's delta: the choice limit, and the `start` event if no chunk gave one.
    fn enter_choice(
        &mut self,
        index: u64,
        header: &Header<'_>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        if let Some(n) = self.choices_asked
            && index >= n
        {
            let choices = if n == 1 { "choice" } else { "choices" };
            return Err(StreamError(format!(
                "malformed chunk: the server sent choice {index}, but the request asked for {n} {choices}"
            ))
            .into());
        }
        if !self.choices.contains_key(&index) && self.choices.len() == MAX_CHOICES {
            return Err(
                StreamError(format!("more than {MAX_CHOICES} choices in one stream")).into(),
            );
        }
        if !self.started {
            self.start(header, sink)?;
        }
        Ok(())
    }

    /// After a choice's delta: its finish reason, the first time one comes.
    fn finish_choice(
        &mut self,
        index: u64,
        reason: Option<&str>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        let state = self.choices.entry(index).or_default();
        if let Some(reason) = reason
            && state.finish_reason.is_none()
        {
            // The turn is over, so its tool calls are complete: emit them before the finish.
            Self::emit_tool_calls(
                &mut self.turn,
                self.recorded_choice,
                index,
                state.tool_calls.take(),
                sink,
            )?;
            state.finish_reason = Some(reason.to_owned());
            sink.emit(&Event::Finish {
                choice: index,
                reason,
                incomplete_reason: None,
            })?;
        }
        Ok(())
    }

    fn content(&mut self, choice: u64, text: &str, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.turn.first_token(self.request_started);
        sink.emit(&Event::Content {
            choice,
            delta: text,
        })?;
        Ok(())
    }

    fn reasoning(&mut self, choice: u64, text: &str, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.turn.first_token(self.request_started);
        sink.emit(&Event::Reasoning {
            choice,
            delta: text,
        })?;
        Ok(())
    }

    fn refusal(&mut self, choice: u64, text: &str, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.turn.first_token(self.request_started);
        sink.emit(&Event::Refusal {
            choice,
            delta: text,
        })?;
        Ok(())
    }

    fn on_delta(&mut self, choice: u64, delta: &Value, sink: &mut dyn Sink) -> anyhow::Result<()> {
        match delta.get("content") {
            Some(Value::String(text)) if !text.is_empty() => self.content(choice, text, sink)?,
            // Content as an array of parts, as some servers send it.
            Some(Value::Array(parts)) => {
                for text in parts.iter().filter_map(|p| non_empty_str(p, "text")) {
                    self.content(choice, text, sink)?;
                }
            }
            _ => {}
        }
        let reasoning =
            non_empty_str(delta, "reasoning_content").or_else(|| non_empty_str(delta, "reasoning"));
        if let Some(text) = reasoning {
            self.reasoning(choice, text, sink)?;
        }
        if let Some(text) = non_empty_str(delta, "refusal") {
            self.refusal(choice, text, sink)?;
        }
        if let Some(fragments) = delta.get("tool_calls").and_then(Value::as_array) {
            let state = self.choices.entry(choice).or_default();
            for fragment in fragments {
                let fragment = state.tool_calls.apply(fragment)?;
                self.turn.first_token(self.request_started);
                sink.emit(&Event::ToolCallDelta { choice, fragment })?;
            }
        }
        Ok(())
    }

    /// Ends the stream: emits the tool calls of unfinished choices and the usage, then returns
    /// the turn, or a truncation error when the stream stopped short.
    pub fn finish(mut self, sink: &mut dyn Sink) -> anyhow::Result<Turn> {
        for (&choice, state) in &mut self.choices {
            Self::emit_tool_calls(
                &mut self.turn,
                self.recorded_choice,
                choice,
                state.tool_calls.take(),
                sink,
            )?;
        }
        if let Some(usage) = &self.turn.usage {
            sink.emit(&Event::Usage(usage))?;
        }
        if !self.saw_done {
            if self.choices.is_empty() {
                return Err(StreamError(
                    "the stream ended without [DONE] and without any answer".into(),
                )
                .into());
            }
            let unfinished: Vec<String> = self
                .choices
                .iter()
                .filter(|(_, state)| state.finish_reason.is_none())
                .map(|(index, _)| index.to_string())
                .collect();
            if !unfinished.is_empty() {
                return Err(StreamError(format!(
                    "the stream ended without [DONE] before choice {} finished; the answer may be incomplete",
                    unfinished.join(", ")
                ))
                .into());
            }
        }
        self.turn.finish_reasons = self
            .choices
            .iter()
            .filter_map(|(&index, state)| Some((index, state.finish_reason.clone()?)))
            .collect();
        Ok(self.turn)
    }
}

#[cfg(test)]
pub(crate) mod tests;
