//! Tool calls: definitions sent, fragments assembled whatever the server's dialect, calls run
//! for the user by real child processes, and the follow-up requests they lead to.

use serde_json::{Value, json};

use crate::server::{self, DONE, Server, content, delta, finish, sse};
use crate::util::{Scratch, gptstream};

const WEATHER: &str = r#"{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}"#;

fn call_fragment(index: u64, id: &str, name: &str, arguments: &str) -> Value {
    json!({"tool_calls":[{"index":index,"id":id,"type":"function","function":{"name":name,"arguments":arguments}}]})
}

fn args_fragment(index: u64, arguments: &str) -> Value {
    json!({"tool_calls":[{"index":index,"function":{"arguments":arguments}}]})
}

/// A turn that calls get_weather for Paris, in fragments.
fn weather_call_turn() -> Vec<String> {
    vec![
        delta(call_fragment(0, "call_1", "get_weather", ""), None),
        delta(args_fragment(0, "{\"city\""), None),
        delta(args_fragment(0, ":\"Paris\"}"), None),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
}

/// Two connections: the weather call, then a final answer.
fn call_then_answer(answer: &str) -> Server {
    Server::start(vec![
        sse(&weather_call_turn()),
        sse(&[content(answer), finish("stop"), DONE.to_owned()]),
    ])
}

fn tool_calls_of(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|e| e["type"] == "tool_call")
        .cloned()
        .collect()
}

#[test]
fn the_tool_loop_runs_the_command_and_sends_the_result_back() {
    let scratch = Scratch::new("loop");
    let tools = scratch.file("tools.json", WEATHER);
    let server = call_then_answer("Sunny in Paris.");
    // A real child process: it reads the arguments on stdin and sees its name and call id.
    let command = r#"get_weather=printf '%s|%s|' "$GPTSTREAM_TOOL_NAME" "$GPTSTREAM_TOOL_CALL_ID"; cat; printf ' -> 18C'"#;
    let out = gptstream()
        .server(&server)
        .args([
            "--tools",
            &tools,
            "--tool-exec",
            command,
            "Weather in Paris?",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nSunny in Paris.\n--- stderr\n\
         gptstream: ran tool get_weather (call_1): exit 0, 42 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    let first = server.request().json();
    assert_eq!(
        first["tools"],
        json!([{"type":"function","function":serde_json::from_str::<Value>(WEATHER).unwrap()}])
    );
    let second = server.request().json();
    assert_eq!(
        second["messages"],
        json!([
            {"role":"user","content":"Weather in Paris?"},
            {"role":"assistant","tool_calls":[
                {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"get_weather|call_1|{\"city\":\"Paris\"} -> 18C"}
        ])
    );
    assert_eq!(
        second["tools"], first["tools"],
        "tools are sent on every round"
    );
}

#[test]
fn the_text_of_each_turn_starts_on_its_own_line() {
    let scratch = Scratch::new("two-texts");
    let tools = scratch.file("tools.json", WEATHER);
    let mut first = vec![content("Checking.")];
    first.extend(weather_call_turn());
    let server = Server::start(vec![
        sse(&first),
        sse(&[content("Sunny."), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&server)
        .args([
            "-q",
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo 18C",
            "hi",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nChecking.\nSunny.\n--- stderr\n"
    );
}

#[test]
fn json_mode_shows_the_whole_loop() {
    let scratch = Scratch::new("loop-json");
    let tools = scratch.file("tools.json", WEATHER);
    let server = call_then_answer("Done.");
    let out = gptstream()
        .server(&server)
        .args([
            "--json",
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo 18C",
            "hi",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let lines = out.json_lines();
    let types: Vec<&str> = lines.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "start",
            "tool_call_delta",
            "tool_call_delta",
            "tool_call_delta",
            "tool_call",
            "finish",
            "tool_result",
            "start",
            "content",
            "finish",
            "end"
        ]
    );
    let result = lines.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert_eq!(
        result,
        &json!({"type":"tool_result","choice":0,"index":0,"id":"call_1","name":"get_weather",
                "exit_code":0,"timed_out":false,"output_bytes":4,"truncated":false,"output":"18C\n"})
    );
    assert_eq!(lines.last().unwrap()["requests"], 2);
}

#[test]
fn parallel_calls_are_all_run_and_answered_in_order() {
    let scratch = Scratch::new("parallel");
    let tools = scratch.file("tools.json", WEATHER);
    let server = Server::start(vec![
        sse(&[
            delta(
                call_fragment(0, "call_a", "get_weather", "{\"city\":"),
                None,
            ),
            delta(
                call_fragment(1, "call_b", "get_weather", "{\"city\":"),
                None,
            ),
            delta(args_fragment(1, "\"Rome\"}"), None),
            delta(args_fragment(0, "\"Oslo\"}"), None),
            finish("tool_calls"),
            DONE.to_owned(),
        ]),
        sse(&[content("ok"), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&server)
        .args([
            "-q",
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=cat",
            "both",
        ])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
    let _first = server.request();
    let messages = server.request().json()["messages"].clone();
    assert_eq!(
        messages[2],
        json!({"role":"tool","tool_call_id":"call_a","content":"{\"city\":\"Oslo\"}"})
    );
    assert_eq!(
        messages[3],
        json!({"role":"tool","tool_call_id":"call_b","content":"{\"city\":\"Rome\"}"})
    );
}

#[test]
fn a_failing_tool_is_reported_to_the_model_as_an_error() {
    let scratch = Scratch::new("failing");
    let tools = scratch.file("tools.json", WEATHER);
    let server = call_then_answer("Sorry.");
    let out = gptstream()
        .server(&server)
        .args([
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo no network >&2; exit 7",
            "hi",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr
            .starts_with("gptstream: ran tool get_weather (call_1): exit 7, 0 bytes\n"),
        "{}",
        out.stderr
    );
    let _first = server.request();
    let tool_message = server.request().json()["messages"][2].clone();
    assert_eq!(
        tool_message["content"],
        "error: the tool exited with status 7\nno network\n"
    );
}

#[test]
fn the_loop_stops_at_max_tool_rounds_with_exit_6() {
    let scratch = Scratch::new("rounds");
    let tools = scratch.file("tools.json", WEATHER);
    let server = Server::start(vec![sse(&weather_call_turn()), sse(&weather_call_turn())]);
    let out = gptstream()
        .server(&server)
        .args([
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo 1",
            "--max-tool-rounds",
            "1",
            "hi",
        ])
        .run();
    // What the model still wanted is on stdout, as a call nobody runs would be.
    assert_eq!(
        out.render(),
        "status: 6\n--- stdout\n{\"id\":\"call_1\",\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n\n\
         --- stderr\ngptstream: ran tool get_weather (call_1): exit 0, 2 bytes\n\
         gptstream: the model still calls tools (get_weather) after 1 round (--max-tool-rounds 1)\n"
    );
}

#[test]
fn calls_without_an_executor_are_printed_and_end_the_run() {
    let scratch = Scratch::new("no-exec");
    let tools = scratch.file("tools.json", WEATHER);
    let server = Server::one(sse(&weather_call_turn()));
    let out = gptstream()
        .server(&server)
        .args(["--tools", &tools, "weather?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n{\"id\":\"call_1\",\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n\n\
         --- stderr\nfinish_reason=tool_calls tool_calls=1 usage=none ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn a_script_can_answer_calls_itself_with_tool_result_and_a_saved_transcript() {
    let scratch = Scratch::new("transcript");
    let tools = scratch.file("tools.json", WEATHER);
    let chat = scratch.path("chat.json");
    let first = Server::one(sse(&weather_call_turn()));
    let out = gptstream()
        .server(&first)
        .args([
            "-q",
            "--tools",
            &tools,
            "--save",
            &chat,
            "Weather in Paris?",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());

    let result = scratch.file("result.txt", "18C and sunny");
    let second = Server::one(sse(&[
        content("It is 18C."),
        finish("stop"),
        DONE.to_owned(),
    ]));
    let out = gptstream()
        .server(&second)
        .args([
            "-q",
            "--tools",
            &tools,
            "--messages",
            &chat,
            "--save",
            &chat,
        ])
        .args(["--tool-result", &format!("call_1=@{result}")])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nIt is 18C.\n--- stderr\n"
    );
    let sent = second.request().json()["messages"].clone();
    assert_eq!(
        sent[2],
        json!({"role":"tool","tool_call_id":"call_1","content":"18C and sunny"})
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&chat).unwrap()).unwrap();
    assert_eq!(saved.as_array().unwrap().len(), 4);
    assert_eq!(saved[3], json!({"role":"assistant","content":"It is 18C."}));

    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--messages", &chat, "--tool-result", "call_zzz=x"])
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .contains("--tool-result call_zzz: the last assistant message"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_tool_definitions_fail_before_any_request() {
    let scratch = Scratch::new("bad-defs");
    let broken = scratch.file("broken.json", "{\"name\": ");
    let nameless = scratch.file("nameless.json", "[{\"description\":\"x\"}]");
    let tools = scratch.file("tools.json", WEATHER);
    // Port 9 (discard) on loopback: nothing is sent because nothing gets that far.
    let unreachable = "http://127.0.0.1:9/v1";
    let cases = [
        (
            vec!["--tools", broken.as_str(), "hi"],
            format!("gptstream: --tools {broken}: invalid JSON: "),
        ),
        (
            vec!["--tools", nameless.as_str(), "hi"],
            format!("gptstream: --tools {nameless}: tool 1: neither"),
        ),
        (
            vec!["--tools", tools.as_str(), "--tool-exec", "nope=true", "hi"],
            "gptstream: --tool-exec nope: no tool of that name".into(),
        ),
        (
            vec![
                "--tools",
                tools.as_str(),
                "--tool-exec",
                "get_weather",
                "hi",
            ],
            "gptstream: bad --tool-exec".into(),
        ),
    ];
    for (args, expected) in cases {
        let out = gptstream()
            .env("OPENAI_BASE_URL", unreachable)
            .args(&args)
            .run();
        assert_eq!(out.code, 2, "{args:?}: {}", out.render());
        assert!(
            out.stderr.starts_with(&expected),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn tools_can_come_from_stdin_when_the_prompt_is_an_argument() {
    let server = Server::one(sse(&[content("x"), finish("stop"), DONE.to_owned()]));
    let out = gptstream()
        .server(&server)
        .args(["-q", "--tools", "-", "hi"])
        .stdin(WEATHER)
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let body = server.request().json();
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(body["messages"], json!([{"role":"user","content":"hi"}]));
}

/// Each dialect servers use to stream tool calls, sent one byte per HTTP chunk for the
/// fragmented and parallel shapes; all must give the same complete calls.
#[test]
fn every_accumulation_shape_over_the_wire() {
    let paris = json!({"type":"tool_call","choice":0,"index":0,"id":"call_1","name":"get_weather","arguments":{"city":"Paris"}});
    let shapes: Vec<(&str, Vec<String>, Vec<Value>, bool)> = vec![
        ("fragmented", weather_call_turn(), vec![paris.clone()], true),
        (
            "parallel",
            vec![
                delta(call_fragment(0, "call_1", "get_weather", "{\"ci"), None),
                delta(call_fragment(1, "call_2", "get_time", ""), None),
                delta(args_fragment(0, "ty\":\"Paris\"}"), None),
                delta(args_fragment(1, "{}"), None),
                finish("tool_calls"),
                DONE.to_owned(),
            ],
            vec![
                paris.clone(),
                json!({"type":"tool_call","choice":0,"index":1,"id":"call_2","name":"get_time","arguments":{}}),
            ],
            true,
        ),
        (
            "missing index",
            vec![
                delta(
                    json!({"tool_calls":[{"id":"call_1","function":{"name":"get_weather","arguments":"{\"city\""}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls":[{"function":{"arguments":":\"Paris\"}"}}]}),
                    None,
                ),
                finish("tool_calls"),
                DONE.to_owned(),
            ],
            vec![paris.clone()],
            false,
        ),
        (
            "index from 1, name repeated, empty continuation id",
            vec![
                delta(call_fragment(1, "call_1", "get_weather", "{\"city\""), None),
                delta(call_fragment(1, "", "get_weather", ":\"Paris\"}"), None),
                finish("tool_calls"),
                DONE.to_owned(),
            ],
            vec![paris.clone()],
            false,
        ),
        (
            "whole call in one chunk, finish stop, interleaved text",
            vec![
                content("Let me look. "),
                delta(
                    call_fragment(0, "call_1", "get_weather", "{\"city\":\"Paris\"}"),
                    None,
                ),
                content("One moment."),
                finish("stop"),
                DONE.to_owned(),
            ],
            vec![paris.clone()],
            false,
        ),
        (
            "invalid arguments are kept raw",
            vec![
                delta(
                    call_fragment(0, "call_1", "get_weather", "{\"city\":Paris"),
                    None,
                ),
                finish("tool_calls"),
                DONE.to_owned(),
            ],
            vec![
                json!({"type":"tool_call","choice":0,"index":0,"id":"call_1","name":"get_weather","arguments":null,"arguments_raw":"{\"city\":Paris"}),
            ],
            false,
        ),
    ];
    for (name, chunks, expected, bytewise) in shapes {
        let body = chunks.concat();
        let server = if bytewise {
            let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
            Server::one(sse(&bytes))
        } else {
            Server::one(sse(&chunks))
        };
        let out = gptstream().server(&server).args(["--json", "hi"]).run();
        assert_eq!(out.code, 0, "{name}: {}", out.render());
        assert_eq!(tool_calls_of(&out.json_lines()), expected, "{name}");
    }
}

#[test]
fn a_three_round_tool_loop_reuses_one_connection() {
    let scratch = Scratch::new("reuse");
    let tools = scratch.file("tools.json", WEATHER);
    let server = Server::start(vec![
        sse(&weather_call_turn()),
        sse(&weather_call_turn()),
        sse(&weather_call_turn()),
        sse(&[content("Sunny."), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&server)
        .args([
            "-q",
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo 18C",
            "hi",
        ])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nSunny.\n--- stderr\n");
    for _ in 0..4 {
        server.request();
    }
    assert_eq!(server.connections(), 1, "one kept-alive connection");
}

#[test]
fn defect10_tool_names_and_ids_from_the_server_reach_stderr_scrubbed() {
    let scratch = Scratch::new("tool-scrub");
    let tools = scratch.file("tools.json", WEATHER);
    let hostile_id = "call_\u{1b}[31mred\nforged line\u{7}";
    let server = Server::start(vec![sse(&[
        // A call the user's tool runs, with a hostile id...
        delta(call_fragment(0, hostile_id, "get_weather", "{}"), None),
        // ...and one to a tool nobody runs, with a hostile name and arguments that do not parse.
        delta(
            call_fragment(1, "call_2", "evil\u{1b}]0;pwned\u{7}", "{oops"),
            None,
        ),
        finish("tool_calls"),
        DONE.to_owned(),
    ])]);
    // The run stops after the first round: the second call is the user's to answer.
    let out = gptstream()
        .server(&server)
        .args([
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo 18C",
            "hi",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{7}'),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .all(|line| !line.starts_with("forged line")),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("gptstream: ran tool get_weather (call_ [31mred forged line): exit 0"),
        "{:?}",
        out.stderr
    );
}

/// A directory holding only `sh`, `sleep` and `cat` (links to the real ones), for a `PATH` like a
/// slim container image's, where there is no `kill` command.
fn slim_path(scratch: &Scratch) -> String {
    let bin = scratch.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").expect("PATH is set");
    for program in ["sh", "sleep", "cat"] {
        let real = std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| panic!("no {program} on PATH"));
        std::os::unix::fs::symlink(real, format!("{bin}/{program}")).unwrap();
    }
    bin
}

#[test]
fn defect7_a_tool_times_out_with_its_whole_group_even_without_a_kill_command() {
    let scratch = Scratch::new("slim-timeout");
    let tools = scratch.file("tools.json", WEATHER);
    let server = call_then_answer("Too slow.");
    // sh waits for the pipeline, and both of its commands hold the output pipe: the timeout must
    // kill the group, and there is no /bin/kill on this PATH to do it with.
    let out = gptstream()
        .server(&server)
        .env("PATH", &slim_path(&scratch))
        .args([
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo hi; sleep 300 | cat",
            "--tool-timeout",
            "1",
            "hi",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let _first = server.request();
    let tool_message = server.request().json()["messages"][2].clone();
    assert_eq!(
        tool_message["content"],
        "error: the tool timed out after 1s and was killed\nhi\n"
    );
}

#[test]
fn defect7_the_tool_timeout_covers_a_background_child_that_keeps_the_output_open() {
    let scratch = Scratch::new("background-timeout");
    let tools = scratch.file("tools.json", WEATHER);
    let server = call_then_answer("Too slow.");
    let out = gptstream()
        .server(&server)
        .args([
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=(sleep 300 &); echo hi",
            "--tool-timeout",
            "1",
            "hi",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nToo slow.\n--- stderr\n\
         gptstream: ran tool get_weather (call_1): timed out, 3 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    let _first = server.request();
    let tool_message = server.request().json()["messages"][2].clone();
    assert_eq!(
        tool_message["content"],
        "error: the tool timed out after 1s and was killed\nhi\n"
    );
}

#[test]
fn compat1_a_strict_server_accepts_the_loop_the_saved_transcript_and_an_old_one_replayed() {
    let scratch = Scratch::new("strict-null");
    let tools = scratch.file("tools.json", WEATHER);
    let chat = scratch.path("chat.json");
    // The live loop: the follow-up's assistant message has no `content` at all.
    let server = Server::strict(
        vec![
            sse(&weather_call_turn()),
            sse(&[content("Sunny."), finish("stop"), DONE.to_owned()]),
        ],
        server::rejects_null_content,
    );
    let out = gptstream()
        .server(&server)
        .args([
            "-q",
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo 18C",
        ])
        .args(["--save", &chat, "Weather in Paris?"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nSunny.\n--- stderr\n");
    server.request();
    let assistant = json!({"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]});
    assert_eq!(server.request().json()["messages"][1], assistant);
    // The transcript keeps the same shape.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&chat).unwrap()).unwrap();
    assert_eq!(saved[1], assistant);

    // A transcript saved by an older version, with `"content": null`, is sent without it, and
    // saved again without it.
    let old = scratch.file(
        "old.jsonl",
        "{\"role\":\"user\",\"content\":\"Weather in Paris?\"}\n\
         {\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}\n\
         {\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"18C\"}\n",
    );
    let server = Server::strict(
        vec![sse(&[content("Warm."), finish("stop"), DONE.to_owned()])],
        server::rejects_null_content,
    );
    let out = gptstream()
        .server(&server)
        .args(["-q", "--tools", &tools, "--messages", &old, "--save", &old])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nWarm.\n--- stderr\n");
    assert_eq!(server.request().json()["messages"][1], assistant);
    let saved = std::fs::read_to_string(&old).unwrap();
    assert!(!saved.contains("null"), "{saved}");
}
