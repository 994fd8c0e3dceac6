//! The prompt on stdin: read once, held once, and capped at 64 MiB like every other input, in a
//! single run and in a chat. Peak memory is read from /proc while the child runs.

use std::time::Duration;

use crate::server::{self, Server, Step, unused_port};
use crate::util::{finish_measuring, gptstream};

const MIB: usize = 1024 * 1024;
const CAP: usize = 64 * MIB;

#[test]
fn harden12_a_prompt_on_stdin_past_64_mib_is_exit_2_and_nothing_is_sent() {
    // Nothing listens there: a request would be exit 4, not 2.
    let out = gptstream()
        .env(
            "OPENAI_BASE_URL",
            &format!("http://127.0.0.1:{}/v1", unused_port()),
        )
        .args(["-q", "--retries", "0", "summarize"])
        .stdin(vec![b'a'; CAP + 1])
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: stdin is larger than 64 MiB, the most a prompt may be (far more than a model's context holds)\n"
    );
}

#[test]
fn harden12_a_60_mib_prompt_on_stdin_is_held_once_and_sent_exactly() {
    let line = "the quick brown fox jumps over the lazy dog\n";
    let prompt = line.repeat(60 * MIB / line.len());
    // The server waits before answering, so the peak is sampled with the request sent.
    let mut steps = vec![Step::Sleep(Duration::from_millis(300))];
    steps.extend(server::sse(&server::hello_chunks()));
    let server = Server::one(steps);
    let child = gptstream()
        .server(&server)
        .args(["-q", "summarize"])
        .stdin(prompt.clone())
        .spawn();
    let (out, peak_kib) = finish_measuring(child);
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello, world!\n--- stderr\n"
    );
    let sent = server.request().json();
    assert!(
        sent["messages"][0]["content"].as_str() == Some(&format!("summarize\n\n{prompt}")),
        "the prompt was not sent exactly"
    );
    // Held once, the peak is the prompt plus the program (a few MiB); each copy (the user
    // message's, the joined one's) added another 60 MiB, three in all before.
    let prompt_kib = (prompt.len() / 1024) as u64;
    assert!(peak_kib > 0, "the peak is read from /proc");
    assert!(
        peak_kib < prompt_kib + 20 * 1024,
        "peak {peak_kib} KiB for a {prompt_kib} KiB prompt"
    );
}

#[test]
fn harden12_a_chat_line_past_64_mib_is_not_sent_and_the_chat_goes_on() {
    let server = Server::one(server::sse(&server::hello_chunks()));
    let mut input = vec![b'x'; CAP + 1];
    input.extend_from_slice(b"\nhi\n");
    let child = gptstream()
        .server(&server)
        .args(["--chat", "-q"])
        .stdin(input)
        .spawn();
    let (out, peak_kib) = finish_measuring(child);
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello, world!\n\n--- stderr\ngptstream: a line longer than 64 MiB was not sent\n"
    );
    assert_eq!(
        server.request().json()["messages"],
        serde_json::json!([{"role": "user", "content": "hi"}])
    );
    // At most the cap is kept, then the line is dropped as it comes: never a copy of it.
    assert!(
        peak_kib < (CAP / 1024 + 20 * 1024) as u64,
        "peak {peak_kib} KiB"
    );
}
