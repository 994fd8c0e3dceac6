//! Text mode: the answer on stdout byte for byte, as it arrives; the summary on stderr.

use std::sync::mpsc;

use serde_json::json;

use crate::server::{self, DONE, Server, Step, content, delta, finish, hello_chunks, sse};
use crate::util::{drain, expect_output, finish as wait, gptstream};

#[test]
fn streams_the_answer_to_stdout_and_a_summary_to_stderr() {
    let server = Server::one(sse(&hello_chunks()));
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello, world!\n--- stderr\n\
         finish_reason=stop prompt_tokens=9 completion_tokens=4 total_tokens=13 ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn splits_mid_line_and_mid_character_do_not_change_a_byte() {
    let body: String = [
        content("naïve café "),
        content("🌍 ✓"),
        content("\nline two"),
        finish("stop"),
        DONE.to_owned(),
    ]
    .concat();
    let bytes = body.as_bytes();
    // Cut at every 7th byte: that lands inside lines, inside "data:", and inside multi-byte
    // characters (the world emoji is four bytes).
    let pieces: Vec<&[u8]> = bytes.chunks(7).collect();
    let world = bytes.windows(4).position(|w| w == "🌍".as_bytes()).unwrap();
    let mut steps = vec![server::chunked_head(200, "text/event-stream")];
    steps.push(Step::Chunk(bytes[..world + 2].to_vec()));
    steps.push(Step::Sleep(std::time::Duration::from_millis(20)));
    steps.push(Step::Chunk(bytes[world + 2..].to_vec()));
    steps.push(Step::EndChunks);
    let expected = "naïve café 🌍 ✓\nline two";

    let split_in_emoji = Server::one(steps);
    let out = gptstream().server(&split_in_emoji).args(["-q", "hi"]).run();
    assert_eq!(
        out.render(),
        format!("status: 0\n--- stdout\n{expected}\n--- stderr\n")
    );

    let sevens = Server::one(sse(&pieces));
    let out = gptstream().server(&sevens).args(["-q", "hi"]).run();
    assert_eq!(
        out.render(),
        format!("status: 0\n--- stdout\n{expected}\n--- stderr\n")
    );
}

#[test]
fn crlf_and_cr_line_endings_and_comments_work_over_the_wire() {
    let body = format!(
        ": keep-alive\r\n\r\n{}{}{}",
        content("a").replace("\n", "\r\n"),
        content("b").replace("\n", "\r"),
        [finish("stop"), DONE.to_owned()]
            .concat()
            .replace('\n', "\r\n")
    );
    // One byte per HTTP chunk: CR and LF of every CRLF arrive in separate reads.
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
    let server = Server::one(sse(&pieces));
    let out = gptstream().server(&server).args(["-q", "hi"]).run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nab\n--- stderr\n");
}

/// Proves there is no buffering: the server sends the next delta only after the test has seen
/// the previous one on the child's stdout. Any buffering anywhere would stall this test.
#[test]
fn each_delta_reaches_stdout_before_the_server_sends_the_next() {
    let (first_seen, wait_first) = mpsc::channel();
    let (second_seen, wait_second) = mpsc::channel();
    let server = Server::one(vec![
        server::chunked_head(200, "text/event-stream"),
        Step::Chunk(content("Hel").into_bytes()),
        Step::WaitFor(wait_first),
        Step::Chunk(content("lo").into_bytes()),
        Step::WaitFor(wait_second),
        Step::Chunk([finish("stop"), DONE.to_owned()].concat().into_bytes()),
        Step::EndChunks,
    ]);
    let mut child = gptstream().server(&server).args(["-q", "hi"]).spawn();
    let stdout = drain(child.stdout.take().unwrap());
    expect_output(&stdout, b"Hel");
    first_seen.send(()).unwrap();
    expect_output(&stdout, b"lo");
    second_seen.send(()).unwrap();
    let out = wait(child);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn reasoning_goes_to_stderr_or_nowhere_never_stdout() {
    let chunks = [
        delta(json!({"reasoning_content": "Let me think."}), None),
        content("42"),
        finish("stop"),
        DONE.to_owned(),
    ];
    let server = Server::one(sse(&chunks));
    let out = gptstream().server(&server).arg_prompt("q").run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n42\n--- stderr\nLet me think.\nfinish_reason=stop usage=none ttft_ms=* duration_ms=*\n"
    );

    let server = Server::one(sse(&chunks));
    let out = gptstream()
        .server(&server)
        .args(["--reasoning", "hide", "q"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n42\n--- stderr\nfinish_reason=stop usage=none ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn a_length_finish_warns_about_truncation() {
    let server = Server::one(sse(&[
        content("Once upon"),
        finish("length"),
        DONE.to_owned(),
    ]));
    let out = gptstream()
        .server(&server)
        .args(["--max-tokens", "2", "story"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nOnce upon\n--- stderr\n\
         gptstream: warning: the answer was cut off by the token limit (finish_reason=length); raise --max-tokens\n\
         finish_reason=length usage=none ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn a_tool_call_follows_the_text_as_one_json_line() {
    let server = Server::one(sse(&[
        content("Checking."),
        delta(
            json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}),
            None,
        ),
        delta(
            json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Pa"}}]}),
            None,
        ),
        delta(
            json!({"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]}),
            None,
        ),
        finish("tool_calls"),
        DONE.to_owned(),
    ]));
    let out = gptstream().server(&server).arg_prompt("weather?").run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nChecking.\n{\"id\":\"call_1\",\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n\n\
         --- stderr\nfinish_reason=tool_calls tool_calls=1 usage=none ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn a_server_that_ignores_stream_true_is_handled_as_one_completion() {
    let body = json!({"id":"c","object":"chat.completion","created":1,"model":"m",
        "choices":[{"index":0,"message":{"role":"assistant","content":"Whole answer."},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}});
    let server = Server::one(server::full(200, "application/json", &body.to_string()));
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nWhole answer.\n--- stderr\n\
         finish_reason=stop prompt_tokens=1 completion_tokens=2 total_tokens=3 ttft_ms=* duration_ms=*\n"
    );
}

#[test]
fn a_stream_without_done_is_fine_when_every_choice_finished() {
    // Connection: close framing, no [DONE], then the server hangs up.
    let server = Server::one(vec![
        Step::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        Step::Raw([content("done"), finish("stop")].concat().into_bytes()),
        Step::Close,
    ]);
    let out = gptstream().server(&server).args(["-q", "hi"]).run();
    assert_eq!(out.render(), "status: 0\n--- stdout\ndone\n--- stderr\n");
}

impl crate::util::Gptstream {
    /// The prompt as one argument.
    pub fn arg_prompt(self, prompt: &str) -> Self {
        self.args([prompt])
    }
}
