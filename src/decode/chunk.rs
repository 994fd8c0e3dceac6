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
pub use crate::event::Turn;
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
    pub fn asking_choices(mut self, n: u64) -> Self {
        self.choices_asked = Some(n);
        self
    }

    /// Makes choice `choice` (of `-n`) the one whose tool calls the turn records.
    pub fn recording_choice(mut self, choice: u64) -> Self {
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
    pub fn on_completion(&mut self, body: &Value, sink: &mut dyn Sink) -> anyhow::Result<()> {
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
pub(crate) mod tests {
    use super::*;
    use crate::emit::json::JsonSink;

    /// Runs SSE text through the decoder and interpreter into a JSON sink, returning the JSON
    /// lines (timing fields removed) and the error, if any.
    pub(crate) fn interpret(body: &str) -> (Vec<Value>, Option<anyhow::Error>) {
        interpret_pieces(&[body.as_bytes()])
    }

    /// The same, with the body arriving in the given pieces.
    pub(crate) fn interpret_pieces(pieces: &[&[u8]]) -> (Vec<Value>, Option<anyhow::Error>) {
        interpret_by(pieces, true)
    }

    /// The same, choosing whether plain chunks take their own path.
    fn interpret_by(pieces: &[&[u8]], plain_path: bool) -> (Vec<Value>, Option<anyhow::Error>) {
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        let mut decoder = sse::Decoder::default();
        let mut interpreter = Interpreter::new(Instant::now());
        interpreter.plain_path = plain_path;
        // Like the pipeline's pump: stop feeding at `[DONE]`.
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
            .and_then(|_| interpreter.finish(&mut sink))
            .and_then(|turn| {
                let summary = crate::event::Summary::of(&[turn], Instant::now());
                sink.emit(&Event::End(&summary))?;
                Ok(())
            });
        // As the pipeline's error event would: what was decoded before an error is written.
        sink.flush().unwrap();
        drop(sink);
        let lines = String::from_utf8(out).unwrap();
        let events = lines
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                if v["type"] == "end" {
                    v.as_object_mut().unwrap().retain(|k, _| k == "type");
                }
                v
            })
            .collect();
        (events, result.err())
    }

    fn sse(chunks: &[Value]) -> String {
        chunks
            .iter()
            .map(|c| format!("data: {c}\n\n"))
            .collect::<String>()
            + "data: [DONE]\n\n"
    }

    use serde_json::json;

    fn chunk(delta: Value, finish: Option<&str>) -> Value {
        json!({"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"m",
               "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
    }

    #[test]
    fn content_deltas_then_finish_then_usage_then_end() {
        let body = sse(&[
            chunk(json!({"role":"assistant","content":""}), None),
            chunk(json!({"content":"Hel"}), None),
            chunk(json!({"content":"lo"}), None),
            chunk(json!({}), Some("stop")),
            json!({"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}),
        ]);
        let (events, err) = interpret(&body);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            events,
            [
                json!({"type":"start","id":"c1","model":"m","created":1700000000}),
                json!({"type":"content","choice":0,"delta":"Hel"}),
                json!({"type":"content","choice":0,"delta":"lo"}),
                json!({"type":"finish","choice":0,"reason":"stop"}),
                json!({"type":"usage","prompt_tokens":3,"completion_tokens":2,"total_tokens":5}),
                json!({"type":"end"}),
            ]
        );
    }

    #[test]
    fn usage_is_the_last_one_sent_never_a_sum() {
        let mut first = chunk(json!({"content":"a"}), None);
        first["usage"] = json!({"completion_tokens":1});
        let mut second = chunk(json!({}), Some("stop"));
        second["usage"] = json!({"completion_tokens":7});
        let mut nulls = chunk(json!({}), None);
        nulls["usage"] = Value::Null;
        let (events, _) = interpret(&sse(&[first, second, nulls]));
        let usage: Vec<_> = events.iter().filter(|e| e["type"] == "usage").collect();
        assert_eq!(usage, [&json!({"type":"usage","completion_tokens":7})]);
    }

    #[test]
    fn azure_prompt_filter_chunk_with_empty_ids_is_fine() {
        let filter = json!({"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]});
        let (events, err) = interpret(&sse(&[filter, chunk(json!({"content":"x"}), Some("stop"))]));
        assert!(err.is_none());
        assert_eq!(
            events[0],
            json!({"type":"start","id":"c1","model":"m","created":1700000000})
        );
        assert_eq!(events[1], json!({"type":"content","choice":0,"delta":"x"}));
    }

    #[test]
    fn reasoning_and_refusal_are_their_own_events() {
        let (events, _) = interpret(&sse(&[
            chunk(json!({"reasoning_content":"think"}), None),
            chunk(json!({"reasoning":"more"}), None),
            chunk(json!({"refusal":"no"}), Some("stop")),
        ]));
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e["type"].clone(), e["delta"].clone()))
            .collect();
        assert_eq!(kinds[1], (json!("reasoning"), json!("think")));
        assert_eq!(kinds[2], (json!("reasoning"), json!("more")));
        assert_eq!(kinds[3], (json!("refusal"), json!("no")));
    }

    #[test]
    fn errors_in_the_stream_in_each_shape() {
        let shapes = [
            "data: {\"error\":{\"message\":\"overloaded\",\"code\":\"server_error\"}}\n\n",
            "event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"code\":\"server_error\"}}\n\n",
            "data: {\"object\":\"error\",\"message\":\"overloaded\",\"code\":\"server_error\"}\n\n",
            "event: error\ndata: overloaded\n\n",
        ];
        for shape in shapes {
            let body = format!(
                "data: {}\n\n{shape}",
                chunk(json!({"content":"partial"}), None)
            );
            let (events, err) = interpret(&body);
            let err = err.expect("an error");
            let api = err.downcast_ref::<ApiError>().expect("an API error");
            assert_eq!(api.message, "overloaded", "{shape}");
            assert_eq!(
                events[1]["delta"], "partial",
                "output before the error is kept"
            );
        }
    }

    #[test]
    fn without_done_a_finished_stream_is_fine_and_an_unfinished_one_is_truncated() {
        let finished = format!("data: {}\n\n", chunk(json!({"content":"a"}), Some("stop")));
        assert!(interpret(&finished).1.is_none());

        let cut = format!("data: {}\n\n", chunk(json!({"content":"a"}), None));
        let err = interpret(&cut).1.expect("truncated");
        assert!(err.is::<StreamError>());
        assert!(
            err.to_string().contains("before choice 0 finished"),
            "{err}"
        );

        let err = interpret("").1.expect("empty");
        assert!(err.to_string().contains("without any answer"), "{err}");
    }

    #[test]
    fn a_chunk_that_is_not_json_is_a_stream_error() {
        let err = interpret("data: {\"choices\": [\n\n").1.expect("malformed");
        assert!(err.is::<StreamError>());
        assert!(err.to_string().starts_with("malformed chunk"), "{err}");
    }

    #[test]
    fn unknown_named_events_and_empty_data_are_skipped() {
        let body = format!(
            "event: ping\ndata: {{}}\n\ndata:\n\n{}",
            sse(&[chunk(json!({"content":"a"}), Some("stop"))])
        );
        let (events, err) = interpret(&body);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(events[1], json!({"type":"content","choice":0,"delta":"a"}));
    }

    #[test]
    fn tool_calls_are_emitted_complete_before_the_finish() {
        let (events, _) = interpret(&sse(&[
            chunk(
                json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]));
        let tail: Vec<_> = events.iter().skip(4).collect();
        assert_eq!(
            tail,
            [
                &json!({"type":"tool_call","choice":0,"index":0,"id":"call_1","name":"get_weather","arguments":{"city":"Paris"}}),
                &json!({"type":"finish","choice":0,"reason":"tool_calls"}),
                &json!({"type":"end"}),
            ]
        );
        assert_eq!(
            events[1],
            json!({"type":"tool_call_delta","choice":0,"index":0,"id":"call_1","name":"get_weather","arguments_delta":""})
        );
    }

    /// The fragmented and the parallel shapes, with an argument fragment that ends inside an
    /// escape sequence and one that holds non-ASCII text, split at every byte offset.
    #[test]
    fn tool_call_streams_split_at_every_offset_give_the_same_calls() {
        let fragmented = sse(&[
            chunk(
                json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"say","arguments":""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"text\":\"she said \\"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":"\"héllo 🌍\\\""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls":[{"index":0,"function":{"arguments":"\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]);
        let parallel = sse(&[
            chunk(
                json!({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{\"y\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls":[{"index":1,"function":{"arguments":"2}"}},{"index":0,"function":{"arguments":"1}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]);
        let calls = |events: Vec<Value>| -> Vec<Value> {
            events
                .into_iter()
                .filter(|e| e["type"] == "tool_call")
                .collect()
        };
        for (body, expected) in [
            (
                fragmented,
                vec![
                    json!({"type":"tool_call","choice":0,"index":0,"id":"call_1","name":"say","arguments":{"text":"she said \"héllo 🌍\""}}),
                ],
            ),
            (
                parallel,
                vec![
                    json!({"type":"tool_call","choice":0,"index":0,"id":"a","name":"f","arguments":{"x":1}}),
                    json!({"type":"tool_call","choice":0,"index":1,"id":"b","name":"g","arguments":{"y":2}}),
                ],
            ),
        ] {
            let bytes = body.as_bytes();
            let (whole, err) = interpret(&body);
            assert!(err.is_none(), "{err:?}");
            let whole = calls(whole);
            assert_eq!(whole, expected);
            for at in 0..=bytes.len() {
                let (events, err) = interpret_pieces(&[&bytes[..at], &bytes[at..]]);
                assert!(err.is_none(), "split at {at}: {err:?}");
                assert_eq!(calls(events), expected, "split at {at}");
            }
            let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(
                calls(interpret_pieces(&bytewise).0),
                expected,
                "one byte at a time"
            );
        }
    }

    #[test]
    fn tool_calls_of_a_stream_that_ends_without_finish_are_still_emitted() {
        let body = format!(
            "data: {}\n\ndata: [DONE]\n\n",
            chunk(
                json!({"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{oops"}}]}),
                None
            )
        );
        let (events, err) = interpret(&body);
        assert!(err.is_none());
        assert!(events.contains(&json!({"type":"tool_call","choice":0,"index":0,"id":"a","name":"f","arguments":null,"arguments_raw":"{oops"})));
    }

    #[test]
    fn a_complete_json_completion_is_interpreted_like_a_stream() {
        let body = json!({"id":"x","model":"m","created":5,"object":"chat.completion",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],
            "usage":{"total_tokens":9}});
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out);
        let mut interpreter = Interpreter::new(Instant::now());
        interpreter.on_completion(&body, &mut sink).unwrap();
        let turn = interpreter.finish(&mut sink).unwrap();
        assert_eq!(turn.finish_reasons, [(0, "stop".to_owned())]);
        drop(sink);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#"{"type":"content","choice":0,"delta":"Hi there"}"#),
            "{text}"
        );
    }

    #[test]
    fn choices_are_tracked_separately() {
        let two = json!({"id":"c","model":"m","choices":[
            {"index":0,"delta":{"content":"a"},"finish_reason":"stop"},
            {"index":1,"delta":{"content":"b"},"finish_reason":null}]});
        let err = interpret(&format!("data: {two}\n\n"))
            .1
            .expect("choice 1 unfinished");
        assert!(
            err.to_string().contains("before choice 1 finished"),
            "{err}"
        );
    }

    /// Chunks the plain path reads, and near misses it must leave to the general path: each
    /// gives the same events both ways.
    #[test]
    fn the_plain_path_agrees_with_the_general_path() {
        let plain = [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"h\u00e9 \"q\""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[{"index":1,"delta":{"reasoning_content":"","reasoning":"r"}},{"index":0,"delta":{"refusal":"no","content":"x"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"delta":{"content":"y","tool_calls":null},"finish_reason":""}]}"#,
            r#"{"id":"","model":"","choices":[]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a"}}],"choices":[{"index":0,"delta":{"content":"last"}}]}"#,
        ];
        let general = [
            r#"{"choices":[{"index":0,"delta":{"content":["a"]}}]}"#,
            r#"{"choices":[[0,{"content":"seq"},"stop"]]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
            r#"{"created":1.5,"choices":[{"index":0,"delta":{"content":"f"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"u"}}],"usage":{"total_tokens":3}}"#,
            r#"{"object":"error","message":"bad"}"#,
            r#"{"error":null,"choices":[{"delta":{"content":"e"}}]}"#,
        ];
        let outcome = |(events, err): (Vec<Value>, Option<anyhow::Error>)| {
            (events, err.map(|e| e.to_string()))
        };
        for chunk in plain.iter().chain(&general) {
            let body = format!("data: {chunk}\n\ndata: [DONE]\n\n");
            let by_plain = outcome(interpret_by(&[body.as_bytes()], true));
            assert_eq!(
                by_plain,
                outcome(interpret_by(&[body.as_bytes()], false)),
                "{chunk}"
            );
        }
        for chunk in plain {
            assert!(PlainChunk::parse(chunk).is_some(), "{chunk}");
        }
        for chunk in general {
            assert!(PlainChunk::parse(chunk).is_none(), "{chunk}");
        }
    }

    /// Arbitrary streams of chunk-like JSON pieces: the interpreter must never panic, and how
    /// the bytes are split must never change what it emits or whether it fails.
    #[test]
    fn arbitrary_chunks_never_panic_and_splits_never_change_the_outcome() {
        use crate::decode::sse::tests::Rng;
        let pieces: &[&[u8]] = &[
            b"data: ",
            b"\n\n",
            b"\n",
            b"event: error\n",
            b"data: [DONE]\n\n",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            br#""choices":"#,
            br#""index":0"#,
            br#""index":1"#,
            br#""delta":"#,
            br#""content":"h\u00e9""#,
            br#""finish_reason":"stop""#,
            br#""tool_calls":"#,
            br#""function":"#,
            br#""arguments":"{\"a"#,
            br#""name":"f""#,
            br#""id":"c""#,
            br#""usage":"#,
            br#""error":"#,
            br#""message":"m""#,
            b"null",
            b"1",
            br#""reasoning":"r""#,
            br#""object":"error""#,
            br#""object":"chat.completion.chunk""#,
            br#""created":1700000000"#,
            br#""model":"m\"x""#,
            br#""reasoning_content":"t""#,
            br#""refusal":"no""#,
            br#""content":"""#,
            br#""content":["#,
            br#""text":"p""#,
            br#""detail":"d""#,
            br#""index":-1"#,
            b"1.5",
            br#""s""#,
            b"\xFF",
        ];
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let outcome = |(events, err): (Vec<Value>, Option<anyhow::Error>)| {
            (events, err.map(|e| e.to_string()))
        };
        for case in 0..2000 {
            let count = 1 + rng.below(80);
            let input = rng.stream(pieces, count);
            let whole = outcome(interpret_pieces(&[&input]));
            assert_eq!(
                outcome(interpret_by(&[&input], false)),
                whole,
                "case {case}: the plain path and the general path disagree on {:?}",
                String::from_utf8_lossy(&input)
            );
            let cuts = 1 + rng.below(5);
            let split = rng.split(&input, cuts);
            assert_eq!(
                outcome(interpret_pieces(&split)),
                whole,
                "case {case}: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
