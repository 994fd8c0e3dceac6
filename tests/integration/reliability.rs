//! Retries, fallbacks and timeouts: nothing printed twice, nothing lost, no hang.

use std::sync::mpsc;
use std::time::Duration;

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
    assert_eq!(server.connections(), 1, "the retry reuses the connection");
}

/// A 429 asking for `retry_after`: no retry, exit 3 at once (a retry or a 60 s wait would run
/// into the test's patience: the script serves one request), and one line naming the wait.
fn a_429_that_asks_too_much(retry_after: &str, asked: &str) {
    let server = Server::one(json_error(
        429,
        &format!("Retry-After: {retry_after}\r\n"),
        "Rate limit reached",
    ));
    let out = gptstream().server(&server).args(["-q", "hi"]).run();
    assert_eq!(
        out.render(),
        format!(
            "status: 3\n--- stdout\n\n--- stderr\n\
             gptstream: HTTP 429 Too Many Requests (x): Rate limit reached \
             (the server asks to wait {asked} before a retry; gptstream waits at most 60s)\n"
        )
    );
}

/// Issue #12, defect 2: a `Retry-After` date too far to represent used to panic ("overflow when
/// adding duration to instant"). It is a very long wait: no retry, exit 3 at once, one line.
#[test]
fn defect2_a_retry_after_date_too_far_to_represent_exits_3_at_once_without_panic() {
    a_429_that_asks_too_much(
        "Fri, 31 Dec 500000000000 23:59:59 GMT",
        "more than 10000 years",
    );
}

/// Issue #12, defect 2: `Retry-After: 86400` used to wait the 60 s cap and retry anyway.
#[test]
fn defect2_a_retry_after_longer_than_the_cap_is_not_retried_and_the_wait_is_named() {
    a_429_that_asks_too_much("86400", "86400s");
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
        format!(
            "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 404 Not Found (x): no such model \
             (POST {}/chat/completions)\n",
            server.base_url()
        )
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
    let port = server::unused_port();
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
         finish_reason=stop usage=none ttft_ms=* duration_ms=*\n"
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
    let (_release, steps) = server::stalls_after("slow ");
    let server = Server::one(steps);
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

/// A stream of 100 copies of `chunk` (far more than a pipe holds), then silence, and a run of it
/// with `--timeout 2` whose `pipes` ("stdout", "stderr") nobody reads. Returns the exit and
/// whatever stderr said, if it was read, and the server's host.
fn timed_out_while_blocked(chunk: &str, pipes: &[&str]) -> (crate::util::Output, String) {
    let (_release, hold) = mpsc::channel::<()>();
    let mut steps = vec![server::chunked_head(200, "text/event-stream")];
    for _ in 0..100 {
        steps.push(Step::Chunk(chunk.as_bytes().to_vec()));
    }
    steps.push(Step::WaitFor(hold));
    let server = Server::one(steps);
    let mut child = gptstream()
        .server(&server)
        .args(["--timeout", "2", "hi"])
        .spawn();
    let stdout = pipes.contains(&"stdout").then(|| child.stdout.take());
    let stderr = pipes.contains(&"stderr").then(|| child.stderr.take());
    // The run must end by itself; if it does not, this fails after the test's patience.
    let out = crate::util::finish(child);
    drop((stdout, stderr));
    let host = server.base_url();
    let host = host.trim_start_matches("http://").trim_end_matches("/v1");
    (out, host.to_owned())
}

#[test]
fn the_total_timeout_ends_a_run_whose_stdout_nobody_reads() {
    let (out, host) = timed_out_while_blocked(&content(&"words ".repeat(500)), &["stdout"]);
    assert_eq!(
        out.render(),
        format!(
            "status: 4\n--- stdout\n\n--- stderr\n\
             gptstream: timed out: the request to {host} took longer than 2s (--timeout); \
             the answer could not be stopped in time (is output blocked?)\n"
        )
    );
}

#[test]
fn a_reader_that_leaves_after_the_total_timeout_fired_is_still_a_clean_end() {
    // `gptstream --timeout 1 | less`, paused past the timeout, then `q`: the write that was stuck
    // fails with a broken pipe, which is success (exit 0) as it is without a timeout.
    let (_release, hold) = mpsc::channel::<()>();
    let mut steps = vec![server::chunked_head(200, "text/event-stream")];
    for _ in 0..100 {
        steps.push(Step::Chunk(content(&"words ".repeat(500)).into_bytes()));
    }
    steps.push(Step::WaitFor(hold));
    let server = Server::one(steps);
    let mut child = gptstream()
        .server(&server)
        .args(["-q", "--timeout", "0.5", "hi"])
        .spawn();
    let stdout = child.stdout.take();
    // Past the timeout, well before the watchdog's 3 s of patience.
    std::thread::sleep(Duration::from_millis(2000));
    drop(stdout);
    let out = crate::util::finish(child);
    assert_eq!(out.render(), "status: 0\n--- stdout\n\n--- stderr\n");
}

#[test]
fn the_total_timeout_ends_a_run_whose_stdout_and_stderr_nobody_reads() {
    // The reasoning fills stderr: the run must end without a word on it.
    let reasoning = server::delta(
        serde_json::json!({"reasoning_content": "thinking ".repeat(500)}),
        None,
    );
    let (out, _) = timed_out_while_blocked(&reasoning, &["stdout", "stderr"]);
    assert_eq!(out.code, 4, "{}", out.render());
}

#[test]
fn the_total_timeout_is_per_request_and_does_not_count_a_tool_s_run() {
    let scratch = crate::util::Scratch::new("timeout-tool");
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"slow","parameters":{"type":"object","properties":{}}}"#,
    );
    let call = server::delta(
        serde_json::json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"slow","arguments":"{}"}}]}),
        None,
    );
    let server = Server::start(vec![
        sse(&[call, finish("tool_calls"), DONE.to_owned()]),
        sse(&[content("done"), finish("stop"), DONE.to_owned()]),
    ]);
    // Each request takes milliseconds; the tool between them takes longer than --timeout.
    let out = gptstream()
        .server(&server)
        .args([
            "--timeout",
            "1",
            "--tools",
            &tools,
            "--tool-exec",
            "slow=sleep 1.5; echo ok",
            "-q",
            "go",
        ])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\ndone\n--- stderr\n");
}

/// A CONNECT proxy on 127.0.0.1 for one connection; it reports the request line it got.
fn connect_proxy() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                break;
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let _ = tx.send(request_line.trim_end().to_owned());
        let upstream = TcpStream::connect(target).unwrap();
        let mut client_write = client.try_clone().unwrap();
        client_write
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        let mut upstream_read = upstream.try_clone().unwrap();
        let mut upstream_write = upstream;
        std::thread::spawn(move || std::io::copy(&mut upstream_read, &mut client_write));
        let _ = std::io::copy(&mut reader, &mut upstream_write);
    });
    (address, rx)
}

#[test]
fn the_proxy_flag_and_the_proxy_environment_are_used() {
    for via_env in [false, true] {
        let server = Server::one(sse(&hello_chunks()));
        let (proxy, used) = connect_proxy();
        let command = gptstream().server(&server);
        let command = if via_env {
            command.env("HTTP_PROXY", &proxy)
        } else {
            command.args(["--proxy", &proxy])
        };
        let out = command.args(["-q", "hi"]).run();
        assert_eq!(
            out.render(),
            "status: 0\n--- stdout\nHello, world!\n--- stderr\n",
            "env: {via_env}"
        );
        let port = server
            .base_url()
            .split(':')
            .nth(2)
            .unwrap()
            .trim_end_matches("/v1")
            .to_owned();
        assert_eq!(
            used.recv_timeout(crate::server::PATIENCE).unwrap(),
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1"),
            "env: {via_env}"
        );
    }
}

/// A gzip-compressed stream, sync-flushed after each delta, still reaches stdout delta by delta:
/// the server sends the second delta only after the first is on stdout.
#[test]
fn a_gzip_stream_still_streams_delta_by_delta() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let next_piece = |text: &[u8], encoder: &mut GzEncoder<Vec<u8>>| {
        encoder.write_all(text).unwrap();
        encoder.flush().unwrap();
        std::mem::take(encoder.get_mut())
    };
    let first = next_piece(content("zip").as_bytes(), &mut encoder);
    let second = next_piece(content("ped").as_bytes(), &mut encoder);
    let mut last = next_piece(
        [finish("stop"), DONE.to_owned()].concat().as_bytes(),
        &mut encoder,
    );
    last.extend(encoder.finish().unwrap());

    let (seen, wait_seen) = mpsc::channel();
    let server = Server::one(vec![
        Step::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
        ),
        Step::Chunk(first),
        Step::WaitFor(wait_seen),
        Step::Chunk(second),
        Step::Chunk(last),
        Step::EndChunks,
    ]);
    let mut child = gptstream().server(&server).args(["-q", "hi"]).spawn();
    let stdout = crate::util::drain(child.stdout.take().unwrap());
    crate::util::expect_output(&stdout, b"zip");
    seen.send(()).unwrap();
    crate::util::expect_output(&stdout, b"ped");
    let out = crate::util::finish(child);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert!(
        server
            .request()
            .header("accept-encoding")
            .unwrap_or_default()
            .contains("gzip")
    );
}

/// A listener whose accept queue is full, so that a new connection's SYN goes unanswered and
/// connecting stalls, as with a firewalled host. `None` if the kernel accepts them all anyway.
pub fn stalled_listener() -> Option<(std::net::TcpListener, Vec<std::net::TcpStream>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // std listens with a backlog of 128; the queue is full a little after that.
    for _ in 0..1024 {
        match std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => return Some((listener, queued)),
        }
    }
    None
}

#[test]
fn a_connect_that_stalls_hits_the_connect_timeout() {
    let Some((listener, _queued)) = stalled_listener() else {
        panic!("could not fill the accept queue on 127.0.0.1 to make a connect stall");
    };
    let port = listener.local_addr().unwrap().port();
    let out = gptstream()
        .env("OPENAI_BASE_URL", &format!("http://127.0.0.1:{port}/v1"))
        .args(["--connect-timeout", "0.3", "--retries", "0", "hi"])
        .run();
    assert_eq!(
        out.render(),
        format!(
            "status: 4\n--- stdout\n\n--- stderr\ngptstream: timed out connecting to 127.0.0.1:{port} after 0.3s (--connect-timeout)\n"
        )
    );
}
