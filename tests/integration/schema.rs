//! `--schema`: the schema sent the way each API wants it, and the answer checked when the stream
//! ends: exit 7 with the first mismatch, the text kept on stdout, a `schema` event in `--json`.

use serde_json::{Value, json};

use crate::server::{DONE, Server, content, delta, finish, sse};
use crate::util::{Scratch, gptstream};

/// An answer streamed in pieces, split inside the JSON.
fn answer(text: &str) -> Vec<String> {
    let (a, b) = text.split_at(text.len() / 2);
    vec![content(a), content(b), finish("stop"), DONE.to_owned()]
}

#[test]
fn the_schema_goes_out_as_response_format_or_text_format() {
    let out = gptstream()
        .args(["--dry-run", "--schema", "name, age int", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema = json!({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
                        "required":["name","age"],"additionalProperties":false});
    assert_eq!(
        body["response_format"],
        json!({"type":"json_schema","json_schema":{"name":"answer","schema":schema,"strict":true}})
    );
    let out = gptstream()
        .args([
            "--dry-run",
            "--api",
            "responses",
            "--schema",
            "name, age int",
        ])
        .args(["--schema-name", "person", "hi"])
        .run();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["text"],
        json!({"format":{"type":"json_schema","name":"person","schema":schema,"strict":true}})
    );
    let out = gptstream()
        .args(["--dry-run", "--schema", "name"])
        .args([
            "--extra",
            r#"{"response_format":{"type":"json_object"}}"#,
            "hi",
        ])
        .run();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["response_format"],
        json!({"type":"json_object"}),
        "--extra wins"
    );
}

#[test]
fn the_fields_keep_their_order_byte_for_byte() {
    // Models write the keys in the schema's order: `reasoning` before `answer` is the point.
    let out = gptstream()
        .args(["--dry-run", "--schema", "zeta, reasoning, answer int", "hi"])
        .run();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["response_format"]["json_schema"]["schema"].to_string(),
        r#"{"type":"object","properties":{"zeta":{"type":"string"},"reasoning":{"type":"string"},"answer":{"type":"integer"}},"required":["zeta","reasoning","answer"],"additionalProperties":false}"#
    );
}

#[test]
fn a_matching_answer_streams_and_exits_0_with_a_schema_event() {
    let server = Server::one(sse(&answer(r#"{"name":"Ada","age":36}"#)));
    let out = gptstream()
        .server(&server)
        .args(["--schema", "name, age int", "--json", "who?"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["start", "content", "content", "finish", "schema", "end"]
    );
    assert_eq!(
        events[4],
        json!({"type":"schema","valid":true,"error":null})
    );
}

#[test]
fn a_mismatch_is_exit_7_naming_the_place_and_the_text_stays() {
    let server = Server::one(sse(&answer(r#"{"name":"Ada","age":"36"}"#)));
    let out = gptstream()
        .server(&server)
        .args(["--schema", "name, age int", "-q", "who?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 7\n--- stdout\n{\"name\":\"Ada\",\"age\":\"36\"}\n--- stderr\n\
         gptstream: the answer does not match --schema: /age: expected integer, got string\n"
    );
    let server = Server::one(sse(&answer(r#"{"name":"Ada"}"#)));
    let out = gptstream()
        .server(&server)
        .args(["--schema", "name, age int", "--json", "who?"])
        .run();
    assert_eq!(out.code, 7, "{}", out.render());
    let events = out.json_lines();
    let n = events.len();
    assert_eq!(
        events[n - 2],
        json!({"type":"schema","valid":false,"error":"/: missing required property \"age\""})
    );
    assert_eq!(events[n - 1]["type"], "error");
}

#[test]
fn prose_and_refusals_are_exit_7_too() {
    let server = Server::one(sse(&answer("Sure! Ada is 36.")));
    let out = gptstream()
        .server(&server)
        .args(["--schema", "name", "-q", "who?"])
        .run();
    assert_eq!(out.code, 7, "{}", out.render());
    assert!(
        out.stderr.starts_with(
            "gptstream: the answer does not match --schema: the answer is not valid JSON (line 1, column 1)"
        ),
        "{}",
        out.stderr
    );
    let refusal = vec![
        delta(json!({"refusal":"I can't help with that."}), None),
        finish("stop"),
        DONE.to_owned(),
    ];
    let server = Server::one(sse(&refusal));
    let out = gptstream()
        .server(&server)
        .args(["--schema", "name", "-q", "who?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 7\n--- stdout\n\n--- stderr\ngptstream: the model refused: I can't help with that.\n\
         gptstream: the answer does not match --schema: the model refused\n"
    );
}

#[test]
fn bad_schemas_are_exit_2_before_any_request() {
    let scratch = Scratch::new("schema-bad");
    let broken = scratch.file("schema.json", "{\"type\":\n  oops}");
    for (spec, message) in [
        (
            "name, age integr",
            "gptstream: --schema: unknown type \"integr\" for field \"age\" at character 11 (types: str, int, float, bool, [TYPE])\n",
        ),
        (broken.as_str(), "is not valid JSON (line 2, column 3)"),
    ] {
        let out = gptstream()
            .args([
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--schema",
                spec,
                "hi",
            ])
            .run();
        assert_eq!(out.code, 2, "{}", out.render());
        assert!(out.stderr.contains(message.trim_end()), "{}", out.stderr);
    }
}

#[test]
fn a_schema_file_and_the_responses_api() {
    let scratch = Scratch::new("schema-file");
    let file = scratch.file(
        "schema.json",
        r#"{"type":"object","properties":{"color":{"enum":["red","green"]}},"required":["color"],"additionalProperties":false}"#,
    );
    let events = |text: &str| {
        vec![
            format!(
                "data: {}\n\n",
                json!({"type":"response.output_text.delta","delta":text})
            ),
            format!(
                "data: {}\n\n",
                json!({"type":"response.completed","response":{"status":"completed"}})
            ),
        ]
    };
    let server = Server::one(sse(&events(r#"{"color":"blue"}"#)));
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "--schema", &file, "-q", "pick"])
        .run();
    assert_eq!(
        out.render(),
        "status: 7\n--- stdout\n{\"color\":\"blue\"}\n--- stderr\n\
         gptstream: the answer does not match --schema: /color: expected one of \"red\", \"green\", got \"blue\"\n"
    );
    assert_eq!(server.request().json()["text"]["format"]["name"], "answer");
}

#[test]
fn several_choices_need_the_one_to_check() {
    let out = gptstream()
        .args([
            "--base-url",
            "http://127.0.0.1:9/v1",
            "-n",
            "2",
            "--schema",
            "name",
            "hi",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: --schema with -n 2 needs --choice K: one answer is checked\n"
    );
}

#[test]
fn with_a_tool_loop_only_the_answer_reaches_stdout() {
    // The model says something, calls a tool that --tool-exec runs, then answers in JSON: stdout
    // must be the JSON alone (for `| jq`), the words before the tool call go to stderr.
    let scratch = Scratch::new("schema-tools");
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"lookup","parameters":{"type":"object","properties":{}}}"#,
    );
    let call = json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{}"}}]});
    let server = Server::start(vec![
        sse(&[
            content("Let me "),
            content("look."),
            delta(call, Some("tool_calls")),
            DONE.to_owned(),
        ]),
        sse(&answer(r#"{"name":"Ada"}"#)),
    ]);
    let out = gptstream()
        .server(&server)
        .args([
            "--schema",
            "name",
            "--tools",
            &tools,
            "--tool-exec",
            "lookup=echo found",
        ])
        .arg("who?")
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n{\"name\":\"Ada\"}\n--- stderr\nLet me look.\n\
         gptstream: ran tool lookup (call_1): exit 0, 6 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    // A tool the user answers (no --tool-exec for it) ends the run: the text and the call are
    // the output, in that order, as without --schema.
    let server = Server::one(sse(&[
        content("Need data."),
        delta(
            json!({"tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"other","arguments":"{}"}}]}),
            Some("tool_calls"),
        ),
        DONE.to_owned(),
    ]));
    let out = gptstream()
        .server(&server)
        .args([
            "-q",
            "--schema",
            "name",
            "--tools",
            &tools,
            "--tool-exec",
            "lookup=echo found",
        ])
        .arg("who?")
        .run();
    assert_eq!(
        out.stdout(),
        "Need data.\n{\"id\":\"call_9\",\"name\":\"other\",\"arguments\":{}}\n"
    );
}

#[test]
fn a_recorded_answer_is_checked_offline_with_replay() {
    let scratch = Scratch::new("schema-replay");
    let recorded = scratch.file("answer.sse", &answer(r#"{"name":"Ada"}"#).concat());
    let out = gptstream()
        .args(["-q", "--replay", &recorded, "--schema", "name"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n{\"name\":\"Ada\"}\n--- stderr\n"
    );
    let out = gptstream()
        .args(["-q", "--replay", &recorded, "--schema", "name, age int"])
        .run();
    assert_eq!(
        out.render(),
        "status: 7\n--- stdout\n{\"name\":\"Ada\"}\n--- stderr\n\
         gptstream: the answer does not match --schema: /: missing required property \"age\"\n"
    );
    let out = gptstream()
        .args(["--replay", &recorded, "-a", &recorded])
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: -a cannot be used with --replay: nothing is sent\n"
    );
}

/// A run whose answer does not match `name, age int`: the summary line, then the mismatch.
const MISMATCH: &str = "status: 7\n--- stdout\n{\"name\":\"Ada\",\"age\":\"36\"}\n--- stderr\n\
         finish_reason=stop usage=none ttft_ms=* duration_ms=*\n\
         gptstream: the answer does not match --schema: /age: expected integer, got string\n";

#[test]
fn compat6_a_mismatch_still_gives_the_summary_line_of_the_completed_stream() {
    let server = Server::one(sse(&answer(r#"{"name":"Ada","age":"36"}"#)));
    let out = gptstream()
        .server(&server)
        .args(["--schema", "name, age int", "who?"])
        .run();
    assert_eq!(out.render(), MISMATCH);
    // The same from a replay of the answer, and in a piped chat that the mismatch ends.
    let scratch = crate::util::Scratch::new("schema-summary");
    let recorded = scratch.file(
        "answer.sse",
        &answer(r#"{"name":"Ada","age":"36"}"#).concat(),
    );
    let out = gptstream()
        .args(["--schema", "name, age int", "--replay", &recorded])
        .run();
    assert_eq!(out.render(), MISMATCH);
    let server = Server::one(sse(&answer(r#"{"name":"Ada","age":"36"}"#)));
    let out = gptstream()
        .server(&server)
        .args(["--chat", "--schema", "name, age int"])
        .stdin("who?\n")
        .run();
    assert_eq!(
        out.render(),
        "status: 7\n--- stdout\n{\"name\":\"Ada\",\"age\":\"36\"}\n\n--- stderr\n\
         finish_reason=stop usage=none ttft_ms=* duration_ms=*\n\
         gptstream: the answer does not match --schema: /age: expected integer, got string\n"
    );
}

/// The review of #21: parsing --schema once moved its errors before the template's own; the
/// template's come first, as they did.
#[test]
fn the_templates_usage_errors_come_before_the_schemas() {
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--api", "responses", "-n", "2", "--schema", "name", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\n\
         gptstream: -n 2 needs --api chat: the Responses API has no choices\n"
    );
}
