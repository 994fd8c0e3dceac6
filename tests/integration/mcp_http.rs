//! `--mcp URL`: tools from an MCP server over Streamable HTTP. The MCP server is our scripted
//! HTTP server on 127.0.0.1, one script per POST in the order the client sends them
//! (`initialize`, `notifications/initialized`, `tools/list`, each `tools/call`, the closing
//! DELETE), so a test says exactly how each answer comes: JSON, an event stream split
//! anywhere, 202, an error status, silence.

use serde_json::{Value, json};

use crate::server::{
    self, DONE, Recorded, Server, Step, chunked_head, content, delta, finish, sse,
};
use crate::util::gptstream;

/// A JSON answer with extra headers.
fn json_answer(body: &Value, headers: &str) -> Vec<Step> {
    let body = body.to_string();
    vec![Step::Raw(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )]
}

/// 202 Accepted, as a server answers a notification.
fn accepted() -> Vec<Step> {
    vec![Step::Raw(
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec(),
    )]
}

fn answer(id: u64, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn initialized(id: u64) -> Value {
    answer(
        id,
        json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
               "serverInfo": {"name": "web", "version": "1"}}),
    )
}

fn tools() -> Value {
    json!({"tools": [{"name": "lookup", "description": "Looks a word up",
                      "inputSchema": {"type": "object", "properties": {"word": {"type": "string"}}}}]})
}

/// How the official Python SDK's 2025-11-25 server refuses a 2026-07-28 request.
const LEGACY_REFUSAL: &str = r#"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Unsupported protocol version: 2026-07-28"}}"#;

/// The start every test shares: the probe refused, `initialize` (JSON, with a session id), `initialized` (202),
/// `tools/list` (an event stream: a priming event, a log notification, then the answer).
fn start() -> Vec<Vec<Step>> {
    let list = json!({"jsonrpc": "2.0", "id": 3, "result": tools()}).to_string();
    vec![
        // The era probe (server/discover, 2026-07-28): refused as a 2025-11-25 server does.
        server::full(400, "application/json", LEGACY_REFUSAL),
        json_answer(&initialized(2), "Mcp-Session-Id: sess-42\r\n"),
        accepted(),
        sse(&[
            "id: 1\ndata:\n\n".to_owned(),
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"hi\"}}\n\n".to_owned(),
            // The answer split mid-event.
            format!("data: {}", &list[..20]),
            format!("{}\n\n", &list[20..]),
        ]),
    ]
}

fn call_turn(name: &str, arguments: &str) -> Vec<String> {
    vec![
        delta(
            json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":name,"arguments":arguments}}]}),
            None,
        ),
        finish("tool_calls"),
        DONE.to_owned(),
    ]
}

fn model_calls_then_answers(calls: usize, answer: &str) -> Server {
    let mut scripts: Vec<_> = (0..calls)
        .map(|_| sse(&call_turn("lookup", r#"{"word":"gnu"}"#)))
        .collect();
    scripts.push(sse(&[content(answer), finish("stop"), DONE.to_owned()]));
    Server::start(scripts)
}

fn url(server: &Server) -> String {
    format!("{}/mcp", server.base_url().trim_end_matches("/v1"))
}

/// Every request the MCP server got, once the run is over.
fn received(mcp: &Server, count: usize) -> Vec<Recorded> {
    (0..count).map(|_| mcp.request()).collect()
}

#[test]
fn an_http_server_is_initialized_listed_called_and_its_session_ended() {
    let mut scripts = start();
    // The call's answer: a ping of the server's first, then the result, split mid-event.
    let result = answer(
        4,
        json!({"content": [{"type": "text", "text": "gnu: an antelope"}]}),
    );
    let result = format!("data: {result}\n\n");
    scripts.push(sse(&[
        "data: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"ping\"}\n\n",
        &result[..9],
        &result[9..],
    ]));
    scripts.push(accepted()); // our answer to the ping
    scripts.push(server::full(200, "text/plain", "")); // DELETE
    let mcp = Server::start(scripts);
    let model = model_calls_then_answers(1, "An antelope.");
    let out = gptstream()
        .server(&model)
        .env("OPENAI_API_KEY", "sk-http-mcp-secret")
        .args(["--mcp", &url(&mcp), "What is a gnu?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nAn antelope.\n--- stderr\n\
         gptstream: ran tool lookup (call_1) on web: ok, 16 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    let first = model.request().json();
    assert_eq!(first["tools"][0]["function"]["name"], "lookup");
    assert_eq!(
        model.request().json()["messages"][2],
        json!({"role":"tool","tool_call_id":"call_1","content":"gnu: an antelope"})
    );
    let got = received(&mcp, 7);
    let shape: Vec<_> = got
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            format!(
                "{} {} {} session={} version={} accept={}",
                r.method,
                r.path,
                body["method"]
                    .as_str()
                    .or(body["id"].as_str())
                    .unwrap_or("-"),
                r.header("mcp-session-id").unwrap_or("-"),
                r.header("mcp-protocol-version").unwrap_or("-"),
                r.header("accept").unwrap_or("-"),
            )
        })
        .collect();
    let both = "application/json, text/event-stream";
    assert_eq!(
        shape,
        [
            format!("POST /mcp server/discover session=- version=2026-07-28 accept={both}"),
            format!("POST /mcp initialize session=- version=- accept={both}"),
            format!(
                "POST /mcp notifications/initialized session=sess-42 version=2025-11-25 accept={both}"
            ),
            format!("POST /mcp tools/list session=sess-42 version=2025-11-25 accept={both}"),
            format!("POST /mcp tools/call session=sess-42 version=2025-11-25 accept={both}"),
            format!("POST /mcp srv-1 session=sess-42 version=2025-11-25 accept={both}"),
            "DELETE /mcp - session=sess-42 version=2025-11-25 accept=*/*".to_owned(),
        ]
    );
    assert_eq!(got[0].header("mcp-method"), Some("server/discover"));
    assert_eq!(got[1].json()["params"]["protocolVersion"], "2025-11-25");
    assert!(
        got[1..].iter().all(|r| r.header("mcp-method").is_none()),
        "no 2026-07-28 headers once the server is known to be legacy"
    );
    assert_eq!(
        got[5].json(),
        json!({"jsonrpc":"2.0","id":"srv-1","result":{}}),
        "the ping is answered"
    );
    assert!(
        got.iter()
            .all(|r| !format!("{r:?}").contains("sk-http-mcp-secret")),
        "the MCP server must never see the API key"
    );
}

#[test]
fn a_server_slow_to_take_our_answers_to_its_pings_does_not_hold_up_the_call() {
    let mut scripts = start();
    let result = answer(
        4,
        json!({"content": [{"type": "text", "text": "gnu: an antelope"}]}),
    );
    // Six pings, then the call's answer.
    let mut events: Vec<String> = (1..=6)
        .map(|n| {
            format!("data: {{\"jsonrpc\":\"2.0\",\"id\":\"srv-{n}\",\"method\":\"ping\"}}\n\n")
        })
        .collect();
    events.push(format!("data: {result}\n\n"));
    scripts.push(sse(&events));
    // Our answers are taken only once the call is over (the model asked again); four are on
    // their way at most, the others dropped.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = std::sync::Arc::new(std::sync::Mutex::new(hold));
    for _ in 0..4 {
        let (each, wait) = std::sync::mpsc::channel::<()>();
        let hold = std::sync::Arc::clone(&hold);
        std::thread::spawn(move || {
            let _ = hold.lock().map(|hold| hold.recv());
            drop(each);
        });
        let mut slow = vec![Step::WaitFor(wait)];
        slow.extend(accepted());
        scripts.push(slow);
    }
    scripts.push(server::full(200, "text/plain", "")); // DELETE
    let mcp = Server::start(scripts);
    let model = model_calls_then_answers(1, "An antelope.");
    let child = gptstream()
        .server(&model)
        .args(["-q", "--mcp", &url(&mcp), "What is a gnu?"])
        .spawn();
    let _ = model.request();
    // The call's answer came while those POSTs waited (had the call waited on one, it would
    // have failed when the POST gave up after 10 s).
    assert_eq!(
        model.request().json()["messages"][2],
        json!({"role":"tool","tool_call_id":"call_1","content":"gnu: an antelope"})
    );
    drop(release);
    let out = crate::util::finish(child);
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nAn antelope.\n--- stderr\n"
    );
    let got = received(&mcp, 10);
    let mut answered: Vec<_> = got[5..9].iter().map(|r| r.json()["id"].clone()).collect();
    answered.sort_by_key(|id| id.to_string());
    assert_eq!(answered, ["srv-1", "srv-2", "srv-3", "srv-4"]);
    assert!(
        got[5..9].iter().all(|r| r.json()["result"] == json!({})),
        "each ping is answered"
    );
    assert_eq!(got[9].method, "DELETE");
}

#[test]
fn messages_after_an_answer_that_nobody_takes_do_not_hold_up_the_exit() {
    let mut scripts = start();
    // A batch: the answer, then notifications nobody waits for: one fills the queue, the
    // next keeps its POST's thread waiting until the run ends.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"level": "info", "data": "late"}});
    let batch = json!([
        answer(
            4,
            json!({"content": [{"type": "text", "text": "gnu: an antelope"}]})
        ),
        note,
        note,
        note
    ]);
    scripts.push(json_answer(&batch, ""));
    scripts.push(server::full(200, "text/plain", "")); // DELETE
    let mcp = Server::start(scripts);
    let model = model_calls_then_answers(1, "An antelope.");
    let out = gptstream()
        .server(&model)
        .args(["-q", "--mcp", &url(&mcp), "What is a gnu?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nAn antelope.\n--- stderr\n"
    );
    assert_eq!(received(&mcp, 6)[5].method, "DELETE");
}

#[test]
fn json_tool_results_of_an_http_server_name_it_and_an_error_result_goes_on() {
    let mut scripts = start();
    scripts.push(json_answer(
        &answer(
            4,
            json!({"content": [{"type": "text", "text": "no such word"}], "isError": true}),
        ),
        "",
    ));
    scripts.push(server::full(405, "text/plain", "")); // DELETE: a server may refuse it
    let mcp = Server::start(scripts);
    let model = model_calls_then_answers(1, "Unknown.");
    let out = gptstream()
        .server(&model)
        .args(["--json", "--mcp", &format!("dict={}", url(&mcp)), "gnu?"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let result = crate::mcp::tool_result(&out);
    assert_eq!(
        result,
        json!({"type":"tool_result","choice":0,"index":0,"id":"call_1","name":"lookup",
               "exit_code":null,"timed_out":false,"output_bytes":19,"truncated":false,
               "output":"error: no such word","server":"dict","is_error":true})
    );
    assert_eq!(received(&mcp, 6)[5].method, "DELETE");
}

#[test]
fn list_tools_over_http_prints_the_tools_and_asks_no_model() {
    let mut scripts = start();
    scripts.push(server::full(200, "text/plain", ""));
    let mcp = Server::start(scripts);
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--json", "--mcp", &url(&mcp)])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n\
         {\"name\":\"lookup\",\"server\":\"web\",\"description\":\"Looks a word up\",\"parameters\":{\"type\":\"object\",\"properties\":{\"word\":{\"type\":\"string\"}}}}\n\
         \n--- stderr\n"
    );
}

#[test]
fn an_http_server_that_refuses_or_cannot_be_reached_is_exit_8_without_its_secrets() {
    // Refused at the probe, and again at the handshake.
    let refused = || {
        server::full(
            401,
            "application/json",
            r#"{"error":{"message":"bad token"}}"#,
        )
    };
    let mcp = Server::start(vec![refused(), refused()]);
    let with_password = url(&mcp).replace("http://", "http://me:pa55word-secret@");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--mcp", &with_password, "hi"])
        .run();
    let port = mcp
        .base_url()
        .split(':')
        .nth(2)
        .unwrap_or("")
        .replace("/v1", "");
    assert_eq!(
        out.render(),
        format!(
            "status: 8\n--- stdout\n\n--- stderr\n\
             gptstream: MCP server http://me:***@127.0.0.1:{port}/mcp answered HTTP 401 Unauthorized: bad token\n"
        )
    );
    assert_eq!(mcp.request().method, "POST");

    let nowhere = format!("http://127.0.0.1:{}/mcp", server::unused_port());
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--mcp", &format!("gone={nowhere}"), "hi"])
        .run();
    assert_eq!(out.code, 8, "{}", out.render());
    assert!(
        out.stderr.starts_with(&format!(
            "gptstream: MCP server gone cannot be reached at {nowhere}: "
        )),
        "{}",
        out.render()
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.render());
}

#[test]
fn a_silent_http_server_is_exit_8_at_the_mcp_timeout() {
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (release_probe, hold_probe) = std::sync::mpsc::channel::<()>();
    // Silent at the probe, and at the handshake.
    let mcp = Server::start(vec![
        vec![Step::WaitFor(hold_probe)],
        vec![Step::WaitFor(hold)],
    ]);
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args([
            "--mcp-timeout",
            "0.5",
            "--mcp",
            &format!("mute={}", url(&mcp)),
            "hi",
        ])
        .run();
    drop((release, release_probe));
    assert_eq!(
        out.render(),
        "status: 8\n--- stdout\n\n--- stderr\n\
         gptstream: MCP server mute did not answer initialize within 0.5s (--mcp-timeout)\n"
    );
}

/// A server whose answer to the call is an event stream that stays silent until the sender is
/// dropped; then it takes `notifications/cancelled` and the DELETE.
fn a_call_that_hangs() -> (std::sync::mpsc::Sender<()>, Server) {
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let mut scripts = start();
    scripts.push(vec![
        chunked_head(200, "text/event-stream"),
        Step::WaitFor(hold),
    ]);
    scripts.push(accepted()); // notifications/cancelled
    scripts.push(server::full(200, "text/plain", "")); // DELETE
    (release, Server::start(scripts))
}

#[test]
fn a_call_that_hangs_over_http_is_cancelled_at_the_tool_timeout_and_the_loop_goes_on() {
    let (release, mcp) = a_call_that_hangs();
    let model = model_calls_then_answers(1, "Gave up.");
    let out = gptstream()
        .server(&model)
        .args(["--tool-timeout", "0.5", "--mcp", &url(&mcp), "gnu?"])
        .run();
    drop(release);
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nGave up.\n--- stderr\n\
         gptstream: ran tool lookup (call_1) on web: timed out, 59 bytes\n\
         finish_reason=stop tool_calls=1 requests=2 usage=none ttft_ms=* duration_ms=*\n"
    );
    let got = received(&mcp, 7);
    assert_eq!(
        got[5].json()["params"],
        json!({"requestId": 4, "reason": "timed out"}),
        "the call is cancelled"
    );
    assert_eq!(got[6].method, "DELETE");
}

#[test]
fn hostile_http_answers_are_error_results_and_the_loop_goes_on() {
    let mut scripts = start();
    // A wrong id; a body that is no JSON-RPC; an answer over 16 MiB; a stream that ends
    // before its answer.
    scripts.push(json_answer(&answer(99, json!({})), ""));
    scripts.push(server::full(200, "text/html", "<html>hello</html>"));
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}",
        "x".repeat(17 << 20)
    );
    scripts.push(server::full(200, "application/json", &huge));
    scripts.push(sse(&[
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
    ]));
    scripts.push(server::full(200, "text/plain", "")); // DELETE
    let mcp = Server::start(scripts);
    let model = model_calls_then_answers(4, "Survived.");
    let out = gptstream()
        .server(&model)
        .args(["--json", "--mcp", &url(&mcp), "gnu?"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let outputs: Vec<_> = crate::mcp::tool_results(&out)
        .iter()
        .map(|e| format!("{} {}", e["is_error"], e["output"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        outputs,
        [
            "true error: answered a request gptstream never sent (id 99)",
            "true error: answered with \"text/html\", neither JSON nor an event stream",
            "true error: sent a message over 16 MiB",
            "true error: closed its event stream before answering",
        ]
    );
}

#[test]
fn ctrl_c_during_an_http_call_is_130_and_ends_the_session() {
    let (release, mcp) = a_call_that_hangs();
    let model = model_calls_then_answers(1, "never");
    let child = gptstream()
        .server(&model)
        .args(["--mcp", &url(&mcp), "gnu?"])
        .spawn();
    let got = received(&mcp, 5);
    assert_eq!(got[4].json()["method"], "tools/call");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = crate::util::finish(child);
    drop(release);
    assert_eq!(out.code, 130, "{}", out.render());
    let rest: Vec<_> = received(&mcp, 2).iter().map(|r| r.method.clone()).collect();
    assert_eq!(
        rest,
        ["POST", "DELETE"],
        "cancelled, then the session ended"
    );
}

#[test]
fn a_session_the_server_ends_is_started_again_and_the_call_sent_once_more() {
    let mut scripts = start();
    scripts.push(server::full(404, "text/plain", "no such session"));
    scripts.push(json_answer(&initialized(5), "Mcp-Session-Id: sess-43\r\n"));
    scripts.push(accepted());
    scripts.push(json_answer(
        &answer(
            6,
            json!({"content": [{"type": "text", "text": "gnu: an antelope"}]}),
        ),
        "",
    ));
    scripts.push(server::full(200, "text/plain", "")); // DELETE
    let mcp = Server::start(scripts);
    let model = model_calls_then_answers(1, "An antelope.");
    let out = gptstream()
        .server(&model)
        .args(["-q", "--mcp", &url(&mcp), "gnu?"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nAn antelope.\n--- stderr\n"
    );
    let got = received(&mcp, 9);
    let shape: Vec<_> = got[4..]
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            format!(
                "{} {} session={}",
                r.method,
                body["method"].as_str().unwrap_or("-"),
                r.header("mcp-session-id").unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            "POST tools/call session=sess-42",
            "POST initialize session=-",
            "POST notifications/initialized session=sess-43",
            "POST tools/call session=sess-43",
            "DELETE - session=sess-43",
        ]
    );
}
