//! The chunk interpreter on SSE bytes, split at every offset, and on arbitrary chunk streams.

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
    let filter =
        json!({"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]});
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
    let outcome =
        |(events, err): (Vec<Value>, Option<anyhow::Error>)| (events, err.map(|e| e.to_string()));
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
    let outcome =
        |(events, err): (Vec<Value>, Option<anyhow::Error>)| (events, err.map(|e| e.to_string()));
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
