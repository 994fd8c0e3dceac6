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
