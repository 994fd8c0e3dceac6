//! Hostile or broken servers: memory stays bounded by the line cap, and each case ends with a
//! clear error or is skipped as the spec says, never a panic or a hang. Peak memory is read from
//! /proc while the child runs.

use crate::server::{self, DONE, Server, Step, content, finish};
use crate::util::{finish_measuring, gptstream};

const MIB: usize = 1024 * 1024;

/// A body of `total` bytes of `unit` repeated, sent as 1 MiB HTTP chunks, after `prefix`.
fn flood(prefix: &[u8], unit: &[u8], total: usize, suffix: &[u8]) -> Vec<Step> {
    let block: Vec<u8> = unit
        .iter()
        .copied()
        .cycle()
        .take(MIB - MIB % unit.len())
        .collect();
    let mut steps = vec![
        server::chunked_head(200, "text/event-stream"),
        Step::Chunk(prefix.to_vec()),
    ];
    steps.extend((0..total / block.len()).map(|_| Step::Chunk(block.clone())));
    steps.push(Step::Chunk(suffix.to_vec()));
    // An empty chunk would end a chunked body early.
    steps.retain(|step| !matches!(step, Step::Chunk(bytes) if bytes.is_empty()));
    steps.push(Step::EndChunks);
    steps
}

fn run(steps: Vec<Step>) -> (crate::util::Output, u64) {
    let server = Server::one(steps);
    let child = gptstream()
        .server(&server)
        .args(["-q", "--retries", "0", "hi"])
        .spawn();
    finish_measuring(child)
}

#[test]
fn a_64_mib_line_without_a_newline_is_refused_within_bounded_memory() {
    let (out, peak_kib) = run(flood(b"data: ", b"x", 64 * MIB, b"\n\n"));
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(
        out.stderr,
        "gptstream: an event-stream line is longer than 16777216 bytes; refusing to buffer it\n"
    );
    // The 16 MiB line cap plus the program itself; a decoder that kept the line would need 64+.
    assert!(peak_kib < 40 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn endless_comments_and_tiny_events_keep_memory_flat_and_the_answer_intact() {
    let answer = [content("still here"), finish("stop"), DONE.to_owned()].concat();
    for (name, unit) in [
        ("comments", &b": keep-alive\n"[..]),
        ("empty chunks", b"data: {}\n\n"),
    ] {
        let (out, peak_kib) = run(flood(b"", unit, 32 * MIB, answer.as_bytes()));
        assert_eq!(
            out.render(),
            "status: 0\n--- stdout\nstill here\n--- stderr\n",
            "{name}"
        );
        assert!(peak_kib < 24 * 1024, "{name}: peak RSS {peak_kib} KiB");
    }
}

#[test]
fn random_bytes_invalid_utf8_and_deep_nesting_end_cleanly() {
    let deep = format!("data: {}{}\n\n", "[".repeat(10_000), "]".repeat(10_000));
    let random: Vec<u8> = (0u32..200_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        ("deep nesting", deep.into_bytes(), 5),
        ("random bytes", random, 5),
        (
            "invalid UTF-8 in content",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\xFF\"}}]}\n\n".to_vec(),
            5,
        ),
        ("chunk that is not an object", b"data: 42\n\n".to_vec(), 5),
    ];
    for (name, body, code) in cases {
        let server = Server::one(vec![
            server::chunked_head(200, "text/event-stream"),
            Step::Chunk(body),
            Step::EndChunks,
        ]);
        let out = gptstream()
            .server(&server)
            .args(["--retries", "0", "hi"])
            .run();
        assert_eq!(out.code, code, "{name}: {}", out.render());
        assert!(
            out.stderr.starts_with("gptstream: "),
            "{name}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
    }
}

#[test]
fn a_content_length_that_lies_is_a_truncated_stream() {
    let body = [content("cut"), finish("stop")].concat();
    let server = Server::one(vec![
        Step::Raw(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{}",
                body.len() + 1000,
                content("cut")
            )
            .into_bytes(),
        ),
        Step::Close,
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--retries", "0", "hi"])
        .run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(out.stdout(), "cut");
}

/// A server that answers every request with `head`, then `mib` MiB of `unit` over and over, then
/// `tail`, or less if the client hangs up first. Returns its base URL, and a function that stops
/// it and says how many connections it accepted.
fn huge_head(
    head: &'static [u8],
    unit: &'static [u8],
    mib: usize,
    tail: &'static [u8],
) -> (String, impl FnOnce() -> usize) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let block: Vec<u8> = unit.iter().copied().cycle().take(MIB).collect();
    let accepting = std::thread::spawn(move || {
        let mut connections = 0;
        while !stopped.load(Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            };
            connections += 1;
            let block = block.clone();
            std::thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let _ = reader.read_exact(&mut vec![0; length]);
                let mut stream = stream;
                if stream.write_all(head).is_err() {
                    return;
                }
                for _ in 0..mib {
                    if stream.write_all(&block).is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(tail);
            });
        }
        connections
    });
    let stop_and_count = move || {
        stop.store(true, Ordering::SeqCst);
        accepting.join().unwrap()
    };
    (base, stop_and_count)
}

#[test]
fn huge_response_headers_are_refused_within_bounded_memory_and_not_retried() {
    let answer =
        b"\r\nContent-Type: text/event-stream\r\nContent-Length: 14\r\n\r\ndata: [DONE]\n\n";
    let cases: [(&str, &[u8], usize, &[u8]); 2] = [
        // Bounded only by the client hanging up (a terabyte).
        (
            "an endless header",
            b"HTTP/1.1 200 OK\r\nX-Endless: ",
            1 << 20,
            b"",
        ),
        (
            "a 100 MB header value",
            b"HTTP/1.1 200 OK\r\nX-Big: ",
            100,
            answer,
        ),
    ];
    for (name, head, mib, tail) in cases {
        let (base, stop) = huge_head(head, b"a", mib, tail);
        // The default retries: a server that sends such headers will send them again.
        let child = gptstream()
            .env("OPENAI_BASE_URL", &base)
            .args(["-q", "hi"])
            .spawn();
        let (out, peak_kib) = finish_measuring(child);
        let connections = stop();
        let host = base.trim_start_matches("http://").trim_end_matches("/v1");
        assert_eq!(
            out.render(),
            format!(
                "status: 4\n--- stdout\n\n--- stderr\n\
                 gptstream: the response headers from {host} are larger than 32768 bytes\n"
            ),
            "{name}"
        );
        assert_eq!(connections, 1, "{name}: retried");
        assert!(peak_kib < 24 * 1024, "{name}: peak RSS {peak_kib} KiB");
    }
    // Up to the limit, a large head is fine: the whole head here is 32768 bytes.
    let answer = [content("ok"), finish("stop"), DONE.to_owned()].concat();
    let fill =
        32768 - "HTTP/1.1 200 OK\r\nX-Big: \r\nContent-Type: text/event-stream\r\n\r\n".len();
    let response = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Type: text/event-stream\r\n\r\n{answer}",
        "a".repeat(fill)
    );
    let server = Server::one(vec![Step::Raw(response.into_bytes()), Step::Close]);
    let out = gptstream().server(&server).args(["-q", "hi"]).run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
}
