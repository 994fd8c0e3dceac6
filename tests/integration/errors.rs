//! Failures: each gets one clear line on stderr and its documented exit code, and output that
//! was already written stays written.

use std::sync::mpsc;
use std::time::Duration;

use crate::server::{self, DONE, Server, Step, content, finish, sse};
use crate::util::{drain, finish as wait, gptstream, wait_for};

#[test]
fn http_401_shows_the_server_message_and_exits_3() {
    let body = r#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let server = Server::one(server::full(401, "application/json", body));
    let out = gptstream()
        .server(&server)
        .env("OPENAI_API_KEY", "sk-wrong")
        .arg_prompt("hi")
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\n\n--- stderr\n\
         gptstream: HTTP 401 Unauthorized (invalid_api_key): Incorrect API key provided: sk-abc***xyz.\n"
    );
}

#[test]
fn an_html_error_page_is_summarised_in_one_line() {
    let page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n";
    let server = Server::one(server::full(502, "text/html", page));
    let out = gptstream()
        .server(&server)
        .args(["--retries", "0", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 502 Bad Gateway: HTML error page: 502 Bad Gateway\n"
    );
}

#[test]
fn an_error_in_the_stream_keeps_the_partial_answer_and_exits_3() {
    let server = Server::one(sse(&[
        content("The answer is"),
        "event: error\ndata: {\"error\":{\"message\":\"Overloaded\",\"code\":\"overloaded\"}}\n\n"
            .to_owned(),
    ]));
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\nThe answer is\n--- stderr\n\
         gptstream: the server reported an error (overloaded): Overloaded\n"
    );
}

#[test]
fn a_truncated_stream_warns_and_exits_5() {
    // The body ends cleanly (final chunk sent) but no finish_reason and no [DONE].
    let server = Server::one(sse(&[content("Half an ans")]));
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(
        out.render(),
        "status: 5\n--- stdout\nHalf an ans\n--- stderr\n\
         gptstream: the stream ended without [DONE] before choice 0 finished; the answer may be incomplete\n"
    );
}

#[test]
fn a_connection_closed_mid_chunk_keeps_output_and_exits_5() {
    let server = Server::one(vec![
        server::chunked_head(200, "text/event-stream"),
        Step::Chunk(content("kept").into_bytes()),
        // Announce 100 bytes, send 5, hang up.
        Step::Raw(b"64\r\ndata:".to_vec()),
        Step::Close,
    ]);
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(out.stdout(), "kept");
    assert!(out.stderr.starts_with("gptstream: "), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn a_chunk_that_is_not_json_exits_5_after_the_good_ones() {
    let server = Server::one(sse(&[content("ok"), "data: {not json\n\n".to_owned()]));
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(out.stdout(), "ok");
    assert!(
        out.stderr
            .starts_with("gptstream: malformed chunk, not JSON"),
        "{}",
        out.stderr
    );
}

#[test]
fn connection_refused_exits_4() {
    // Bind a port, then free it: nothing listens there.
    let port = server::unused_port();
    let out = gptstream()
        .env("OPENAI_BASE_URL", &format!("http://127.0.0.1:{port}/v1"))
        .args(["--retries", "0", "hi"])
        .run();
    assert_eq!(
        out.render(),
        format!(
            "status: 4\n--- stdout\n\n--- stderr\ngptstream: connection refused by 127.0.0.1:{port} (is the server running?)\n"
        )
    );
}

#[test]
fn a_silent_server_hits_the_idle_timeout_and_keeps_output() {
    let (release, steps) = server::stalls_after("so far");
    let server = Server::one(steps);
    let out = gptstream()
        .server(&server)
        .args(["--idle-timeout", "0.3", "hi"])
        .run();
    drop(release);
    assert_eq!(
        out.render(),
        format!(
            "status: 4\n--- stdout\nso far\n--- stderr\ngptstream: timed out: 127.0.0.1:{} sent nothing for 0.3s (--idle-timeout)\n",
            server
                .base_url()
                .split(':')
                .nth(2)
                .unwrap()
                .trim_end_matches("/v1")
        )
    );
}

#[test]
fn a_closed_stdout_exits_0_quietly_in_text_and_json_mode() {
    for mode in [None, Some("--json")] {
        let (first_read, wait_read) = mpsc::channel();
        let mut steps = vec![
            server::chunked_head(200, "text/event-stream"),
            Step::Chunk(content("first").into_bytes()),
            Step::WaitFor(wait_read),
        ];
        // Enough after the reader is gone that a write must fail.
        for _ in 0..200 {
            steps.push(Step::Chunk(
                content("more text that nobody reads ").into_bytes(),
            ));
            steps.push(Step::Sleep(Duration::from_millis(1)));
        }
        steps.push(Step::Chunk(
            [finish("stop"), DONE.to_owned()].concat().into_bytes(),
        ));
        steps.push(Step::EndChunks);
        let server = Server::one(steps);
        let mut child = gptstream()
            .server(&server)
            .args(mode)
            .arg_prompt("hi")
            .spawn();
        let stdout = child.stdout.take().unwrap();
        let first = drain(stdout);
        wait_for(&first, "first");
        drop(first); // closes our end of the pipe once the drain thread stops
        first_read.send(()).unwrap();
        let out = wait(child);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "mode {mode:?}");
    }
}

#[test]
fn bad_flags_and_no_prompt_are_usage_errors() {
    let out = gptstream().args(["--no-such-flag"]).run();
    assert_eq!(out.code, 2, "{}", out.render());

    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: no prompt: give it as arguments or on stdin, e.g. gptstream \"hello\" or echo hello | gptstream\n"
    );

    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .stdin(b"caf\xE9\n".to_vec())
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert_eq!(
        out.stderr,
        "gptstream: stdin is not valid UTF-8 (invalid byte at offset 3); convert it first, e.g. with iconv\n"
    );

    let out = gptstream()
        .args(["--extra", "nope", "hi"])
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .starts_with("gptstream: --extra must be a JSON object"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_key_for_openai_names_the_variable_and_exits_2() {
    let out = gptstream().arg_prompt("hi").run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .contains("OPENAI_API_KEY is not set: export OPENAI_API_KEY="),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
}

#[test]
fn https_to_a_plain_http_server_is_a_tls_error_exit_4() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let plain_http = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.read(&mut [0u8; 1024]);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let out = gptstream()
        .env("OPENAI_BASE_URL", &format!("https://127.0.0.1:{port}/v1"))
        .arg_prompt("hi")
        .run();
    plain_http.join().unwrap();
    assert_eq!(out.code, 4, "{}", out.render());
    assert!(
        out.stderr.starts_with(&format!(
            "gptstream: TLS error talking to 127.0.0.1:{port}: "
        )),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
}

/// FastAPI's own 404, as a server answers a path it has no route for.
fn not_found() -> Vec<Step> {
    server::full(404, "application/json", r#"{"detail":"Not Found"}"#)
}

#[test]
fn a_404_names_the_url_and_asks_whether_the_base_url_needs_v1() {
    let server = Server::start(vec![not_found(), not_found()]);
    // The server's routes are under /v1; the base URL leaves it out (and carries a secret).
    let root = server.base_url().trim_end_matches("/v1").to_owned();
    let base = format!("{root}?api-key=url-secret-4b1d");
    let line = format!(
        "HTTP 404 Not Found: Not Found (POST {root}/chat/completions?api-key=***; does the base URL need /v1?)"
    );
    let out = gptstream()
        .env("OPENAI_BASE_URL", &base)
        .arg_prompt("hi")
        .run();
    assert_eq!(
        out.render(),
        format!("status: 3\n--- stdout\n\n--- stderr\ngptstream: {line}\n")
    );
    // The --json error event carries the same text.
    let out = gptstream()
        .env("OPENAI_BASE_URL", &base)
        .args(["--json", "hi"])
        .run();
    let event = serde_json::json!({"type": "error", "message": line, "status": 404, "code": null});
    assert_eq!(
        out.render(),
        format!("status: 3\n--- stdout\n{event}\n\n--- stderr\ngptstream: {line}\n")
    );
}

#[test]
fn a_404_under_v1_names_the_url_without_a_guess_and_one_about_the_model_too() {
    let model_not_found = server::full(
        404,
        "application/json",
        r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
    );
    let server = Server::start(vec![not_found(), model_not_found]);
    let url = format!("{}/chat/completions", server.base_url());
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(
        out.render(),
        format!(
            "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 404 Not Found: Not Found (POST {url})\n"
        )
    );
    let out = gptstream()
        .server(&server)
        .args(["-m", "gpt-9", "hi"])
        .run();
    assert_eq!(
        out.render(),
        format!(
            "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 404 Not Found (model_not_found): \
             The model `gpt-9` does not exist or you do not have access to it. (POST {url})\n"
        )
    );
}
