//! Retries, fallbacks and timeouts: nothing printed twice, nothing lost, no hang.

use std::sync::mpsc;

use crate::server::{self, DONE, Server, Step, content, finish, hello_chunks, sse};
use crate::util::gptstream;

fn json_error(status: u16, extra_headers: &str, message: &str) -> Vec<Step> {
    let body = format!(r#"{{"error":{{"message":"{message}","type":"x","code":null}}}}"#);
    vec![Step::Raw(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )]
}

#[test]
fn a_429_with_retry_after_is_retried_and_the_answer_printed_once() {
    let server = Server::start(vec![
        json_error(429, "Retry-After: 0\r\n", "Rate limit reached"),
        sse(&hello_chunks()),
    ]);
    let out = gptstream().server(&server).args(["-q", "hi"]).run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello, world!\n--- stderr\n\
         gptstream: HTTP 429 Too Many Requests (x): Rate limit reached; retrying in 0.0s (retry 1 of 2)\n"
    );
    let (first, second) = (server.request(), server.request());
    assert_eq!(first.body, second.body, "the same request is sent again");
}

#[test]
fn a_500_is_retried_with_backoff() {
    let server = Server::start(vec![json_error(500, "", "boom"), sse(&hello_chunks())]);
    let out = gptstream().server(&server).args(["-q", "hi"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), "Hello, world!");
    assert!(
        out.stderr
            .starts_with("gptstream: HTTP 500 Internal Server Error (x): boom; retrying in 0."),
        "{}",
        out.stderr
    );
}

#[test]
fn retries_zero_turns_them_off_and_4xx_is_never_retried() {
    let server = Server::one(json_error(503, "", "down"));
    let out = gptstream()
        .server(&server)
        .args(["--retries", "0", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 503 Service Unavailable (x): down\n"
    );

    let server = Server::one(json_error(404, "", "no such model"));
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 404 Not Found (x): no such model\n"
    );
}

#[test]
fn an_error_after_the_first_delta_is_not_retried() {
    let server = Server::one(vec![
        server::chunked_head(200, "text/event-stream"),
        Step::Chunk(content("partial").into_bytes()),
        Step::Close,
    ]);
    let out = gptstream().server(&server).arg_prompt("hi").run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(out.stdout(), "partial");
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
}

#[test]
fn a_refused_connection_is_retried_then_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = gptstream()
        .env("OPENAI_BASE_URL", &format!("http://127.0.0.1:{port}/v1"))
        .args(["--retries", "1", "hi"])
        .run();
    assert_eq!(out.code, 4, "{}", out.render());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].contains("retrying in") && lines[0].ends_with("(retry 1 of 1)"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        format!("gptstream: connection refused by 127.0.0.1:{port} (is the server running?)")
    );
}

#[test]
fn a_server_that_rejects_stream_options_is_asked_again_without_it() {
    let server = Server::start(vec![
        json_error(
            400,
            "",
            "Unrecognized request argument supplied: stream_options",
        ),
        sse(&[content("ok"), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--retries", "0", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nok\n--- stderr\n\
         gptstream: the server rejects stream_options; retrying without it (no usage will be reported)\n\
         finish_reason=stop usage=none\n"
    );
    assert!(server.request().json().get("stream_options").is_some());
    assert!(server.request().json().get("stream_options").is_none());
}

#[test]
fn no_response_headers_hits_the_first_byte_timeout() {
    let (_release, hold) = mpsc::channel::<()>();
    let server = Server::one(vec![Step::WaitFor(hold)]);
    let out = gptstream()
        .server(&server)
        .args(["--first-byte-timeout", "0.3", "hi"])
        .run();
    assert_eq!(out.code, 4, "{}", out.render());
    assert!(
        out.stderr.ends_with("after 0.3s (--first-byte-timeout)\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_total_timeout_stops_a_slow_stream_and_keeps_its_output() {
    let (_release, hold) = mpsc::channel::<()>();
    let server = Server::one(vec![
        server::chunked_head(200, "text/event-stream"),
        Step::Chunk(content("slow ").into_bytes()),
        Step::WaitFor(hold),
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--timeout", "0.5", "hi"])
        .run();
    assert_eq!(out.code, 4, "{}", out.render());
    assert_eq!(out.stdout(), "slow ");
    assert!(
        out.stderr.ends_with("took longer than 0.5s (--timeout)\n"),
        "{}",
        out.stderr
    );
}
