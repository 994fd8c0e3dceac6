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
pub struct Interpreter {
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
    pub fn new(request_started: Instant) -> Self {
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
    pub fn keeping_items(mut self, keep: bool) -> Self {
        self.keep_items = keep;
        self
    }

    /// Interprets one SSE event. `Break` means the response ended (or `[DONE]`): stop reading.
    pub fn on_sse(
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
    pub fn on_completion(&mut self, body: &Value, sink: &mut dyn Sink) -> anyhow::Result<()> {
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
    pub fn finish(mut self, sink: &mut dyn Sink) -> anyhow::Result<Turn> {
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
mod tests {
    use super::*;
    use crate::decode::dialect;
    use crate::emit::json::JsonSink;
    use serde_json::json;

    /// Feeds `pieces` through the decoder and a dialect-detecting interpreter into a JSON sink;
    /// the JSON lines (the `end` line cut to its type) and the error, if any.
    fn interpret(pieces: &[&[u8]]) -> (Vec<Value>, Option<String>) {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        let mut decoder = sse::Decoder::default();
        let mut interpreter = dialect::Interpreter::detecting(Instant::now());
        let mut fed = || -> anyhow::Result<()> {
            for piece in pieces {
                let flow = decoder.feed(piece, |e| interpreter.on_sse(e, &mut sink))?;
                sink.flush()?;
                if flow.is_break() {
                    break;
                }
            }
            Ok(())
        };
        let result = fed()
            .and_then(|()| interpreter.finish(&mut sink))
            .map(|turn| {
                let summary = crate::event::Summary::of(&[turn], Instant::now());
                let _ = sink.emit(&Event::End(&summary));
            });
        sink.flush().unwrap();
        drop(sink);
        let events = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| {
                let mut event: Value = serde_json::from_str(line).unwrap();
                if event["type"] == "end" {
                    event.as_object_mut().unwrap().retain(|k, _| k == "type");
                }
                event
            })
            .collect();
        (events, result.err().map(|e| format!("{e:#}")))
    }

    fn example(name: &str) -> String {
        std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// `data:` lines only, as LiteLLM sends them.
    fn data_only(events: &[Value]) -> String {
        events.iter().map(|e| format!("data: {e}\n\n")).collect()
    }

    #[test]
    fn a_text_stream_maps_onto_the_chat_events_at_every_split() {
        let body = example("responses.sse");
        let (whole, error) = interpret(&[body.as_bytes()]);
        assert_eq!(error, None);
        assert_eq!(
            whole,
            [
                json!({"type":"start","id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","model":"gpt-4.1-2025-04-14","created":1741476542}),
                json!({"type":"content","choice":0,"delta":"Hello"}),
                json!({"type":"content","choice":0,"delta":", wor"}),
                json!({"type":"content","choice":0,"delta":"ld! "}),
                json!({"type":"content","choice":0,"delta":"Café — "}),
                json!({"type":"content","choice":0,"delta":"ok."}),
                json!({"type":"finish","choice":0,"reason":"stop"}),
                json!({"type":"usage","input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":21}),
                json!({"type":"end"}),
            ]
        );
        let bytes = body.as_bytes();
        for cut in 1..bytes.len() {
            let (split, error) = interpret(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(error, None, "cut at {cut}");
            assert_eq!(split, whole, "cut at {cut}");
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(interpret(&one_by_one).0, whole);
    }

    #[test]
    fn a_function_call_streams_as_tool_call_deltas_then_one_tool_call() {
        let (events, error) = interpret(&[example("responses-tool-call.sse").as_bytes()]);
        assert_eq!(error, None);
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "start",
                "tool_call_delta",
                "tool_call_delta",
                "tool_call_delta",
                "tool_call_delta",
                "tool_call",
                "finish",
                "usage",
                "end"
            ]
        );
        assert_eq!(
            events[5],
            json!({"type":"tool_call","choice":0,"index":0,"id":"call_1AbCdEf","name":"get_weather","arguments":{"city":"Paris"}})
        );
        assert_eq!(
            events[6],
            json!({"type":"finish","choice":0,"reason":"tool_calls"})
        );
    }

    #[test]
    fn incomplete_responses_finish_with_our_reason_and_keep_theirs() {
        for (why, reason) in [
            ("max_output_tokens", "length"),
            ("content_filter", "content_filter"),
            ("something_new", "something_new"),
        ] {
            let body = data_only(&[
                json!({"type":"response.output_text.delta","delta":"Hi"}),
                json!({"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":why},"usage":{"output_tokens":1}}}),
            ]);
            let (events, error) = interpret(&[body.as_bytes()]);
            assert_eq!(error, None, "{why}");
            assert_eq!(
                events[2],
                json!({"type":"finish","choice":0,"reason":reason,"incomplete_reason":why})
            );
        }
    }

    #[test]
    fn every_error_shape_is_an_api_error_after_the_text_so_far() {
        let text = json!({"type":"response.output_text.delta","delta":"Hel"});
        let cases = [
            (
                json!({"type":"error","code":"server_error","message":"The server had an error","param":null}),
                "the server reported an error (server_error): The server had an error",
            ),
            (
                json!({"type":"error","error":{"type":"invalid_request_error","code":"rate_limit_exceeded","message":"Slow down"}}),
                "the server reported an error (rate_limit_exceeded): Slow down",
            ),
            (
                json!({"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"Boom"}}}),
                "the server reported an error (server_error): Boom",
            ),
            (
                json!({"error":{"message":"litellm.APIError: upstream died","type":"None","code":"500"}}),
                "the server reported an error (500): litellm.APIError: upstream died",
            ),
        ];
        for (error_event, message) in cases {
            let body = data_only(&[text.clone(), error_event.clone()]);
            let (events, error) = interpret(&[body.as_bytes()]);
            assert_eq!(error.as_deref(), Some(message), "{error_event}");
            assert_eq!(
                events[1],
                json!({"type":"content","choice":0,"delta":"Hel"})
            );
        }
    }

    #[test]
    fn a_stream_without_a_terminal_event_is_truncated_even_with_done() {
        for tail in ["", "data: [DONE]\n\n"] {
            let body =
                data_only(&[json!({"type":"response.output_text.delta","delta":"Hel"})]) + tail;
            let (events, error) = interpret(&[body.as_bytes()]);
            assert_eq!(
                error.as_deref(),
                Some("the stream ended before response.completed; the answer is incomplete")
            );
            assert_eq!(events.len(), 2, "{events:?}");
        }
    }

    #[test]
    fn reasoning_and_refusals_and_unknown_events() {
        let body = data_only(&[
            json!({"type":"response.created","response":{"id":"r","model":"o3","created_at":5}}),
            json!({"type":"response.reasoning_summary_text.delta","delta":"Think"}),
            json!({"type":"response.reasoning_text.delta","delta":"ing"}),
            json!({"type":"response.something.new","delta":"ignored"}),
            json!({"type":"response.refusal.delta","delta":"No."}),
            json!({"type":"response.completed","response":{"status":"completed"}}),
        ]);
        let (events, error) = interpret(&[body.as_bytes()]);
        assert_eq!(error, None);
        assert_eq!(
            events,
            [
                json!({"type":"start","id":"r","model":"o3","created":5}),
                json!({"type":"reasoning","choice":0,"delta":"Think"}),
                json!({"type":"reasoning","choice":0,"delta":"ing"}),
                json!({"type":"refusal","choice":0,"delta":"No."}),
                json!({"type":"finish","choice":0,"reason":"stop"}),
                json!({"type":"end"}),
            ]
        );
    }

    #[test]
    fn the_turn_keeps_the_output_items_as_received() {
        let mut sink = JsonSink::new(Vec::new());
        let mut decoder = sse::Decoder::default();
        let mut interpreter = Interpreter::new(Instant::now()).keeping_items(true);
        let body = example("responses-tool-call.sse");
        let flow = decoder
            .feed(body.as_bytes(), |e| interpreter.on_sse(e, &mut sink))
            .unwrap();
        assert!(flow.is_break(), "response.completed ends the reading");
        let turn = interpreter.finish(&mut sink).unwrap();
        assert_eq!(turn.tool_calls.len(), 1);
        assert_eq!(turn.tool_calls[0].id, "call_1AbCdEf");
        assert_eq!(turn.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        let items = turn.output_items.unwrap();
        assert_eq!(items[0]["id"], "fc_12345xyz");
        assert_eq!(items[0]["type"], "function_call");
    }

    #[test]
    fn a_non_streamed_response_object_is_shown_the_same_way() {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        let mut interpreter = dialect::Interpreter::detecting(Instant::now());
        let body = json!({"id":"resp_1","object":"response","created_at":7,"model":"m","status":"completed",
            "output":[
                {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Hmm"}]},
                {"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"Hi!"}]},
                {"type":"function_call","id":"fc_1","call_id":"call_9","name":"f","arguments":"{}"}],
            "usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}});
        interpreter.on_completion(&body, &mut sink).unwrap();
        let turn = interpreter.finish(&mut sink).unwrap();
        sink.flush().unwrap();
        drop(sink);
        let kinds: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "start",
                "reasoning",
                "content",
                "tool_call",
                "finish",
                "usage"
            ]
        );
        assert_eq!(turn.finish_reasons, [(0, "tool_calls".to_owned())]);
    }

    /// Interprets `events` (data lines) with items kept, returning the turn.
    fn turn_of(events: &[Value]) -> Turn {
        let mut sink = JsonSink::new(Vec::new());
        let mut decoder = sse::Decoder::default();
        let mut interpreter = Interpreter::new(Instant::now()).keeping_items(true);
        let body = data_only(events);
        let _flow = decoder
            .feed(body.as_bytes(), |e| interpreter.on_sse(e, &mut sink))
            .unwrap();
        interpreter.finish(&mut sink).unwrap()
    }

    #[test]
    fn output_items_stand_for_the_turn_only_when_they_cover_it() {
        let completed = |output: Value| json!({"type":"response.completed","response":{"status":"completed","output":output}});
        let text = json!({"type":"response.output_text.delta","delta":"Hi"});
        // No output echoed and no item streamed: the turn goes back converted, not as nothing.
        assert_eq!(
            turn_of(&[text.clone(), completed(json!([]))]).output_items,
            None
        );
        // Items streamed, then an empty `output`: the streamed items stand.
        let message = json!({"type":"message","id":"m","role":"assistant","content":[{"type":"output_text","text":"Hi"}]});
        let done = json!({"type":"response.output_item.done","output_index":0,"item":message});
        assert_eq!(
            turn_of(&[text, done, completed(json!([]))]).output_items,
            Some(vec![message])
        );
        // A call whose item is missing from the output: converted.
        let added = json!({"type":"response.output_item.added","item":{"type":"function_call","id":"fc","call_id":"c1","name":"f","arguments":"{}"}});
        let turn = turn_of(&[added, completed(json!([{"type":"message","content":[]}]))]);
        assert_eq!(turn.tool_calls[0].id, "c1");
        assert_eq!(turn.output_items, None);
    }

    #[test]
    fn items_are_not_kept_unless_asked() {
        let mut sink = JsonSink::new(Vec::new());
        let mut interpreter = Interpreter::new(Instant::now());
        let body = json!({"object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}]});
        interpreter.on_completion(&body, &mut sink).unwrap();
        assert_eq!(interpreter.finish(&mut sink).unwrap().output_items, None);
    }

    #[test]
    fn a_call_id_told_only_when_the_item_is_done_is_the_one_used() {
        let turn = turn_of(&[
            json!({"type":"response.output_item.added","item":{"type":"function_call","id":"fc_1","name":"f","arguments":""}}),
            json!({"type":"response.function_call_arguments.delta","item_id":"fc_1","delta":"{}"}),
            json!({"type":"response.output_item.done","item":{"type":"function_call","id":"fc_1","call_id":"call_real","name":"f","arguments":"{}"}}),
            json!({"type":"response.completed","response":{"status":"completed"}}),
        ]);
        assert_eq!(turn.tool_calls[0].id, "call_real");
        let items = turn.output_items.expect("the done item covers the call");
        assert_eq!(items[0]["call_id"], "call_real");
    }

    #[test]
    fn an_incomplete_response_without_a_reason_says_incomplete() {
        let body =
            data_only(&[json!({"type":"response.incomplete","response":{"status":"incomplete"}})]);
        let (events, error) = interpret(&[body.as_bytes()]);
        assert_eq!(error, None);
        assert_eq!(
            events[1],
            json!({"type":"finish","choice":0,"reason":"incomplete"})
        );
    }

    #[test]
    fn summary_parts_are_set_apart_and_a_leading_error_is_told_apart_from_chat() {
        let summary = |part: u64, delta: &str| json!({"type":"response.reasoning_summary_text.delta","item_id":"rs","summary_index":part,"delta":delta});
        let body = data_only(&[
            summary(0, "One."),
            summary(0, " More."),
            summary(1, "Two."),
            json!({"type":"response.completed","response":{"status":"completed"}}),
        ]);
        let (events, _) = interpret(&[body.as_bytes()]);
        let reasoning: String = events
            .iter()
            .filter(|e| e["type"] == "reasoning")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(reasoning, "One. More.\n\nTwo.");
        let body = data_only(&[json!({"type":"error","code":"server_error","message":"Boom"})]);
        let (_, error) = interpret(&[body.as_bytes()]);
        assert_eq!(
            error.as_deref(),
            Some("the server reported an error (server_error): Boom")
        );
    }

    #[test]
    fn hostile_streams_are_bounded() {
        let mut body = String::new();
        for i in 0..=MAX_CALLS {
            body += &data_only(&[
                json!({"type":"response.output_item.added","item":{"type":"function_call","id":format!("fc_{i}"),"call_id":format!("c{i}"),"name":"f","arguments":""}}),
            ]);
        }
        let (_, error) = interpret(&[body.as_bytes()]);
        assert_eq!(
            error.as_deref(),
            Some("more than 1024 tool calls in one turn")
        );
    }
}
