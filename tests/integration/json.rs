//! `--json`: one JSON object per line on stdout, in the documented schema.

use serde_json::{Value, json};

use crate::server::{self, DONE, Server, content, delta, finish, hello_chunks, sse};
use crate::util::gptstream;

/// The events with the timing fields of `end` checked for type and then removed.
fn events_without_timing(lines: Vec<Value>) -> Vec<Value> {
    lines
        .into_iter()
        .map(|mut event| {
            if event["type"] == "end" {
                assert!(event["duration_ms"].is_f64(), "{event}");
                assert!(
                    event["time_to_first_token_ms"].is_f64()
                        || event["time_to_first_token_ms"].is_null()
                );
                let rate = &event["tokens_per_second"];
                assert!(
                    rate.is_null() || rate.as_f64().is_some_and(|r| r > 0.0),
                    "{event}"
                );
                let object = event.as_object_mut().unwrap();
                object.remove("duration_ms");
                object.remove("time_to_first_token_ms");
                object.remove("tokens_per_second");
            }
            event
        })
        .collect()
}

#[test]
fn every_event_is_one_json_line_in_order() {
    let server = Server::one(sse(&hello_chunks()));
    let out = gptstream().server(&server).args(["--json", "hi"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stderr, "", "--json keeps stderr for errors only");
    assert_eq!(
        events_without_timing(out.json_lines()),
        [
            json!({"type":"start","id":"chatcmpl-1","model":"test-model","created":1700000000}),
            json!({"type":"content","choice":0,"delta":"Hello"}),
            json!({"type":"content","choice":0,"delta":", wor"}),
            json!({"type":"content","choice":0,"delta":"ld!"}),
            json!({"type":"finish","choice":0,"reason":"stop"}),
            json!({"type":"usage","prompt_tokens":9,"completion_tokens":4,"total_tokens":13}),
            json!({"type":"end","requests":1,"tool_calls":0,"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}),
        ]
    );
}

#[test]
fn reasoning_refusal_and_tool_calls_have_their_events() {
    let server = Server::one(sse(&[
        delta(json!({"reasoning":"hmm"}), None),
        delta(json!({"refusal":"I can't"}), None),
        delta(
            json!({"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\":"}}]}),
            None,
        ),
        delta(
            json!({"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}),
            None,
        ),
        delta(
            json!({"tool_calls":[{"index":1,"id":"call_2","function":{"name":"g","arguments":"not json"}}]}),
            None,
        ),
        finish("tool_calls"),
        DONE.to_owned(),
    ]));
    let out = gptstream().server(&server).args(["--json", "hi"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = events_without_timing(out.json_lines());
    assert_eq!(
        &events[1..],
        [
            json!({"type":"reasoning","choice":0,"delta":"hmm"}),
            json!({"type":"refusal","choice":0,"delta":"I can't"}),
            json!({"type":"tool_call_delta","choice":0,"index":0,"id":"call_1","name":"f","arguments_delta":"{\"a\":"}),
            json!({"type":"tool_call_delta","choice":0,"index":0,"id":null,"name":null,"arguments_delta":"1}"}),
            json!({"type":"tool_call_delta","choice":0,"index":1,"id":"call_2","name":"g","arguments_delta":"not json"}),
            json!({"type":"tool_call","choice":0,"index":0,"id":"call_1","name":"f","arguments":{"a":1}}),
            json!({"type":"tool_call","choice":0,"index":1,"id":"call_2","name":"g","arguments":null,"arguments_raw":"not json"}),
            json!({"type":"finish","choice":0,"reason":"tool_calls"}),
            json!({"type":"end","requests":1,"tool_calls":2,"usage":null}),
        ]
    );
}

#[test]
fn an_http_error_is_an_error_event_with_status_and_code() {
    let body = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    let server = Server::one(server::full(429, "application/json", body));
    let out = gptstream()
        .server(&server)
        .args(["--json", "--retries", "0", "hi"])
        .run();
    assert_eq!(out.code, 3);
    assert_eq!(
        out.json_lines(),
        [
            json!({"type":"error","message":"HTTP 429 Too Many Requests (rate_limit_exceeded): Rate limit reached","status":429,"code":"rate_limit_exceeded"})
        ]
    );
    assert_eq!(
        out.stderr,
        "gptstream: HTTP 429 Too Many Requests (rate_limit_exceeded): Rate limit reached\n"
    );
}

#[test]
fn a_mid_stream_error_comes_after_the_content_already_sent() {
    let server = Server::one(sse(&[
        content("partial"),
        r#"data: {"error":{"message":"The server had an error","type":"server_error"}}

"#
        .to_owned(),
    ]));
    let out = gptstream().server(&server).args(["--json", "hi"]).run();
    assert_eq!(out.code, 3);
    let events = out.json_lines();
    assert_eq!(
        events[1],
        json!({"type":"content","choice":0,"delta":"partial"})
    );
    assert_eq!(
        events.last().unwrap(),
        &json!({"type":"error","message":"the server reported an error (server_error): The server had an error","status":null,"code":"server_error"})
    );
}

/// Issue #12, defect 13: U+2028 and U+2029 (and U+0085) in a delta were written raw, so a reader
/// that splits lines on them (Python's `str.splitlines`) cut an event in two. They arrive
/// escaped, and decode back to the text the server sent.
#[test]
fn defect13_line_separators_in_the_text_do_not_split_a_json_line() {
    let text = "one\u{2028}two\u{2029}three\u{85}four \u{2014}";
    let server = Server::one(sse(&[content(text), finish("stop"), DONE.to_owned()]));
    let out = gptstream().server(&server).args(["--json", "hi"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
    let stdout = out.stdout();
    assert!(
        !stdout.contains(['\u{2028}', '\u{2029}', '\u{85}']),
        "{stdout}"
    );
    let splitlines = stdout
        .split(['\n', '\u{2028}', '\u{2029}', '\u{85}'])
        .filter(|line| !line.is_empty())
        .count();
    assert_eq!(splitlines, out.json_lines().len(), "{stdout}");
    assert_eq!(
        out.json_lines()[1],
        json!({"type":"content","choice":0,"delta":text})
    );
}
