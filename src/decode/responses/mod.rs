//! The Responses API interpreter: the SSE events of `/v1/responses` in, the same [`Event`]s as
//! chat completions out, so sinks, scripts and exit codes do not care which API ran.
//!
//! The kind of each event is its JSON `type` (the SSE `event:` line may be missing, as LiteLLM
//! sends none); `sequence_number` is not needed; unknown types are skipped. The response ends
//! with `response.completed`, `response.incomplete` or `response.failed`: reading stops there,
//! and a stream that ends before one of them is truncated, `data: [DONE]` or not. No I/O here.

use std::ops::ControlFlow;
use std::time::Instant;

use serde_json::Value;

use crate::decode::sse;
use crate::decode::tool_calls::{MAX_ARGUMENTS_BYTES, MAX_CALLS};
use crate::error::{ApiError, StreamError, scrub};
use crate::event::{Event, Sink, Turn, unix_seconds};
use crate::event::{Fragment, ToolCall};

/// One function call of the response, keyed by its output item's id.
#[derive(Debug)]
struct Call {
    item_id: String,
    call: ToolCall,
    emitted: bool,
}

/// How the response ended, from its terminal event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Completed,
    /// `response.incomplete`, with the server's reason (`max_output_tokens`, `content_filter`),
    /// if it gave one.
    Incomplete(Option<String>),
}

#[derive(Debug)]
pub(crate) struct Interpreter {
    request_started: Instant,
    started: bool,
    ending: Option<Ending>,
    calls: Vec<Call>,
    /// Output items from `response.output_item.done`, by output index.
    items: Vec<(u64, Value)>,
    /// `response.completed`'s own `output`, which wins when the server sends one.
    final_output: Option<Vec<Value>>,
    /// Keep output items at all: only a transcript or a tool loop needs them.
    keep_items: bool,
    /// The bytes of the items kept, bounded by [`MAX_ITEM_BYTES`].
    item_bytes: usize,
    /// The answer had text: its items must include a message to stand for the turn.
    saw_text: bool,
    /// The reasoning summary part being streamed, to set parts apart.
    summary_part: Option<(String, u64)>,
    turn: Turn,
}

/// More output items than this (in bytes) are not kept: the turn is then sent back converted
/// from the transcript instead of as received.
const MAX_ITEM_BYTES: usize = 16 * 1024 * 1024;

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn non_empty<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    str_of(value, key).filter(|s| !s.is_empty())
}

/// The error an `error` event or a failed response carries, in either shape seen in the wild:
/// fields at the top level, or nested under `error`.
fn error_of(body: &Value) -> ApiError {
    if let Some(error) = ApiError::from_body(body, None) {
        return error;
    }
    let code = body
        .get("code")
        .filter(|c| !c.is_null())
        .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned));
    let message = non_empty(body, "message").unwrap_or("the response failed");
    ApiError::new(None, code, message)
}

impl Interpreter {
    /// `request_started` is when the request was sent, for time-to-first-token.
    pub(crate) fn new(request_started: Instant) -> Self {
        Interpreter {
            request_started,
            started: false,
            ending: None,
            calls: Vec::new(),
            items: Vec::new(),
            final_output: None,
            keep_items: false,
            item_bytes: 0,
            saw_text: false,
            summary_part: None,
            turn: Turn::default(),
        }
    }

    /// Also keeps the response's output items in the [`Turn`], to send back in a tool loop or
    /// chat; off, a long answer costs no memory twice.
    pub(crate) fn keeping_items(mut self, keep: bool) -> Self {
        self.keep_items = keep;
        self
    }

    /// Interprets one SSE event. `Break` means the response ended (or `[DONE]`): stop reading.
    pub(crate) fn on_sse(
        &mut self,
        event: sse::Event<'_>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<ControlFlow<()>> {
        let data = event.data.trim_ascii();
        if data == "[DONE]" {
            return Ok(ControlFlow::Break(()));
        }
        if data.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        let body: Value = match serde_json::from_str(data) {
            Ok(body) => body,
            Err(_) if event.kind == "error" => {
                return Err(ApiError::new(None, None, data).into());
            }
            Err(err) => {
                let excerpt: String = data.chars().take(80).collect();
                return Err(StreamError(format!(
                    "malformed event, not JSON ({err}): {}",
                    scrub(&excerpt)
                ))
                .into());
            }
        };
        if !body.is_object() {
            return Err(StreamError(format!(
                "malformed event, not a JSON object: {}",
                scrub(data)
            ))
            .into());
        }
        self.on_event(&body, sink)
    }

    fn on_event(&mut self, body: &Value, sink: &mut dyn Sink) -> anyhow::Result<ControlFlow<()>> {
        let Some(kind) = str_of(body, "type") else {
            // LiteLLM reports a failure as `data: {"error": {...}}`, with no type.
            if let Some(error) = ApiError::from_body(body, None) {
                return Err(error.into());
            }
            return Ok(ControlFlow::Continue(()));
        };
        match kind {
            "response.created" | "response.in_progress" => {
                if let Some(response) = body.get("response") {
                    self.start(response, sink)?;
                }
            }
            "response.output_text.delta" => {
                if let Some(delta) = non_empty(body, "delta") {
                    self.first_token(sink)?;
                    self.saw_text = true;
                    sink.emit(&Event::Content { choice: 0, delta })?;
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(delta) = non_empty(body, "delta") {
                    self.first_token(sink)?;
                    self.summary_part(body, sink)?;
                    sink.emit(&Event::Reasoning { choice: 0, delta })?;
                }
            }
            "response.refusal.delta" => {
                if let Some(delta) = non_empty(body, "delta") {
                    self.first_token(sink)?;
                    sink.emit(&Event::Refusal { choice: 0, delta })?;
                }
            }
            "response.output_item.added" => {
                if let Some(item) = body.get("item")
                    && str_of(item, "type") == Some("function_call")
                {
                    self.call_added(item, sink)?;
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(delta) = non_empty(body, "delta") {
                    self.arguments_delta(non_empty(body, "item_id"), delta, sink)?;
                }
            }
            "response.function_call_arguments.done" => {
                if let (Some(id), Some(arguments)) =
                    (non_empty(body, "item_id"), str_of(body, "arguments"))
                    && let Some(call) = self.calls.iter_mut().find(|c| c.item_id == id)
                {
                    arguments.clone_into(&mut call.call.arguments);
                }
            }
            "response.output_item.done" => {
                if let Some(item) = body.get("item") {
                    if str_of(item, "type") == Some("function_call") {
                        self.call_done(item, sink)?;
                    }
                    let index = body.get("output_index").and_then(Value::as_u64);
                    let index = index.unwrap_or(self.items.len() as u64);
                    self.keep_item(index, item);
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = body.get("response").unwrap_or(&Value::Null);
                self.start(response, sink)?;
                if let Some(Value::Object(usage)) = response.get("usage") {
                    self.turn.usage = Some(usage.clone());
                }
                if let Some(Value::Array(output)) = response.get("output")
                    && !output.is_empty()
                {
                    if self.keep_items {
                        self.items.clear();
                        self.final_output = Some(output.clone());
                    }
                    for item in output
                        .iter()
                        .filter(|i| str_of(i, "type") == Some("function_call"))
                    {
                        self.call_done(item, sink)?;
                    }
                }
                self.emit_pending_calls(sink)?;
                let ending = if kind == "response.completed" {
                    Ending::Completed
                } else {
                    let reason = response
                        .get("incomplete_details")
                        .and_then(|d| non_empty(d, "reason"));
                    Ending::Incomplete(reason.map(str::to_owned))
                };
                self.finish_event(&ending, sink)?;
                self.ending = Some(ending);
                return Ok(ControlFlow::Break(()));
            }
            "response.failed" => {
                let response = body.get("response").unwrap_or(&Value::Null);
                let error = match response.get("error") {
                    Some(error) if error.is_object() => error_of(error),
                    _ => ApiError::new(None, None, "the response failed"),
                };
                return Err(error.into());
            }
            "error" => return Err(error_of(body).into()),
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Interprets a complete, non-streamed `response` object (`--no-stream`) as if streamed.
    pub(crate) fn on_completion(
        &mut self,
        body: &Value,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        if !body.is_object() {
            return Err(StreamError("the JSON response is not an object".into()).into());
        }
        if body.get("output").is_none()
            && let Some(error) = ApiError::from_body(body, None)
        {
            return Err(error.into());
        }
        self.start(body, sink)?;
        for item in body
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match str_of(item, "type") {
                Some("message") => {
                    for part in item
                        .get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let (kind, key) = match str_of(part, "type") {
                            Some("output_text") => (0, "text"),
                            Some("refusal") => (1, "refusal"),
                            _ => continue,
                        };
                        if let Some(text) = non_empty(part, key) {
                            self.first_token(sink)?;
                            let delta = text;
                            if kind == 0 {
                                self.saw_text = true;
                                sink.emit(&Event::Content { choice: 0, delta })?;
                            } else {
                                sink.emit(&Event::Refusal { choice: 0, delta })?;
                            }
                        }
                    }
                }
                Some("reasoning") => {
                    let texts = ["summary", "content"]
                        .into_iter()
                        .filter_map(|key| item.get(key).and_then(Value::as_array))
                        .flatten()
                        .filter_map(|part| non_empty(part, "text"));
                    for delta in texts {
                        self.first_token(sink)?;
                        sink.emit(&Event::Reasoning { choice: 0, delta })?;
                    }
                }
                _ => {}
            }
        }
        let kind = match str_of(body, "status") {
            Some("incomplete") => "response.incomplete",
            Some("failed") => "response.failed",
            _ => "response.completed",
        };
        let terminal = serde_json::json!({"type": kind, "response": body});
        // A terminal event always ends the (one-object) stream.
        let _ended = self.on_event(&terminal, sink)?;
        Ok(())
    }

    /// Keeps an output item for the turn, within [`MAX_ITEM_BYTES`]; past it the items are
    /// dropped, and the turn goes back converted from the transcript.
    fn keep_item(&mut self, index: u64, item: &Value) {
        if !self.keep_items {
            return;
        }
        let bytes = item.to_string().len();
        self.item_bytes = self.item_bytes.saturating_add(bytes);
        if self.item_bytes > MAX_ITEM_BYTES {
            self.keep_items = false;
            self.items = Vec::new();
            return;
        }
        self.items.push((index, item.clone()));
    }

    /// A new part of a reasoning summary starts on a paragraph of its own.
    fn summary_part(&mut self, body: &Value, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let (Some(item), Some(part)) = (
            str_of(body, "item_id"),
            body.get("summary_index").and_then(Value::as_u64),
        ) else {
            return Ok(());
        };
        let same = self
            .summary_part
            .as_ref()
            .is_some_and(|(i, p)| i == item && *p == part);
        if !same {
            if self.summary_part.is_some() {
                sink.emit(&Event::Reasoning {
                    choice: 0,
                    delta: "\n\n",
                })?;
            }
            self.summary_part = Some((item.to_owned(), part));
        }
        Ok(())
    }

    fn start(&mut self, response: &Value, sink: &mut dyn Sink) -> anyhow::Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        sink.emit(&Event::Start {
            id: non_empty(response, "id"),
            model: non_empty(response, "model"),
            created: unix_seconds(response.get("created_at")),
        })?;
        Ok(())
    }

    /// Before the first delta: the `start` event if no `response.created` gave one, and the
    /// time to first token.
    fn first_token(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.start(&Value::Null, sink)?;
        if self.turn.time_to_first_token.is_none() {
            self.turn.time_to_first_token = Some(self.request_started.elapsed());
        }
        Ok(())
    }

    /// The call for output item `item`, started if new.
    fn call_for(&mut self, item: &Value) -> anyhow::Result<usize> {
        let item_id = non_empty(item, "id").unwrap_or_default();
        let call_id = non_empty(item, "call_id");
        let existing = self.calls.iter().position(|c| {
            (!item_id.is_empty() && c.item_id == item_id)
                || call_id.is_some_and(|id| c.call.id == id)
        });
        if let Some(position) = existing {
            return Ok(position);
        }
        if self.calls.len() == MAX_CALLS {
            return Err(
                StreamError(format!("more than {MAX_CALLS} tool calls in one turn")).into(),
            );
        }
        let index = self.calls.len();
        let mut call = ToolCall::new(
            call_id.unwrap_or_default(),
            non_empty(item, "name").unwrap_or_default(),
            "",
        );
        call.index = index;
        if call.id.is_empty() {
            // The conversation needs an id to answer the call.
            call.id = format!("call_{index}");
        }
        self.calls.push(Call {
            item_id: item_id.to_owned(),
            call,
            emitted: false,
        });
        Ok(index)
    }

    fn call_added(&mut self, item: &Value, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let position = self.call_for(item)?;
        let arguments = str_of(item, "arguments").unwrap_or_default();
        self.push_arguments(position, arguments)?;
        self.first_token(sink)?;
        let call = &self.calls[position].call;
        sink.emit(&Event::ToolCallDelta {
            choice: 0,
            fragment: Fragment {
                index: call.index,
                id: Some(&call.id),
                name: Some(call.name.as_str()).filter(|n| !n.is_empty()),
                arguments_delta: arguments,
            },
        })?;
        Ok(())
    }

    fn arguments_delta(
        &mut self,
        item_id: Option<&str>,
        delta: &str,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        // A delta for an item we were not told of is for the last call, if any.
        let position = match item_id.and_then(|id| self.calls.iter().position(|c| c.item_id == id))
        {
            Some(position) => position,
            None if !self.calls.is_empty() => self.calls.len() - 1,
            None => return Ok(()),
        };
        self.push_arguments(position, delta)?;
        self.first_token(sink)?;
        sink.emit(&Event::ToolCallDelta {
            choice: 0,
            fragment: Fragment {
                index: self.calls[position].call.index,
                id: None,
                name: None,
                arguments_delta: delta,
            },
        })?;
        Ok(())
    }

    fn push_arguments(&mut self, position: usize, text: &str) -> anyhow::Result<()> {
        let arguments = &mut self.calls[position].call.arguments;
        if arguments.len().saturating_add(text.len()) > MAX_ARGUMENTS_BYTES {
            return Err(StreamError(format!(
                "tool call arguments exceed {MAX_ARGUMENTS_BYTES} bytes; refusing to buffer them"
            ))
            .into());
        }
        arguments.push_str(text);
        Ok(())
    }

    /// A function call item is complete: its final name and arguments win, and it is emitted.
    fn call_done(&mut self, item: &Value, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let position = self.call_for(item)?;
        let call = &mut self.calls[position];
        if let Some(name) = non_empty(item, "name") {
            name.clone_into(&mut call.call.name);
        }
        // A call id told only now (not with the item's start) is the one its result must name.
        if let Some(call_id) = non_empty(item, "call_id")
            && !call.emitted
        {
            call_id.clone_into(&mut call.call.id);
        }
        if let Some(arguments) = str_of(item, "arguments") {
            if arguments.len() > MAX_ARGUMENTS_BYTES {
                return Err(StreamError(format!(
                    "tool call arguments exceed {MAX_ARGUMENTS_BYTES} bytes; refusing to buffer them"
                ))
                .into());
            }
            arguments.clone_into(&mut call.call.arguments);
        }
        self.emit_call(position, sink)
    }

    fn emit_call(&mut self, position: usize, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let call = &mut self.calls[position];
        if call.emitted {
            return Ok(());
        }
        call.emitted = true;
        sink.emit(&Event::ToolCall {
            choice: 0,
            call: &call.call,
        })?;
        Ok(())
    }

    fn emit_pending_calls(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        for position in 0..self.calls.len() {
            self.emit_call(position, sink)?;
        }
        Ok(())
    }

    fn finish_event(&mut self, ending: &Ending, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let (reason, incomplete_reason) = finish_reason(ending, !self.calls.is_empty());
        sink.emit(&Event::Finish {
            choice: 0,
            reason,
            incomplete_reason,
        })?;
        Ok(())
    }

    /// Ends the stream: the usage, then the turn, or a truncation error when no terminal event
    /// came.
    pub(crate) fn finish(mut self, sink: &mut dyn Sink) -> anyhow::Result<Turn> {
        if let Some(usage) = &self.turn.usage {
            sink.emit(&Event::Usage(usage))?;
        }
        let Some(ending) = self.ending.take() else {
            return Err(StreamError(
                "the stream ended before response.completed; the answer is incomplete".into(),
            )
            .into());
        };
        let (reason, _) = finish_reason(&ending, !self.calls.is_empty());
        self.turn.finish_reasons = vec![(0, reason.to_owned())];
        self.turn.tool_call_count = self.calls.len();
        self.turn.tool_calls = self.calls.into_iter().map(|c| c.call).collect();
        let items = self.final_output.unwrap_or_else(|| {
            self.items.sort_by_key(|(index, _)| *index);
            self.items.into_iter().map(|(_, item)| item).collect()
        });
        self.turn.output_items =
            Some(items).filter(|items| covers(items, &self.turn.tool_calls, self.saw_text));
        Ok(self.turn)
    }
}

/// Whether output items can stand for the turn in the next request: its text as a message item,
/// each of its calls as a `function_call` item with the call's id. Otherwise the turn goes back
/// converted from the transcript.
fn covers(items: &[Value], calls: &[ToolCall], saw_text: bool) -> bool {
    let has = |kind: &str| items.iter().any(|item| str_of(item, "type") == Some(kind));
    !items.is_empty()
        && (!saw_text || has("message"))
        && calls.iter().all(|call| {
            items.iter().any(|item| {
                str_of(item, "type") == Some("function_call")
                    && str_of(item, "call_id") == Some(call.id.as_str())
            })
        })
}

/// Our finish reason for how the response ended, and the server's own word when incomplete.
fn finish_reason(ending: &Ending, made_calls: bool) -> (&str, Option<&str>) {
    match ending {
        Ending::Completed if made_calls => ("tool_calls", None),
        Ending::Completed => ("stop", None),
        Ending::Incomplete(Some(why)) => {
            let reason = match why.as_str() {
                "max_output_tokens" => "length",
                "content_filter" => "content_filter",
                other => other,
            };
            (reason, Some(why.as_str()))
        }
        Ending::Incomplete(None) => ("incomplete", None),
    }
}

#[cfg(test)]
mod tests;
