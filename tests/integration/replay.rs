//! `--replay`: a recorded body through the same decoder and sinks, with no request.

use crate::util::gptstream;

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_hello_example_replays_offline() {
    let out = gptstream().args(["--replay", &example("hello.sse")]).run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello! SSE streams text as it is generated.\n--- stderr\n\
         finish_reason=stop prompt_tokens=12 completion_tokens=10 total_tokens=22 ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn the_tool_call_example_replays_as_json() {
    let out = gptstream()
        .args(["--json", "--replay", &example("tool-call.sse")])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let calls: Vec<_> = out
        .json_lines()
        .into_iter()
        .filter(|e| e["type"] == "tool_call")
        .collect();
    assert_eq!(
        calls,
        [
            serde_json::json!({"type":"tool_call","choice":0,"index":0,"id":"call_Wx8","name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}})
        ]
    );
}

#[test]
fn replay_reads_stdin_with_a_dash() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"piped\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let out = gptstream().args(["--replay", "-", "-q"]).stdin(body).run();
    assert_eq!(out.render(), "status: 0\n--- stdout\npiped\n--- stderr\n");
}

#[test]
fn a_missing_replay_file_is_a_clear_error() {
    let out = gptstream().args(["--replay", "/nonexistent/x.sse"]).run();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("gptstream: cannot open replay file /nonexistent/x.sse: "),
        "{}",
        out.stderr
    );
}

#[test]
fn compat2_a_created_time_sent_as_a_float_is_its_whole_seconds() {
    let responses = "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"m\",\"created_at\":1761002000.75}}\n\n\
        data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n\
        data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[]}}\n\n";
    let chat = "data: {\"id\":\"c\",\"model\":\"m\",\"created\":1761002000.75,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    for body in [responses, chat] {
        let out = gptstream()
            .args(["--replay", "-", "--json"])
            .stdin(body)
            .run();
        assert_eq!(out.code, 0, "{}", out.render());
        assert_eq!(
            out.json_lines()[0],
            serde_json::json!({"type":"start","id":if body == chat {"c"} else {"resp_1"},"model":"m","created":1761002000}),
            "{body}"
        );
    }
}
