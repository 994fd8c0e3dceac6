//! `--api responses`: the Responses API through the same pipeline: the request it sends, the
//! answer shown exactly as for chat, tool loops, transcripts that move between the two APIs,
//! `--replay` that tells the dialect by itself, and `--record`.

use serde_json::{Value, json};

use crate::server::{self, DONE, Server, Step, content, finish, sse};
use crate::util::{Scratch, gptstream};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The events of a recorded stream, one HTTP chunk each (split the way the server wrote them).
fn chunks_of(body: &str) -> Vec<String> {
    body.split_inclusive("\n\n").map(str::to_owned).collect()
}

/// `data:` lines only, as LiteLLM sends them.
fn data(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| format!("data: {e}\n\n")).collect()
}

fn text_answer(text: &str) -> Vec<String> {
    data(&[
        json!({"type":"response.created","response":{"id":"resp_2","model":"m","created_at":1}}),
        json!({"type":"response.output_text.delta","delta":text}),
        json!({"type":"response.completed","response":{"id":"resp_2","status":"completed",
            "output":[{"type":"message","id":"msg_2","role":"assistant","content":[{"type":"output_text","text":text}]}],
            "usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7}}}),
    ])
}

#[test]
fn the_answer_and_summary_are_as_for_chat_and_the_request_is_a_responses_request() {
    let server = Server::one(sse(&chunks_of(&example("responses.sse"))));
    let out = gptstream()
        .server(&server)
        .args([
            "--api",
            "responses",
            "-s",
            "Be brief.",
            "--max-tokens",
            "50",
        ])
        .args(["--reasoning-effort", "low", "--temperature", "0.5", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello, world! Café — ok.\n--- stderr\n\
         finish_reason=stop input_tokens=12 output_tokens=9 total_tokens=21 ttft_ms=* duration_ms=*\n"
    );
    let request = server.request();
    assert_eq!(request.path, "/v1/responses");
    assert_eq!(
        request.json(),
        json!({"model":"gpt-4o-mini","instructions":"Be brief.",
               "input":[{"type":"message","role":"user","content":"hi"}],
               "stream":true,"store":false,"max_output_tokens":50,"temperature":0.5,
               "reasoning":{"effort":"low","summary":"auto"},"include":["reasoning.encrypted_content"]})
    );
}

#[test]
fn gptstream_api_selects_it_and_extra_still_wins() {
    let scratch = Scratch::new("responses-tools");
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"get_weather","parameters":{"type":"object"}}"#,
    );
    let server = Server::one(sse(&text_answer("ok")));
    let out = gptstream()
        .server(&server)
        .env("GPTSTREAM_API", "responses")
        .args(["--tools", &tools, "--tool-choice", "get_weather"])
        .args([
            "--no-parallel-tool-calls",
            "--extra",
            r#"{"store":true}"#,
            "hi",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let body = server.request().json();
    assert_eq!(
        body["tools"],
        json!([{"type":"function","name":"get_weather","parameters":{"type":"object"}}])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type":"function","name":"get_weather"})
    );
    assert_eq!(body["parallel_tool_calls"], false);
    assert_eq!(body["store"], true);
    assert!(body.get("stream_options").is_none());
}

#[test]
fn several_choices_are_a_usage_error() {
    let out = gptstream()
        .args([
            "--api",
            "responses",
            "-n",
            "2",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "hi",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: -n 2 needs --api chat: the Responses API has no choices\n"
    );
}

#[test]
fn a_tool_loop_sends_the_output_items_back_as_received_with_each_output() {
    let scratch = Scratch::new("responses-loop");
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"get_weather","parameters":{"type":"object"}}"#,
    );
    let saved = scratch.path("chat.json");
    let server = Server::start(vec![
        sse(&chunks_of(&example("responses-tool-call.sse"))),
        sse(&text_answer("Sunny.")),
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "-q", "--tools", &tools])
        .args([
            "--tool-exec",
            "get_weather=echo 18C",
            "--save",
            &saved,
            "Paris?",
        ])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nSunny.\n--- stderr\n");
    server.request();
    let follow_up = server.request().json();
    assert_eq!(
        follow_up["input"],
        json!([
            {"type":"message","role":"user","content":"Paris?"},
            {"type":"function_call","status":"completed","arguments":"{\"city\":\"Paris\"}","call_id":"call_1AbCdEf","name":"get_weather"},
            {"type":"function_call_output","call_id":"call_1AbCdEf","output":"18C\n"}
        ])
    );
    assert_eq!(
        server.connections(),
        1,
        "the follow-up reuses the connection"
    );
    // The transcript is in chat messages, as always: it continues under either API.
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        on_disk,
        json!([
            {"role":"user","content":"Paris?"},
            {"role":"assistant","tool_calls":[{"id":"call_1AbCdEf","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"call_1AbCdEf","content":"18C\n"},
            {"role":"assistant","content":"Sunny."}
        ])
    );
    let chat = Server::one(sse(&[content("Yes."), finish("stop"), DONE.to_owned()]));
    let out = gptstream()
        .server(&chat)
        .args(["-q", "--messages", &saved, "Sure?"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nYes.\n--- stderr\n");
    let messages = chat.request().json()["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 5);
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_1AbCdEf");
}

#[test]
fn a_chat_transcript_continues_under_the_responses_api() {
    let scratch = Scratch::new("responses-continue");
    let saved = scratch.file(
        "chat.json",
        r#"[{"role":"system","content":"Terse."},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]"#,
    );
    let server = Server::one(sse(&text_answer("5")));
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "-q", "--messages", &saved, "+1?"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\n5\n--- stderr\n");
    let body = server.request().json();
    assert_eq!(body["instructions"], "Terse.");
    assert_eq!(
        body["input"],
        json!([
            {"type":"message","role":"user","content":"2+2?"},
            {"type":"message","role":"assistant","content":"4"},
            {"type":"message","role":"user","content":"+1?"}
        ])
    );
}

#[test]
fn json_events_are_the_chat_schema_and_errors_exit_3_keeping_the_text() {
    let server = Server::one(sse(&data(&[
        json!({"type":"response.output_text.delta","delta":"Hel"}),
        json!({"type":"error","code":"server_error","message":"The server had an error"}),
    ])));
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "--json", "hi"])
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
    assert_eq!(
        out.json_lines(),
        [
            json!({"type":"start","id":null,"model":null,"created":null}),
            json!({"type":"content","choice":0,"delta":"Hel"}),
            json!({"type":"error","message":"the server reported an error (server_error): The server had an error","status":null,"code":"server_error"}),
        ]
    );
}

#[test]
fn a_stream_that_stops_before_response_completed_exits_5() {
    let mut events = data(&[json!({"type":"response.output_text.delta","delta":"Hel"})]);
    events.push(DONE.to_owned());
    let server = Server::one(sse(&events));
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 5\n--- stdout\nHel\n--- stderr\n\
         gptstream: the stream ended before response.completed; the answer is incomplete\n"
    );
}

#[test]
fn an_incomplete_response_warns_like_a_length_cut() {
    let server = Server::one(sse(&data(&[
        json!({"type":"response.output_text.delta","delta":"Once"}),
        json!({"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}}}),
    ])));
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nOnce\n--- stderr\n\
         gptstream: warning: the answer was cut off by the token limit (finish_reason=length); raise --max-tokens\n\
         finish_reason=length usage=none ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn no_stream_shows_a_response_object_the_same_way() {
    let body = json!({"id":"resp_1","object":"response","created_at":7,"model":"m","status":"completed",
        "output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"Hello!"}]}],
        "usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}});
    let server = Server::one(server::full(200, "application/json", &body.to_string()));
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "--no-stream", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello!\n--- stderr\n\
         finish_reason=stop input_tokens=3 output_tokens=2 total_tokens=5 ttft_ms=* duration_ms=*\n"
    );
    assert_eq!(server.request().json()["stream"], false);
}

#[test]
fn replay_tells_the_dialect_by_itself() {
    let path = format!("{}/examples/responses.sse", env!("CARGO_MANIFEST_DIR"));
    let out = gptstream().args(["--replay", &path, "-q"]).run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello, world! Café — ok.\n--- stderr\n"
    );
    let path = format!("{}/examples/hello.sse", env!("CARGO_MANIFEST_DIR"));
    let out = gptstream().args(["--replay", &path, "-q"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
}

#[test]
fn record_writes_each_body_as_received_even_when_cut() {
    let scratch = Scratch::new("record");
    for api in ["chat", "responses"] {
        let recorded = scratch.path(&format!("{api}.sse"));
        let events = if api == "chat" {
            server::hello_chunks()
        } else {
            chunks_of(&example("responses.sse"))
        };
        let server = Server::one(sse(&events));
        let live = gptstream()
            .server(&server)
            .args(["--api", api, "--record", &recorded, "-q", "hi"])
            .run();
        assert_eq!(live.code, 0, "{}", live.render());
        assert_eq!(
            std::fs::read_to_string(&recorded).unwrap(),
            events.concat(),
            "{api}"
        );
        let replayed = gptstream().args(["--replay", &recorded, "-q"]).run();
        assert_eq!(replayed.stdout, live.stdout, "{api}");
    }
    // A stream cut short is recorded up to the cut.
    let recorded = scratch.path("cut.sse");
    let server = Server::one(vec![
        server::chunked_head(200, "text/event-stream"),
        Step::Chunk(content("Hel").into_bytes()),
        Step::Close,
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--record", &recorded, "hi"])
        .run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(std::fs::read_to_string(&recorded).unwrap(), content("Hel"));
}

#[test]
fn chat_completions_refusing_a_responses_only_model_hints_at_the_flag() {
    let server = Server::one(server::full(
        400,
        "application/json",
        r#"{"error":{"message":"This model is only supported in v1/responses and not in v1/chat/completions.","type":"invalid_request_error","param":"model","code":null}}"#,
    ));
    let out = gptstream()
        .server(&server)
        .args(["-m", "o3-pro", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\n\n--- stderr\n\
         gptstream: HTTP 400 Bad Request (invalid_request_error): This model is only supported in \
         v1/responses and not in v1/chat/completions. (try --api responses)\n"
    );
}

#[test]
fn a_piped_chat_sends_each_answer_back_as_its_output_items() {
    let server = Server::start(vec![sse(&text_answer("One.")), sse(&text_answer("Two."))]);
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "--chat", "-q"])
        .stdin("first\nsecond\n")
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nOne.\nTwo.\n\n--- stderr\n"
    );
    server.request();
    assert_eq!(
        server.request().json()["input"],
        json!([
            {"type":"message","role":"user","content":"first"},
            // As received, but for its id: requests are not stored.
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"One."}]},
            {"type":"message","role":"user","content":"second"}
        ])
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn dry_run_shows_the_responses_request() {
    let out = gptstream()
        .args(["--api", "responses", "--dry-run", "-s", "Terse.", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        out.stderr,
        "POST https://api.openai.com/v1/responses\nContent-Type: application/json\n"
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["input"],
        json!([{"type":"message","role":"user","content":"hi"}])
    );
    assert_eq!(body["instructions"], "Terse.");
}

#[test]
fn a_turn_whose_output_is_not_echoed_goes_back_converted() {
    // LiteLLM-like: deltas, then response.completed with no output and no output_item.done.
    let bare = |text: &str| {
        data(&[
            json!({"type":"response.output_text.delta","delta":text}),
            json!({"type":"response.completed","response":{"status":"completed"}}),
        ])
    };
    let server = Server::start(vec![sse(&bare("One.")), sse(&bare("Two."))]);
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "--chat", "-q"])
        .stdin("first\nsecond\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    server.request();
    assert_eq!(
        server.request().json()["input"],
        json!([
            {"type":"message","role":"user","content":"first"},
            {"type":"message","role":"assistant","content":"One."},
            {"type":"message","role":"user","content":"second"}
        ])
    );
}

#[test]
fn extra_instructions_win_over_the_system_message() {
    let out = gptstream()
        .args(["--api", "responses", "--dry-run", "-s", "A"])
        .args(["--extra", r#"{"instructions":"B"}"#, "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["instructions"], "B");
}

#[test]
fn a_no_stream_recording_replays() {
    let scratch = Scratch::new("record-json");
    let recorded = scratch.path("answer.json");
    let body = json!({"id":"resp_1","object":"response","created_at":7,"model":"m","status":"completed",
        "output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"Hello!"}]}]});
    let server = Server::one(server::full(200, "application/json", &body.to_string()));
    let live = gptstream()
        .server(&server)
        .args([
            "--api",
            "responses",
            "--no-stream",
            "--record",
            &recorded,
            "-q",
            "hi",
        ])
        .run();
    assert_eq!(live.render(), "status: 0\n--- stdout\nHello!\n--- stderr\n");
    assert_eq!(
        std::fs::read_to_string(&recorded).unwrap(),
        body.to_string()
    );
    let replayed = gptstream().args(["--replay", &recorded, "-q"]).run();
    assert_eq!(replayed.render(), live.render());
}

#[test]
fn a_404_on_responses_names_the_url_and_suggests_the_chat_api() {
    let not_found = || server::full(404, "text/plain", "404 page not found");
    let server = Server::start(vec![not_found(), not_found()]);
    let line = format!(
        "HTTP 404 Not Found: 404 page not found (POST {}/responses; \
         this server may not serve the Responses API; try --api chat)",
        server.base_url()
    );
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "hi"])
        .run();
    assert_eq!(
        out.render(),
        format!("status: 3\n--- stdout\n\n--- stderr\ngptstream: {line}\n")
    );
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "--json", "hi"])
        .run();
    let event = json!({"type": "error", "message": line, "status": 404, "code": null});
    assert_eq!(
        out.render(),
        format!("status: 3\n--- stdout\n{event}\n\n--- stderr\ngptstream: {line}\n")
    );
}
