//! The other ways to ask: `--no-stream`, several choices (`-n`, `--choice`), `--verbose`, and the
//! timing figures of the summary.

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{DONE, Server, Step, full, hello_chunks, sse};
use crate::util::gptstream;

/// One `data:` event whose chunk has a delta for choice `index`.
fn choice_delta(index: u64, delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "test-model",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {chunk}\n\n")
}

/// Two choices whose deltas interleave, as servers send them for `n: 2`.
fn two_choices() -> Vec<String> {
    vec![
        choice_delta(0, json!({"content": "Red"}), None),
        choice_delta(1, json!({"content": "Blu"}), None),
        choice_delta(1, json!({"content": "e"}), Some("stop")),
        choice_delta(0, json!({"content": " apple"}), Some("stop")),
        DONE.to_owned(),
    ]
}

/// The same answer as [`hello_chunks`], as one non-streamed completion.
fn hello_completion() -> String {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, world!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    })
    .to_string()
}

/// The `--json` events without the end event's timing fields, consecutive content deltas of a
/// choice joined (a stream splits the text where a whole answer has one delta).
fn events(stdout: &str) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    for line in stdout.lines() {
        let mut event: Value = serde_json::from_str(line).unwrap();
        if let Some(object) = event.as_object_mut().filter(|o| o["type"] == "end") {
            for field in ["duration_ms", "time_to_first_token_ms", "tokens_per_second"] {
                object.remove(field);
            }
        }
        if let Some(last) = events.last_mut()
            && event["type"] == "content"
            && last["type"] == "content"
            && last["choice"] == event["choice"]
        {
            let joined = format!(
                "{}{}",
                last["delta"].as_str().unwrap(),
                event["delta"].as_str().unwrap()
            );
            last["delta"] = Value::from(joined);
            continue;
        }
        events.push(event);
    }
    events
}

#[test]
fn no_stream_gives_the_same_output_and_events_as_streaming() {
    for json_mode in [false, true] {
        let flags: &[&str] = if json_mode { &["--json"] } else { &[] };
        let streamed = Server::one(sse(&hello_chunks()));
        let whole = Server::one(full(200, "application/json", &hello_completion()));
        let a = gptstream().server(&streamed).args(flags).arg("hi").run();
        let b = gptstream()
            .server(&whole)
            .args(flags)
            .args(["--no-stream", "hi"])
            .run();
        assert_eq!(a.code, 0, "{}", a.render());
        if json_mode {
            assert_eq!(events(&a.stdout()), events(&b.stdout()));
        } else {
            assert_eq!(a.render(), b.render());
        }
        let sent = whole.request().json();
        assert_eq!(sent["stream"], false);
        assert!(sent.get("stream_options").is_none(), "{sent}");
        assert_eq!(streamed.request().json()["stream"], true);
    }
}

#[test]
fn several_choices_print_one_after_another_never_interleaved() {
    let server = Server::one(sse(&two_choices()));
    let out = gptstream().server(&server).args(["-n", "2", "hi"]).run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nRed apple\nBlue\n--- stderr\n[choice 0]\n[choice 1]\n\
         finish_reason=stop finish_reason[1]=stop usage=none ttft_ms=* duration_ms=*\n"
    );
    assert_eq!(server.request().json()["n"], 2);
}

#[test]
fn choice_k_streams_only_that_choice() {
    let server = Server::one(sse(&two_choices()));
    let out = gptstream()
        .server(&server)
        .args(["-n", "2", "--choice", "1", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), "Blue");
    assert!(!out.stderr.contains("[choice"), "{}", out.stderr);
}

#[test]
fn defect10_choice_k_is_the_choice_that_is_saved() {
    let scratch = crate::util::Scratch::new("choice-save");
    let saved = scratch.path("chat.json");
    let server = Server::one(sse(&two_choices()));
    let out = gptstream()
        .server(&server)
        .args(["-n", "2", "--choice", "1", "--save", &saved, "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        on_disk,
        json!([{"role":"user","content":"hi"},{"role":"assistant","content":"Blue"}])
    );
}

#[test]
fn json_events_carry_their_choice() {
    let server = Server::one(sse(&two_choices()));
    let out = gptstream()
        .server(&server)
        .args(["-n", "2", "--json", "hi"])
        .run();
    let deltas: Vec<(u64, String)> = out
        .json_lines()
        .iter()
        .filter(|e| e["type"] == "content")
        .map(|e| {
            (
                e["choice"].as_u64().unwrap(),
                e["delta"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        deltas,
        [(0, "Red"), (1, "Blu"), (1, "e"), (0, " apple")].map(|(c, d)| (c, d.to_owned()))
    );
}

#[test]
fn a_choice_beyond_n_is_a_usage_error() {
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["-n", "2", "--choice", "2", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: --choice 2 needs -n 3 or more (choices count from 0)\n"
    );
}

#[test]
fn verbose_shows_request_and_response_heads_with_secrets_hidden() {
    let key = "sk-verbose-canary-123456";
    let server = Server::one(vec![
        Step::Raw(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nx-request-id: req-42\r\n\
                 set-cookie: session={key}\r\nx-echo: {key}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        ),
        Step::Raw(hello_chunks().concat().into_bytes()),
        Step::Close,
    ]);
    let out = gptstream()
        .server(&server)
        .env("OPENAI_API_KEY", key)
        .args(["-v", "-q", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), "Hello, world!");
    let url = format!("{}/chat/completions", server.base_url());
    for expected in [
        format!("> POST {url}\n"),
        "> Authorization: Bearer ***\n".to_owned(),
        "< HTTP/1.1 200 OK\n".to_owned(),
        "< x-request-id: req-42\n".to_owned(),
        "< set-cookie: ***\n".to_owned(),
        "< x-echo: ***\n".to_owned(),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "{expected:?} in\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains(key), "{}", out.stderr);
}

#[test]
fn the_summary_times_the_first_token_and_the_rate() {
    let chunks = hello_chunks();
    let mut steps = sse(&chunks[..1]);
    steps.pop(); // keep the body open
    steps.push(Step::Sleep(Duration::from_millis(150)));
    steps.push(Step::Chunk(chunks[1].clone().into_bytes()));
    // Generation takes a while too, so the rate is not lost in the rounding of the times.
    steps.push(Step::Sleep(Duration::from_millis(100)));
    steps.extend(
        chunks[2..]
            .iter()
            .map(|c| Step::Chunk(c.clone().into_bytes())),
    );
    steps.push(Step::EndChunks);
    let server = Server::one(steps);
    let out = gptstream().server(&server).arg("hi").run();
    assert_eq!(out.code, 0, "{}", out.render());
    let field = |name: &str| -> f64 {
        let prefix = format!("{name}=");
        let word = out
            .stderr
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {name} in {}", out.stderr));
        word.parse().unwrap()
    };
    let (ttft, duration, rate) = (
        field("ttft_ms"),
        field("duration_ms"),
        field("tokens_per_second"),
    );
    assert!(
        ttft >= 150.0,
        "the first token came after the pause: {ttft}"
    );
    assert!(duration >= ttft, "{duration} < {ttft}");
    let expected = 4.0 / ((duration - ttft) / 1000.0);
    assert!(
        (rate - expected).abs() <= expected * 0.05 + 0.1,
        "{rate} vs {expected}"
    );
}

/// The `end` event's `tokens_per_second`, and whether the text summary has the field.
fn rates(server: &Server, flags: &[&str]) -> (Value, bool) {
    let json = gptstream()
        .server(server)
        .args(flags)
        .args(["--json", "hi"])
        .run();
    assert_eq!(json.code, 0, "{}", json.render());
    let end = json.json_lines().pop().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    let text = gptstream().server(server).args(flags).arg("hi").run();
    assert_eq!(text.code, 0, "{}", text.render());
    (
        end["tokens_per_second"].clone(),
        text.stderr.contains("tokens_per_second="),
    )
}

#[test]
fn compat5_a_rate_is_given_only_for_tokens_that_streamed_over_several_reads() {
    // The whole stream in one read, a whole answer, a replay: no rate to speak of.
    let body: String = hello_chunks().concat();
    let one_read = Server::start(vec![
        full(200, "text/event-stream", &body),
        full(200, "text/event-stream", &body),
    ]);
    assert_eq!(rates(&one_read, &[]), (Value::Null, false));
    let whole = Server::start(vec![
        full(200, "application/json", &hello_completion()),
        full(200, "application/json", &hello_completion()),
    ]);
    assert_eq!(rates(&whole, &["--no-stream"]), (Value::Null, false));
    let replay = format!("{}/examples/hello.sse", env!("CARGO_MANIFEST_DIR"));
    let out = gptstream().args(["--json", "--replay", &replay]).run();
    assert_eq!(
        out.json_lines().pop().unwrap()["tokens_per_second"],
        Value::Null
    );

    // Tokens over two reads, the second sent once the first delta is out: a real stream.
    let mut answers = Vec::new();
    let mut releases = Vec::new();
    for _ in 0..2 {
        let (release, hold) = std::sync::mpsc::channel();
        let chunks = hello_chunks();
        let mut steps = sse(&chunks[..2]);
        steps.pop();
        steps.push(Step::WaitFor(hold));
        steps.extend(
            chunks[2..]
                .iter()
                .map(|c| Step::Chunk(c.clone().into_bytes())),
        );
        steps.push(Step::EndChunks);
        answers.push(steps);
        releases.push(release);
    }
    let streamed = Server::start(answers);
    for (flags, needle) in [(&["--json"][..], "\"delta\":\"Hello\""), (&[][..], "Hello")] {
        let mut child = gptstream().server(&streamed).args(flags).arg("hi").spawn();
        let stdout = crate::util::drain(child.stdout.take().unwrap());
        crate::util::wait_for(&stdout, needle);
        drop(releases.remove(0));
        let out = crate::util::finish(child);
        assert_eq!(out.code, 0, "{}", out.render());
        let rest: Vec<u8> = stdout.iter().flatten().collect();
        let rest = String::from_utf8(rest).unwrap();
        if flags.is_empty() {
            assert!(out.stderr.contains("tokens_per_second="), "{}", out.stderr);
        } else {
            let end: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
            assert!(end["tokens_per_second"].is_f64(), "{end}");
        }
    }
}

#[test]
fn harden14_a_choice_the_request_did_not_ask_for_is_a_malformed_stream() {
    // Choice 1 of a one-choice request, then a huge index: refused at the first, text kept.
    let huge = choice_delta(u64::MAX, json!({"content": "x".repeat(1 << 20)}), None);
    for (flags, stream) in [
        (
            &[][..],
            vec![
                crate::server::content("Hi"),
                choice_delta(1, json!({"content": "hostile"}), None),
            ],
        ),
        (&[][..], vec![crate::server::content("Hi"), huge.clone()]),
        (
            &["-n", "2"][..],
            vec![
                crate::server::content("Hi"),
                choice_delta(2, json!({"content": "x"}), None),
            ],
        ),
    ] {
        let mut stream = stream;
        stream.extend([crate::server::finish("stop"), DONE.to_owned()]);
        let server = Server::one(sse(&stream));
        let out = gptstream()
            .server(&server)
            .args(flags)
            .args(["-q", "--retries", "0", "hi"])
            .run();
        let n = if flags.is_empty() {
            "1 choice"
        } else {
            "2 choices"
        };
        let index = if flags.is_empty() && stream[1].contains("hostile") {
            "1".to_owned()
        } else if flags.is_empty() {
            u64::MAX.to_string()
        } else {
            "2".to_owned()
        };
        assert_eq!(out.code, 5, "{}", out.render());
        assert!(out.stdout().starts_with("Hi"), "{}", out.render());
        assert!(
            out.stderr.ends_with(&format!(
                "gptstream: malformed chunk: the server sent choice {index}, but the request asked for {n}\n"
            )),
            "{}",
            out.render()
        );
    }
    // The same over the JSON sink.
    let server = Server::one(sse(&[
        crate::server::content("Hi"),
        choice_delta(1, json!({"content": "x"}), None),
        DONE.to_owned(),
    ]));
    let out = gptstream().server(&server).args(["--json", "hi"]).run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert_eq!(out.json_lines().last().unwrap()["type"], "error");
}
