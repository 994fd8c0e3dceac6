//! The 2026-07-28 revision of MCP (no handshake, metadata on every request), and how a server's
//! era is told: `server/discover` first, `initialize` only when that is not understood. Over
//! stdio with `tests/fixtures/mcp/fake_server.py` in its modern modes, over Streamable HTTP with
//! our scripted server.

use serde_json::{Value, json};

use crate::mcp::{FAKE, call_then_answer, logged, methods};
use crate::server::{self, DONE, Server, Step, chunked_head, content, delta, finish, sse};
use crate::util::{Scratch, gptstream};

#[test]
fn a_2026_07_28_server_over_stdio_gets_no_handshake_and_metadata_on_every_request() {
    let scratch = Scratch::new("mcp-modern-stdio");
    let log = scratch.path("log");
    let model = call_then_answer("echo", r#"{"text":"hi"}"#, "It said hi.");
    let out = gptstream()
        .server(&model)
        .args(["--mcp", &format!("python3 {FAKE} modern {log}"), "go"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nIt said hi.\n--- stderr\n\
         gptstream: ran tool echo (call_1) on fake-modern: ok, 8 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    let log = logged(&log);
    assert_eq!(
        methods(&log),
        ["server/discover", "tools/list", "tools/list", "tools/call"]
    );
    for request in log.iter().filter(|m| m["id"].is_number()) {
        assert_eq!(
            request["params"]["_meta"],
            json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                   "io.modelcontextprotocol/clientInfo": {"name": "gptstream", "version": env!("CARGO_PKG_VERSION")},
                   "io.modelcontextprotocol/clientCapabilities": {}}),
            "{request}"
        );
    }
    let _ = model.request();
    assert_eq!(model.request().json()["messages"][2]["content"], "echo: hi");
}

#[test]
fn a_server_that_shares_no_version_is_exit_8_naming_both_sides() {
    let scratch = Scratch::new("mcp-modern-elsewhen");
    let log = scratch.path("log");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args([
            "--list-tools",
            "--mcp",
            &format!("fk=python3 {FAKE} modern-elsewhen {log}"),
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 8\n--- stdout\n\n--- stderr\n\
         gptstream: MCP server fk speaks protocol versions 2027-01-01; gptstream speaks 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05\n"
    );
}

#[test]
fn a_server_silent_at_the_probe_is_taken_for_a_legacy_one() {
    let scratch = Scratch::new("mcp-silent-probe");
    let log = scratch.path("log");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args([
            "--mcp-timeout",
            "2",
            "--list-tools",
            "--mcp",
            &format!("fk=python3 {FAKE} silent-probe {log}"),
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout().lines().count(), 3, "{}", out.render());
    assert_eq!(
        methods(&logged(&log)),
        [
            "server/discover",
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/list"
        ],
        "a probe given up is not cancelled: a legacy server never saw it begin"
    );
}

#[test]
fn a_result_that_asks_for_input_is_an_error_result() {
    let scratch = Scratch::new("mcp-modern-input");
    let log = scratch.path("log");
    let model = call_then_answer("echo", r#"{"text":"hi"}"#, "No input.");
    let out = gptstream()
        .server(&model)
        .args([
            "--json",
            "--mcp",
            &format!("fk=python3 {FAKE} modern-input {log}"),
            "go",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let result = crate::mcp::tool_result(&out);
    assert_eq!(
        (result["is_error"].clone(), result["output"].clone()),
        (
            json!(true),
            json!(
                "error: the tool asked gptstream for input (elicitation, sampling or roots), which it does not give"
            )
        )
    );
}

/// A JSON answer.
fn json_answer(body: &Value) -> Vec<Step> {
    server::full(200, "application/json", &body.to_string())
}

fn discover(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":{"resultType":"complete","supportedVersions":["2026-07-28"],
           "capabilities":{"tools":{}},
           "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"web","version":"2"}}}})
}

fn tools(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":{"resultType":"complete","tools":[
        {"name":"lookup","description":"Looks a word up","inputSchema":{"type":"object","properties":{
            "word":{"type":"string"},
            "where":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}},
            "greeting":{"type":"string","x-mcp-header":"Greeting"},
            "strict":{"type":"boolean","x-mcp-header":"Strict"}}}},
        {"name":"weigh","inputSchema":{"type":"object","properties":{
            "kilos":{"type":"number","x-mcp-header":"Kilos"}}}},
        {"name":"deep","inputSchema":{"type":"object","properties":{
            "list":{"type":"array","items":{"type":"string","x-mcp-header":"Item"}}}}}
    ]}})
}

fn url(server: &Server) -> String {
    format!("{}/mcp", server.base_url().trim_end_matches("/v1"))
}

#[test]
fn a_2026_07_28_http_server_gets_its_headers_no_session_and_bad_annotations_are_left_out() {
    let mcp = Server::start(vec![
        json_answer(&discover(1)),
        json_answer(&tools(2)),
        json_answer(
            &json!({"jsonrpc":"2.0","id":3,"result":{"resultType":"complete",
            "content":[{"type":"text","text":"an antelope"}]}}),
        ),
    ]);
    let arguments =
        r#"{"word":"gnu","where":{"region":"us-west1"},"greeting":"Hello, 世界","strict":true}"#;
    let model = call_then_answer("lookup", arguments, "An antelope.");
    let out = gptstream()
        .server(&model)
        .args(["--mcp", &url(&mcp), "gnu?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nAn antelope.\n--- stderr\n\
         gptstream: MCP server web: tool weigh left out: x-mcp-header Kilos is on a parameter that is not a string, integer or boolean\n\
         gptstream: MCP server web: tool deep left out: an x-mcp-header off the chain of properties\n\
         gptstream: ran tool lookup (call_1) on web: ok, 11 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    let offered: Vec<_> = model.request().json()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].clone())
        .collect();
    assert_eq!(offered, [json!("lookup")]);
    let got: Vec<_> = (0..3).map(|_| mcp.request()).collect();
    let headers = |i: usize| {
        [
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "mcp-session-id",
            "mcp-param-region",
            "mcp-param-greeting",
            "mcp-param-strict",
        ]
        .map(|name| got[i].header(name).unwrap_or("-").to_owned())
        .join(" ")
    };
    assert_eq!(headers(0), "2026-07-28 server/discover - - - - -");
    assert_eq!(headers(1), "2026-07-28 tools/list - - - - -");
    assert_eq!(
        headers(2),
        "2026-07-28 tools/call lookup - us-west1 =?base64?SGVsbG8sIOS4lueVjA==?= true"
    );
    assert_eq!(
        got[2].json()["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert!(mcp.try_request().is_none(), "no initialize, no DELETE");
}

#[test]
fn a_modern_http_call_given_up_is_cancelled_by_closing_its_stream() {
    let (closed, was_closed) = std::sync::mpsc::channel();
    let mcp = Server::start(vec![
        json_answer(&discover(1)),
        json_answer(&tools(2)),
        vec![
            chunked_head(200, "text/event-stream"),
            Step::AwaitClose(closed),
        ],
    ]);
    // The model holds its last answer until the test has seen the stream closed: closed at the
    // timeout, not by the end of the run.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let call = json!({"tool_calls":[{"index":0,"id":"call_1","type":"function",
        "function":{"name":"lookup","arguments":"{\"word\":\"gnu\"}"}}]});
    let mut answer = vec![Step::WaitFor(hold)];
    answer.extend(sse(&[content("Gave up."), finish("stop"), DONE.to_owned()]));
    let model = Server::start(vec![
        sse(&[delta(call, None), finish("tool_calls"), DONE.to_owned()]),
        answer,
    ]);
    let child = gptstream()
        .server(&model)
        .args(["--tool-timeout", "0.5", "--mcp", &url(&mcp), "gnu?"])
        .spawn();
    let _ = model.request();
    let second = model.request().json();
    assert_eq!(
        second["messages"][2]["content"],
        "error: the tool did not answer within 0.5s (--tool-timeout)"
    );
    let closed_in_time = was_closed.recv_timeout(std::time::Duration::from_secs(10));
    drop(release);
    let out = crate::util::finish(child);
    assert!(
        closed_in_time.is_ok(),
        "the call's stream is closed at the timeout"
    );
    assert_eq!(out.code, 0, "{}", out.render());
    let got: Vec<_> = (0..3)
        .map(|_| mcp.request().header("mcp-method").map(str::to_owned))
        .collect();
    assert_eq!(got[2].as_deref(), Some("tools/call"));
    assert!(
        mcp.try_request().is_none(),
        "no notifications/cancelled: closing the stream is the cancellation"
    );
}

#[test]
fn a_modern_http_server_that_shares_no_version_is_exit_8() {
    let refusal = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported protocol version",
        "data":{"supported":["2027-01-01"],"requested":"2026-07-28"}}});
    let mcp = Server::start(vec![server::full(
        400,
        "application/json",
        &refusal.to_string(),
    )]);
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--mcp", &format!("web={}", url(&mcp))])
        .run();
    assert_eq!(
        out.render(),
        "status: 8\n--- stdout\n\n--- stderr\n\
         gptstream: MCP server web speaks protocol versions 2027-01-01; gptstream speaks 2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05\n"
    );
}
