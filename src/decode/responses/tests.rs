//! The Responses interpreter on recorded and hostile streams, split at every offset.

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
        let body = data_only(&[json!({"type":"response.output_text.delta","delta":"Hel"})]) + tail;
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
