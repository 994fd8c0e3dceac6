//! `--mcp`: tools from an MCP server over stdio, run in the tool loop. The server is a real
//! process, `tests/fixtures/mcp/fake_server.py`, scripted per test (a mode each: good, slow,
//! dead, hostile), and it logs what it received so the tests can see the protocol.

use serde_json::{Value, json};

use crate::server::{self, DONE, Server, content, delta, finish, sse};
use crate::util::{Scratch, gptstream};

pub const FAKE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mcp/fake_server.py"
);

/// `--mcp NAME=python3 fake_server.py MODE LOG`.
fn mcp(name: &str, mode: &str, log: &str) -> String {
    format!("{name}=python3 {FAKE} {mode} {log}")
}

/// What the fake server logged: every message it received, then its pid and environment.
pub fn logged(log: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("the fake server logs JSON"))
        .collect()
}

pub fn methods(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter_map(|m| m["method"].as_str().map(str::to_owned))
        .collect()
}

pub fn call_turn(name: &str, arguments: &str) -> Vec<String> {
    vec![
        delta(
            json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":name,"arguments":arguments}}]}),
            None,
        ),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
}

/// The model calls `name`, then answers.
pub fn call_then_answer(name: &str, arguments: &str, answer: &str) -> Server {
    Server::start(vec![
        sse(&call_turn(name, arguments)),
        sse(&[content(answer), finish("stop"), DONE.to_owned()]),
    ])
}

/// Waits (at most 10 s) until process `pid` is gone or a zombie.
pub fn assert_gone(pid: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if stat.is_empty() || state == Some("Z") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "MCP server {pid} outlived gptstream: {stat}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn pid_of(log: &[Value]) -> u64 {
    log.iter()
        .find_map(|m| m["pid"].as_u64())
        .expect("the server logged its pid")
}

#[test]
fn an_mcp_tool_is_offered_called_and_its_result_sent_back() {
    let scratch = Scratch::new("mcp-loop");
    let log = scratch.path("log");
    let server = call_then_answer("echo", r#"{"text":"hi"}"#, "It said hi.");
    let out = gptstream()
        .server(&server)
        .env("OPENAI_API_KEY", "sk-mcp-must-not-see-this")
        .args(["--mcp", &mcp("fk", "ok", &log), "What does echo say?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nIt said hi.\n--- stderr\n\
         gptstream: ran tool echo (call_1) on fk: ok, 8 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    // Both pages of tools/list, as function tools.
    let first = server.request().json();
    assert_eq!(
        first["tools"],
        json!([
            {"type":"function","function":{"name":"echo","description":"Echoes its text",
             "parameters":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}}},
            {"type":"function","function":{"name":"fail","description":"Always an error result\twith a tab",
             "parameters":{"type":"object","properties":{}}}},
            {"type":"function","function":{"name":"slow","description":"Never answers",
             "parameters":{"type":"object"}}}
        ])
    );
    let second = server.request().json();
    assert_eq!(
        second["messages"][2],
        json!({"role":"tool","tool_call_id":"call_1","content":"echo: hi"})
    );
    let log = logged(&log);
    assert_eq!(
        methods(&log),
        [
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/list",
            "tools/call"
        ]
    );
    // The era probe first (2026-07-28), which this legacy server does not know; then the
    // handshake.
    assert_eq!(
        log[1]["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert_eq!(log[2]["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(log[2]["params"]["clientInfo"]["name"], "gptstream");
    assert!(
        log[3..].iter().all(|m| m["params"].get("_meta").is_none()),
        "no per-request metadata for a legacy server"
    );
    assert_eq!(
        log[0]["env"],
        json!({"OPENAI_API_KEY": false, "MY_PROFILE_KEY": false}),
        "the server must not see the API key"
    );
    assert_eq!(
        log.last().unwrap()["stdin"],
        "closed",
        "told to leave by the end of its stdin"
    );
    assert_gone(pid_of(&log));
}

#[test]
fn json_tool_results_name_the_server_and_an_error_result_goes_on() {
    let scratch = Scratch::new("mcp-json");
    let log = scratch.path("log");
    let server = call_then_answer("fail", "{}", "It failed.");
    let out = gptstream()
        .server(&server)
        .args(["--json", "--mcp", &mcp("fk", "ok", &log), "Try it"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let result = tool_result(&out);
    assert_eq!(
        result,
        json!({"type":"tool_result","choice":0,"index":0,"id":"call_1","name":"fail",
               "exit_code":null,"timed_out":false,"output_bytes":20,"truncated":false,
               "output":"error: no such thing","server":"fk","is_error":true})
    );
    let _ = server.request();
    assert_eq!(
        server.request().json()["messages"][2]["content"],
        "error: no such thing"
    );
}

#[test]
fn the_loops_limits_hold_for_mcp_calls_and_a_cut_result_says_so() {
    let scratch = Scratch::new("mcp-limits");
    let log = scratch.path("log");
    // --max-tool-output: the model learns that it got part of the result, as from --tool-exec.
    let model = call_then_answer("echo", r#"{"text":"hello world"}"#, "Cut.");
    let out = gptstream()
        .server(&model)
        .args([
            "-q",
            "--max-tool-output",
            "9",
            "--mcp",
            &mcp("fk", "ok", &log),
            "go",
        ])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nCut.\n--- stderr\n");
    let _ = model.request();
    assert_eq!(
        model.request().json()["messages"][2]["content"],
        "echo: hel\n[output truncated by gptstream: 17 bytes, first 9 kept]"
    );
    // --max-tool-rounds: exit 6 with the call the model still made on stdout.
    let model = Server::start(vec![
        sse(&call_turn("echo", r#"{"text":"one"}"#)),
        sse(&call_turn("echo", r#"{"text":"two"}"#)),
    ]);
    let out = gptstream()
        .server(&model)
        .args([
            "--max-tool-rounds",
            "1",
            "--mcp",
            &mcp("fk", "ok", &log),
            "go",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 6\n--- stdout\n{\"id\":\"call_1\",\"name\":\"echo\",\"arguments\":{\"text\":\"two\"}}\n\n\
         --- stderr\ngptstream: ran tool echo (call_1) on fk: ok, 9 bytes\n\
         gptstream: the model still calls tools (echo) after 1 round (--max-tool-rounds 1)\n"
    );
}

#[test]
fn list_tools_prints_each_tool_and_asks_no_model() {
    let scratch = Scratch::new("mcp-list");
    let log = scratch.path("log");
    // Nothing listens there: a model request would be exit 4.
    let base = format!("http://127.0.0.1:{}/v1", server::unused_port());
    let out = gptstream()
        .env("OPENAI_BASE_URL", &base)
        .args(["--list-tools", "--mcp", &mcp("fk", "ok", &log)])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n\
         echo\tfk\tEchoes its text\n\
         fail\tfk\tAlways an error result with a tab\n\
         slow\tfk\tNever answers\n\n--- stderr\n"
    );
    let out = gptstream()
        .env("OPENAI_BASE_URL", &base)
        .args(["--list-tools", "--json", "--mcp", &mcp("fk", "ok", &log)])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        out.json_lines()[0],
        json!({"name":"echo","server":"fk","description":"Echoes its text",
               "parameters":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}})
    );
    assert_eq!(out.json_lines().len(), 3);
}

#[test]
fn the_server_name_defaults_to_its_own() {
    let scratch = Scratch::new("mcp-name");
    let log = scratch.path("log");
    let spec = format!("python3 {FAKE} ok {log}");
    let out = gptstream()
        .args(["--list-tools", "--mcp", &spec])
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(out.stdout().starts_with("echo\tfake\t"), "{}", out.render());
}

/// A server that cannot start, exits, hangs, talks nonsense or speaks another protocol:
/// exit 8 with one line naming it, and no model request.
#[test]
fn a_server_that_fails_to_start_is_exit_8_before_any_request() {
    let scratch = Scratch::new("mcp-start");
    let base = format!("http://127.0.0.1:{}/v1", server::unused_port());
    let cases = [
        (
            "exit-at-start",
            "gptstream: MCP server fk exited with status 3: fake: cannot open the database\n",
        ),
        (
            "hang-at-start",
            "gptstream: MCP server fk did not answer initialize within 0.5s (--mcp-timeout)\n",
        ),
        (
            "garbage-at-start",
            "gptstream: MCP server fk wrote what is not JSON-RPC on stdout (not JSON: \"Starting server on stdio...\")\n",
        ),
        (
            "old-protocol",
            "gptstream: MCP server fk speaks protocol version \"2023-01-01\"; gptstream speaks 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05\n",
        ),
    ];
    for (mode, error) in cases {
        let log = scratch.path(mode);
        let out = gptstream()
            .env("OPENAI_BASE_URL", &base)
            .args([
                "--mcp-timeout",
                "0.5",
                "--mcp",
                &mcp("fk", mode, &log),
                "hi",
            ])
            .run();
        assert_eq!(
            out.render(),
            format!("status: 8\n--- stdout\n\n--- stderr\n{error}"),
            "{mode}"
        );
        assert_gone(pid_of(&logged(&log)));
    }
    let out = gptstream()
        .env("OPENAI_BASE_URL", &base)
        .args(["--mcp", "fk=/no/such/mcp-server", "hi"])
        .run();
    assert_eq!(out.code, 8, "{}", out.render());
    assert!(
        out.stderr
            .starts_with("gptstream: MCP server fk exited with status 127"),
        "{}",
        out.stderr
    );
}

#[test]
fn two_servers_with_one_tool_name_is_exit_2_naming_both() {
    let scratch = Scratch::new("mcp-twice");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args([
            "--mcp",
            &mcp("a", "ok", &scratch.path("a")),
            "--mcp",
            &mcp("b", "ok", &scratch.path("b")),
            "hi",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\n\
         gptstream: MCP servers a and b both offer a tool named echo\n"
    );
    for log in ["a", "b"] {
        assert_gone(pid_of(&logged(&scratch.path(log))));
    }
}

#[test]
fn a_call_that_hangs_is_cancelled_at_the_tool_timeout_and_the_loop_goes_on() {
    let scratch = Scratch::new("mcp-slow");
    let log = scratch.path("log");
    let server = call_then_answer("slow", "{}", "Gave up.");
    let out = gptstream()
        .server(&server)
        .args([
            "--tool-timeout",
            "0.5",
            "--mcp",
            &mcp("fk", "ok", &log),
            "go",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nGave up.\n--- stderr\n\
         gptstream: ran tool slow (call_1) on fk: timed out, 59 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    let _ = server.request();
    assert_eq!(
        server.request().json()["messages"][2]["content"],
        "error: the tool did not answer within 0.5s (--tool-timeout)"
    );
    let log = logged(&log);
    let cancelled = log
        .iter()
        .find(|m| m["method"] == "notifications/cancelled")
        .expect("the call was cancelled");
    let call_id = log
        .iter()
        .find(|m| m["method"] == "tools/call")
        .map(|m| m["id"].clone())
        .unwrap();
    assert_eq!(cancelled["params"]["requestId"], call_id);
}

#[test]
fn the_servers_requests_are_answered_and_notifications_do_not_break_the_run() {
    let scratch = Scratch::new("mcp-ping");
    let log = scratch.path("log");
    let server = call_then_answer("echo", r#"{"text":"x"}"#, "Done.");
    let out = gptstream()
        .server(&server)
        .args(["-q", "--mcp", &mcp("fk", "ping-first", &log), "go"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nDone.\n--- stderr\n");
    let replies = logged(&log)
        .into_iter()
        .find_map(|m| m.get("replies").cloned())
        .expect("the server logged our replies");
    assert_eq!(
        replies,
        json!([
            {"jsonrpc":"2.0","id":"srv-1","result":{}},
            {"jsonrpc":"2.0","id":"srv-2","error":{"code":-32601,"message":"Method not found"}}
        ])
    );
}

/// Hostile or broken servers mid-run: each call gets an error result, memory stays bounded,
/// and the run ends normally.
#[test]
fn a_server_that_misbehaves_in_a_call_gives_an_error_result() {
    let scratch = Scratch::new("mcp-bad");
    let cases = [
        (
            "wrong-id",
            "error: answered a request gptstream never sent (id 1005)",
        ),
        ("huge", "error: sent a message over 16 MiB"),
        ("die-in-call", "error: exited with status 9: fake: crashed"),
    ];
    for (mode, result) in cases {
        let log = scratch.path(mode);
        let server = call_then_answer("echo", r#"{"text":"x"}"#, "Sorry.");
        let out = gptstream()
            .server(&server)
            .args(["-q", "--mcp", &mcp("fk", mode, &log), "go"])
            .run();
        // -q keeps the note of a call that failed.
        assert_eq!(
            out.render(),
            format!(
                "status: 0\n--- stdout\nSorry.\n--- stderr\n\
                 gptstream: ran tool echo (call_1) on fk: error, {} bytes\n",
                result.len()
            ),
            "{mode}"
        );
        let _ = server.request();
        assert_eq!(
            server.request().json()["messages"][2]["content"],
            result,
            "{mode}"
        );
        assert_gone(pid_of(&logged(&log)));
    }
}

#[test]
fn a_server_that_ignores_the_end_of_stdin_and_sigterm_is_killed() {
    let scratch = Scratch::new("mcp-linger");
    let log = scratch.path("log");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--mcp", &mcp("fk", "linger", &log)])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_gone(pid_of(&logged(&log)));
}

#[test]
fn a_chat_starts_its_server_once_and_calls_it_in_every_turn() {
    let scratch = Scratch::new("mcp-chat");
    let log = scratch.path("log");
    let model = Server::start(vec![
        sse(&call_turn("echo", r#"{"text":"one"}"#)),
        sse(&[content("First."), finish("stop"), DONE.to_owned()]),
        sse(&call_turn("echo", r#"{"text":"two"}"#)),
        sse(&[content("Second."), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&model)
        .args(["--chat", "-q", "--mcp", &mcp("fk", "ok", &log)])
        .stdin("first\nsecond\n")
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nFirst.\nSecond.\n\n--- stderr\n"
    );
    let log = logged(&log);
    assert_eq!(
        methods(&log),
        [
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/list",
            "tools/call",
            "tools/call"
        ],
        "one start, one call per turn"
    );
    assert_eq!(log.iter().filter(|m| m["pid"].is_number()).count(), 1);
    for _ in 0..3 {
        let _ = model.request();
    }
    let last = model.request().json();
    assert_eq!(
        last["messages"][6],
        json!({"role":"tool","tool_call_id":"call_1","content":"echo: two"})
    );
    assert_gone(pid_of(&log));
}

/// Once `ready` holds of what the server logged, sends `signal` to gptstream; its output.
pub fn signal_when(
    child: std::process::Child,
    log: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
    signal: &str,
) -> crate::util::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready(&logged(log)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the moment never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    crate::util::finish(child)
}

/// Sends `signal` to gptstream once its call of the slow tool is in flight; the exit code,
/// and what the server logged.
fn signalled_mid_call(name: &str, signal: &str) -> (i32, Vec<Value>) {
    let scratch = Scratch::new(name);
    let log = scratch.path("log");
    let server = call_then_answer("slow", "{}", "never");
    let child = gptstream()
        .server(&server)
        .args(["--mcp", &mcp("fk", "ok", &log), "go"])
        .spawn();
    let calling = |log: &[Value]| methods(log).contains(&"tools/call".to_owned());
    let out = signal_when(child, &log, calling, signal);
    (out.code, logged(&log))
}

#[test]
fn ctrl_c_or_sigterm_during_a_call_is_130_or_143_and_leaves_no_server() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let (status, log) = signalled_mid_call(&format!("mcp-signal{signal}"), signal);
        assert_eq!(status, code, "{signal}");
        assert_eq!(
            log.last().unwrap()["stdin"],
            "closed",
            "{signal}: told to leave by the end of its stdin"
        );
        assert_gone(pid_of(&log));
    }
}

/// The `tool_result` events of a `--json` run, in order.
pub fn tool_results(out: &crate::util::Output) -> Vec<Value> {
    out.json_lines()
        .into_iter()
        .filter(|e| e["type"] == "tool_result")
        .collect()
}

/// The first `tool_result` event of a `--json` run.
pub fn tool_result(out: &crate::util::Output) -> Value {
    tool_results(out)
        .into_iter()
        .next()
        .expect("a tool_result event")
}
