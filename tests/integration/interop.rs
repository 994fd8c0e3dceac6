//! Interop: the binary against real OpenAI-compatible servers that we did not write, a LiteLLM
//! proxy and llama.cpp's `llama-server` (with a tiny hand-built model whose answers are known),
//! on 127.0.0.1. `scripts/interop/run` installs and starts them, sets `GPTSTREAM_INTEROP_*`, and
//! runs these tests with `--ignored`; a plain `cargo test` skips them and stays offline.
//!
//! Where a test goes through [`Recorder`], it also replays the body the server really sent with
//! `--replay` and checks that the same events come out as in the live run.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use serde_json::{Value, json};

use crate::util::{Gptstream, Output, Scratch, gptstream};

/// LiteLLM's `mock-text` model streams this, three characters per chunk (config.yaml).
const LITELLM_TEXT: &str = "Hello from LiteLLM: ünïcödé, \"quotes\", and a\nnew line.";
/// The tiny model's whole answer: "Hello", " from", " llama", ".cpp!", then end of turn.
const LLAMA_TEXT: &str = "Hello from llama.cpp!";

const WEATHER_TOOL: &str = r#"[{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]"#;

/// One server under test: where it is and the key it accepts.
struct Target {
    base_url: String,
    key: String,
}

fn target(name: &str) -> Target {
    let var = format!("GPTSTREAM_INTEROP_{name}");
    let base_url = std::env::var(&var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/interop/run, which starts the server and sets it")
    });
    let key =
        std::env::var(format!("{var}_KEY")).unwrap_or_else(|_| panic!("{var}_KEY is not set"));
    Target { base_url, key }
}

fn litellm() -> Target {
    target("LITELLM")
}

fn llama() -> Target {
    target("LLAMA")
}

impl Target {
    fn gptstream(&self) -> Gptstream {
        self.at(&self.base_url)
    }

    fn at(&self, base_url: &str) -> Gptstream {
        gptstream()
            .env("OPENAI_BASE_URL", base_url)
            .env("OPENAI_API_KEY", &self.key)
    }

    /// Runs gptstream through a [`Recorder`]: its output and the response body the server sent.
    fn recorded(&self, args: &[&str]) -> (Output, Vec<u8>) {
        let recorder = Recorder::start(&self.base_url);
        let out = self.at(&recorder.base_url).args(args).run();
        (out, recorder.body())
    }
}

/// A byte-for-byte TCP relay between gptstream and the server that keeps what the server sent,
/// so a test can replay exactly the body of the live run.
struct Recorder {
    base_url: String,
    response: JoinHandle<Vec<u8>>,
}

impl Recorder {
    fn start(upstream_base_url: &str) -> Recorder {
        let rest = upstream_base_url
            .strip_prefix("http://")
            .expect("an http:// base URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let upstream = authority.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recorder");
        let base_url = format!("http://{}{path}", listener.local_addr().unwrap());
        let response = thread::spawn(move || {
            let (client, _) = listener.accept().expect("gptstream connects");
            let server = TcpStream::connect(&upstream).expect("connect to the server");
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let requests = thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
                let _ = to_server.shutdown(Shutdown::Write);
            });
            let (mut from_server, mut to_client) = (server, client);
            let mut response = Vec::new();
            let mut buffer = [0u8; 16384];
            loop {
                match from_server.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        response.extend_from_slice(&buffer[..n]);
                        if to_client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to_client.shutdown(Shutdown::Both);
            let _ = requests.join();
            response
        });
        Recorder { base_url, response }
    }

    /// The response body, de-chunked.
    fn body(self) -> Vec<u8> {
        let response = self.response.join().expect("the recorder thread");
        let split = find(&response, b"\r\n\r\n").expect("a complete response head");
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        let body = &response[split + 4..];
        assert!(
            !head.contains("content-encoding:"),
            "the recorder cannot replay an encoded body:\n{head}"
        );
        if head.contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_vec()
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = find(chunked, b"\r\n") {
        let size_text = String::from_utf8_lossy(&chunked[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("a chunk size, not {size_text:?}"));
        chunked = &chunked[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&chunked[..size.min(chunked.len())]);
        chunked = &chunked[(size + 2).min(chunked.len())..];
    }
    body
}

/// `--json` events with the `end` event's timings taken out, which differ between two runs.
fn timeless_events(out: &Output) -> Vec<Value> {
    let mut events = out.json_lines();
    for event in &mut events {
        if event["type"] == "end" {
            let end = event.as_object_mut().unwrap();
            for field in ["time_to_first_token_ms", "duration_ms", "tokens_per_second"] {
                assert!(end.remove(field).is_some(), "end has {field}: {end:?}");
            }
        }
    }
    events
}

/// Replays `body` with `args` and checks it gives the same events as the live run `live`.
fn assert_replay_matches(live: &Output, body: &[u8], args: &[&str]) {
    // A directory of its own per call: tests run in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let scratch = Scratch::new(&format!("interop-replay-{call}"));
    let path = scratch.path("body.sse");
    std::fs::write(&path, body).unwrap();
    let replayed = gptstream().args(["--replay", &path]).args(args).run();
    assert_eq!(replayed.code, live.code, "{}", replayed.render());
    assert_eq!(
        timeless_events(&replayed),
        timeless_events(live),
        "the replay of the recorded body differs from the live run; body:\n{}",
        String::from_utf8_lossy(body)
    );
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn content_of(events: &[Value]) -> String {
    of_type(events, "content")
        .iter()
        .map(|e| e["delta"].as_str().expect("a string delta"))
        .collect()
}

fn tools_file(scratch: &Scratch) -> String {
    scratch.file("tools.json", WEATHER_TOOL)
}

// ---------------------------------------------------------------------------------------------
// LiteLLM proxy

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_text_streams_byte_exact() {
    let out = litellm().gptstream().args(["-m", "mock-text", "hi"]).run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), LITELLM_TEXT);
    assert!(
        out.stderr.starts_with("finish_reason=stop prompt_tokens=")
            && out.stderr.lines().count() == 1,
        "{}",
        out.render()
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_json_events_and_their_replay() {
    let (out, body) = litellm().recorded(&["--json", "-m", "mock-text", "hi"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(events[0]["type"], "start", "{}", out.render());
    assert_eq!(events[0]["model"], "mock-text");
    assert_eq!(content_of(&events), LITELLM_TEXT);
    assert_eq!(
        of_type(&events, "finish"),
        [&json!({"type":"finish","choice":0,"reason":"stop"})]
    );
    // LiteLLM sends usage in a chunk whose `choices` is not empty, with its own extra fields.
    let usage = of_type(&events, "usage");
    assert_eq!(usage.len(), 1, "{}", out.render());
    assert!(
        usage[0]["completion_tokens_details"].is_object(),
        "{}",
        usage[0]
    );
    assert!(usage[0]["prompt_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(events.last().unwrap()["type"], "end");
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
    assert_replay_matches(&out, &body, &["--json"]);
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_tool_call_is_assembled_from_fragments() {
    let scratch = Scratch::new("interop-litellm-tools");
    let tools = tools_file(&scratch);
    let (out, body) = litellm().recorded(&["--json", "-m", "tools", "--tools", &tools, "weather?"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    // Three fragments, split mid-token; the id has no "call_" prefix.
    assert_eq!(
        of_type(&events, "tool_call_delta").len(),
        3,
        "{}",
        out.render()
    );
    assert_eq!(
        of_type(&events, "tool_call"),
        [
            &json!({"type":"tool_call","choice":0,"index":0,"id":"toolu_interop_1","name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}})
        ]
    );
    assert_eq!(of_type(&events, "finish")[0]["reason"], "tool_calls");
    assert_replay_matches(&out, &body, &["--json"]);

    let text = litellm()
        .gptstream()
        .args(["-m", "tools", "--tools", &tools, "weather?"])
        .run();
    assert_eq!(text.code, 0, "{}", text.render());
    assert_eq!(
        text.stdout(),
        "{\"id\":\"toolu_interop_1\",\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"unit\":\"celsius\"}}\n"
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_wrong_key_is_a_401_with_its_message() {
    let out = litellm()
        .gptstream()
        .env("OPENAI_API_KEY", "sk-wrong-interop-canary")
        .args(["-m", "mock-text", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 401 Unauthorized: Authentication Error, invalid proxy key\n"
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_rate_limit_before_the_stream() {
    let out = litellm()
        .gptstream()
        .args(["--retries", "0", "--json", "-m", "mock-ratelimit", "hi"])
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(events.len(), 1, "{}", out.render());
    assert_eq!(events[0]["type"], "error");
    assert_eq!(events[0]["status"], 429);
    assert_eq!(events[0]["code"], "429", "LiteLLM's string code, as sent");
    let message = events[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "HTTP 429 Too Many Requests: litellm.RateLimitError: this is a mock rate limit error"
        ),
        "{message}"
    );

    // Retried (429 is transient), each retry said on stderr, then the same error.
    let out = litellm()
        .gptstream()
        .args(["--retries", "1", "-m", "mock-ratelimit", "hi"])
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
    assert_eq!(out.stdout(), "");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.render());
    assert!(lines[0].ends_with("(retry 1 of 1)"), "{}", out.render());
    assert!(
        lines[1].starts_with("gptstream: HTTP 429 Too Many Requests: litellm.RateLimitError"),
        "{}",
        out.render()
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_bad_request_before_the_stream() {
    let out = litellm()
        .gptstream()
        .args(["-m", "mock-toolong", "hi"])
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
    assert_eq!(out.stdout(), "");
    assert!(
        out.stderr
            .starts_with("gptstream: HTTP 400 Bad Request: litellm.ContextWindowExceededError")
            && out.stderr.lines().count() == 1,
        "{}",
        out.render()
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_error_after_the_first_chunks_keeps_the_text() {
    let out = litellm()
        .gptstream()
        .args(["-m", "midstream-error", "hi"])
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\npartial answer then \n--- stderr\n\
         gptstream: the server reported an error (500): litellm.InternalServerError: \
         Gptstream-interopException - interop: upstream went away mid-stream\n"
    );

    let (out, body) = litellm().recorded(&["--json", "-m", "midstream-error", "hi"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(content_of(&events), "partial answer then ");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{}", out.render());
    assert_eq!(last["status"], Value::Null);
    assert_eq!(last["code"], "500");
    // LiteLLM ends the stream after the error object, with no [DONE].
    assert!(!String::from_utf8_lossy(&body).contains("[DONE]"));
    assert_replay_matches(&out, &body, &["--json"]);
}

// ---------------------------------------------------------------------------------------------
// llama.cpp llama-server

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_text_streams_byte_exact_with_usage() {
    let out = llama().gptstream().arg("hi").run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), LLAMA_TEXT);
    // Four answer tokens and the end-of-turn token.
    assert!(
        out.stderr.starts_with("finish_reason=stop prompt_tokens=")
            && out.stderr.contains(" completion_tokens=5 "),
        "{}",
        out.render()
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_json_events_and_their_replay() {
    let (out, body) = llama().recorded(&["--json", "hi"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(events[0]["type"], "start", "{}", out.render());
    assert_eq!(content_of(&events), LLAMA_TEXT);
    assert_eq!(
        of_type(&events, "finish"),
        [&json!({"type":"finish","choice":0,"reason":"stop"})]
    );
    let usage = of_type(&events, "usage");
    assert_eq!(usage.len(), 1, "{}", out.render());
    assert_eq!(usage[0]["completion_tokens"], 5);
    assert!(
        usage[0]["prompt_tokens_details"].is_object(),
        "{}",
        usage[0]
    );
    assert_replay_matches(&out, &body, &["--json"]);
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_tool_call_from_its_own_parser() {
    let scratch = Scratch::new("interop-llama-tools");
    let tools = tools_file(&scratch);
    let (out, body) = llama().recorded(&["--json", "--tools", &tools, "weather in Paris?"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    let calls = of_type(&events, "tool_call");
    assert_eq!(calls.len(), 1, "{}", out.render());
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["arguments"], json!({"city": "Paris"}));
    // llama.cpp makes up a random id, without the "call_" prefix.
    assert!(
        calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{}",
        calls[0]
    );
    assert_eq!(of_type(&events, "finish")[0]["reason"], "tool_calls");
    assert_eq!(content_of(&events), "");
    assert_replay_matches(&out, &body, &["--json"]);
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_accepts_our_tool_results_follow_up() {
    // The model calls get_weather whenever tools are offered, so the loop runs out of rounds:
    // exit 6 (not 3) shows llama.cpp accepted each follow-up with our tool messages.
    let scratch = Scratch::new("interop-llama-exec");
    let tools = tools_file(&scratch);
    let out = llama()
        .gptstream()
        .args([
            "--json",
            "--tools",
            &tools,
            "--tool-exec",
            "get_weather=echo sunny",
        ])
        .args(["--max-tool-rounds", "2", "weather in Paris?"])
        .run();
    assert_eq!(out.code, 6, "{}", out.render());
    let events = out.json_lines();
    let results = of_type(&events, "tool_result");
    assert_eq!(results.len(), 2, "{}", out.render());
    assert_eq!(results[0]["output"], "sunny\n");
    assert_eq!(
        of_type(&events, "start").len(),
        3,
        "three requests: {}",
        out.render()
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_finish_reason_length() {
    let out = llama().gptstream().args(["--max-tokens", "2", "hi"]).run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHello from\n--- stderr\n\
         gptstream: warning: the answer was cut off by the token limit (finish_reason=length); raise --max-tokens\n\
         finish_reason=length prompt_tokens=59 completion_tokens=2 total_tokens=61 ttft_ms=* duration_ms=*\n"
    );

    let out = llama()
        .gptstream()
        .args(["--json", "--max-tokens", "2", "hi"])
        .run();
    assert_eq!(of_type(&out.json_lines(), "finish")[0]["reason"], "length");
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_wrong_key_is_a_401_with_its_message() {
    let out = llama()
        .gptstream()
        .env("OPENAI_API_KEY", "sk-wrong-interop-canary")
        .arg("hi")
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\n\n--- stderr\ngptstream: HTTP 401 Unauthorized: Invalid API Key\n"
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_prompt_over_the_context_is_a_400() {
    let out = llama()
        .gptstream()
        .args(["--json"])
        .stdin("word ".repeat(5000))
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(events.len(), 1, "{}", out.render());
    assert_eq!(events[0]["status"], 400);
    let message = events[0]["message"].as_str().unwrap();
    assert!(
        message.contains("exceeds the available context size"),
        "{message}"
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_chat_keeps_the_history_over_a_pipe() {
    let out = llama()
        .gptstream()
        .args(["--chat", "--json"])
        .stdin("hi\nand again\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(content_of(&events), LLAMA_TEXT.repeat(2));
    // The second prompt carries the first turn: more prompt tokens than the first.
    let usage = of_type(&events, "usage");
    assert_eq!(usage.len(), 2, "{}", out.render());
    assert!(usage[1]["prompt_tokens"].as_u64() > usage[0]["prompt_tokens"].as_u64());
}

// ---------------------------------------------------------------------------------------------
// LiteLLM, /v1/responses (its bridge from a chat-completions provider; `data:` lines only)

/// What the custom provider's `text` model streams (custom_provider.py).
const LITELLM_RESPONSES_TEXT: &str = "Hello from LiteLLM's Responses bridge.";

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_responses_text_usage_and_replay() {
    let scratch = Scratch::new("interop-litellm-responses");
    let recorded = scratch.path("body.sse");
    let out = litellm()
        .gptstream()
        .args([
            "--api",
            "responses",
            "-m",
            "text",
            "--json",
            "--record",
            &recorded,
            "hi",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(content_of(&events), LITELLM_RESPONSES_TEXT);
    assert_eq!(of_type(&events, "finish")[0]["reason"], "stop");
    assert_eq!(of_type(&events, "usage")[0]["output_tokens"], 5);
    let body = std::fs::read(&recorded).unwrap();
    assert!(
        !body.starts_with(b"event:"),
        "LiteLLM sends data: lines only"
    );
    assert_replay_matches(&out, &body, &["--json"]);
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_responses_tool_call_and_loop() {
    let scratch = Scratch::new("interop-litellm-responses-tools");
    let tools = tools_file(&scratch);
    let out = litellm()
        .gptstream()
        .args([
            "--api",
            "responses",
            "-m",
            "tools",
            "--json",
            "--tools",
            &tools,
            "weather?",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    let calls = of_type(&events, "tool_call");
    assert_eq!(calls.len(), 1, "{}", out.render());
    assert_eq!(calls[0]["id"], "toolu_interop_1");
    assert_eq!(
        calls[0]["arguments"],
        json!({"city":"Paris","unit":"celsius"})
    );
    let out = litellm()
        .gptstream()
        .args(["--api", "responses", "-m", "tools", "--tools", &tools])
        .args([
            "--tool-exec",
            "get_weather=echo sunny",
            "--max-tool-rounds",
            "2",
            "weather?",
        ])
        .run();
    assert_eq!(out.code, 6, "{}", out.render());
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_responses_error_after_the_first_deltas_keeps_the_text() {
    let out = litellm()
        .gptstream()
        .args(["--api", "responses", "-m", "midstream-error", "hi"])
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
    assert_eq!(out.stdout(), "partial answer then ");
    assert!(
        out.stderr
            .contains("interop: upstream went away mid-stream"),
        "{}",
        out.render()
    );
}

// ---------------------------------------------------------------------------------------------
// llama.cpp llama-server, /v1/responses

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_responses_text_byte_exact_with_usage_and_its_replay() {
    let scratch = Scratch::new("interop-llama-responses");
    let recorded = scratch.path("body.sse");
    let out = llama()
        .gptstream()
        .args(["--api", "responses", "--json", "--record", &recorded, "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(content_of(&events), LLAMA_TEXT);
    assert_eq!(
        of_type(&events, "finish"),
        [&json!({"type":"finish","choice":0,"reason":"stop"})]
    );
    let usage = of_type(&events, "usage");
    assert_eq!(usage[0]["output_tokens"], 5, "{}", out.render());
    assert!(usage[0]["input_tokens"].as_u64() > Some(0), "{}", usage[0]);
    let body = std::fs::read(&recorded).unwrap();
    assert_replay_matches(&out, &body, &["--json"]);
    let text = llama().gptstream().args(["--api", "responses", "hi"]).run();
    assert_eq!(text.stdout(), LLAMA_TEXT);
    assert!(
        text.stderr.starts_with("finish_reason=stop input_tokens=")
            && text.stderr.contains(" output_tokens=5 "),
        "{}",
        text.render()
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_responses_tool_call_and_a_loop_the_server_accepts() {
    let scratch = Scratch::new("interop-llama-responses-tools");
    let tools = tools_file(&scratch);
    let out = llama()
        .gptstream()
        .args([
            "--api",
            "responses",
            "--json",
            "--tools",
            &tools,
            "weather in Paris?",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    let calls = of_type(&events, "tool_call");
    assert_eq!(calls.len(), 1, "{}", out.render());
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["arguments"], json!({"city": "Paris"}));
    assert_eq!(of_type(&events, "finish")[0]["reason"], "tool_calls");
    // The model calls get_weather whenever tools are offered: exit 6 (not 3) shows the server
    // took each follow-up, our function_call items and their outputs.
    let out = llama()
        .gptstream()
        .args(["--api", "responses", "--json", "--tools", &tools])
        .args([
            "--tool-exec",
            "get_weather=echo sunny",
            "--max-tool-rounds",
            "2",
        ])
        .arg("weather in Paris?")
        .run();
    assert_eq!(out.code, 6, "{}", out.render());
    assert_eq!(of_type(&out.json_lines(), "tool_result").len(), 2);
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_responses_continues_a_saved_conversation() {
    let scratch = Scratch::new("interop-llama-responses-save");
    let saved = scratch.path("chat.json");
    let first = llama()
        .gptstream()
        .args(["--api", "responses", "--json", "--save", &saved, "hi"])
        .run();
    assert_eq!(first.code, 0, "{}", first.render());
    let first_usage = of_type(&first.json_lines(), "usage")[0].clone();
    // The assistant turn goes back as an input message the server accepts.
    let out = llama()
        .gptstream()
        .args(["--api", "responses", "--messages", &saved, "--save", &saved])
        .args(["--json", "and again"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let usage = of_type(&out.json_lines(), "usage")[0].clone();
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(on_disk.as_array().unwrap().len(), 4, "{on_disk}");
    assert_eq!(on_disk[1], json!({"role":"assistant","content":LLAMA_TEXT}));
    // The second prompt carries the first turn, answer included: more input tokens.
    assert!(
        usage["input_tokens"].as_u64() > first_usage["input_tokens"].as_u64(),
        "{usage} vs {first_usage}"
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_responses_reports_a_max_output_tokens_cut_as_completed() {
    // A quirk, recorded in the README: llama-server ends a cut response with
    // response.completed, so the cut shows as finish_reason=stop.
    let out = llama()
        .gptstream()
        .args(["--api", "responses", "--max-tokens", "2", "--json", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(content_of(&events), "Hello from");
    assert_eq!(of_type(&events, "finish")[0]["reason"], "stop");
}

// ---------------------------------------------------------------------------------------------
// --schema on both servers

/// The only answer this schema allows is the tiny model's own text, so llama-server's grammar
/// (made from `response_format`) leaves the model nothing else to say.
const LLAMA_SCHEMA: &str = r#"{"type":"object","properties":{"greeting":{"enum":["Hello from llama.cpp!"]}},"required":["greeting"],"additionalProperties":false}"#;

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_schema_becomes_a_grammar_and_the_answer_validates() {
    let out = llama()
        .gptstream()
        .args(["--schema", LLAMA_SCHEMA, "--json", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let events = out.json_lines();
    assert_eq!(
        of_type(&events, "schema"),
        [&json!({"type":"schema","valid":true,"error":null})]
    );
    let answer: Value = serde_json::from_str(&content_of(&events)).unwrap();
    assert_eq!(answer, json!({"greeting": LLAMA_TEXT}));
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_responses_ignores_text_format_and_the_check_says_so() {
    // A quirk, recorded in the README: llama-server 0.3.36's /v1/responses does not turn
    // `text.format` into a grammar, so the model answers as it would, and that is exit 7.
    let out = llama()
        .gptstream()
        .args(["--api", "responses", "--schema", LLAMA_SCHEMA, "hi"])
        .run();
    assert_eq!(out.code, 7, "{}", out.render());
    assert_eq!(out.stdout(), LLAMA_TEXT);
    assert!(
        out.stderr.contains(
            "gptstream: the answer does not match --schema: the answer is not valid JSON"
        ),
        "{}",
        out.render()
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_passes_the_schema_to_the_provider_under_both_apis() {
    // The `schema-echo` model answers, as JSON, what response_format reached the provider.
    for api in ["chat", "responses"] {
        let out = litellm()
            .gptstream()
            .args(["--api", api, "-m", "schema-echo", "-q"])
            .args([
                "--schema",
                "type, name, strict bool",
                "--schema-name",
                "person",
                "hi",
            ])
            .run();
        assert_eq!(out.code, 0, "{api}: {}", out.render());
        let answer: Value = serde_json::from_str(&out.stdout()).unwrap();
        assert_eq!(
            answer,
            json!({"type":"json_schema","name":"person","strict":true}),
            "{api}"
        );
    }
}

#[test]
fn the_recorder_dechunks_a_body() {
    assert_eq!(
        dechunk(b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"),
        b"hello world"
    );
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn litellm_lists_the_models_of_its_config() {
    let out = litellm().gptstream().arg("--list-models").run();
    assert_eq!(out.code, 0, "{}", out.render());
    // LiteLLM lists every model_name of config.yaml, and we sort them.
    assert_eq!(
        out.stdout(),
        "midstream-error\nmock-ratelimit\nmock-text\nmock-toolong\nschema-echo\ntext\ntools\n"
    );
    let out = litellm()
        .gptstream()
        .args(["--list-models", "--json"])
        .run();
    let objects = out.json_lines();
    assert_eq!(objects.len(), 7, "{}", out.render());
    assert!(objects.iter().all(|model| model["object"] == "model"));
    // Its key check applies to the listing too.
    let out = litellm()
        .gptstream()
        .env("OPENAI_API_KEY", "sk-wrong")
        .arg("--list-models")
        .run();
    assert_eq!(out.code, 3, "{}", out.render());
}

#[test]
#[ignore = "needs the servers that scripts/interop/run starts"]
fn llama_lists_its_model_by_alias() {
    let out = llama().gptstream().arg("--list-models").run();
    assert_eq!(out.render(), "status: 0\n--- stdout\ntiny\n\n--- stderr\n");
}

// MCP: real MCP servers over stdio, the official Python SDK's FastMCP
// (scripts/interop/mcp/server.py) and the reference `@modelcontextprotocol/server-everything`
// from npm, each driven through a whole tool loop by a scripted model on 127.0.0.1.

/// The command that starts a pinned MCP server (`GPTSTREAM_INTEROP_MCP_PYTHON`, `..._EVERYTHING`).
use crate::mcp::tool_results;

fn mcp_command(name: &str) -> String {
    let var = format!("GPTSTREAM_INTEROP_MCP_{name}");
    std::env::var(&var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/interop/run, which installs the server and sets it")
    })
}

/// A model that calls each of `calls` (name, arguments) in turn, one per request, then answers.
fn mcp_model(calls: &[(&str, &str)], answer: &str) -> crate::server::Server {
    use crate::server::{DONE, content, delta, finish, sse};
    let mut scripts: Vec<_> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, arguments))| {
            sse(&[
                delta(
                    json!({"tool_calls":[{"index":0,"id":format!("call_{i}"),"type":"function",
                           "function":{"name":name,"arguments":arguments}}]}),
                    None,
                ),
                finish("tool_calls"),
                DONE.to_owned(),
            ])
        })
        .collect();
    scripts.push(sse(&[content(answer), finish("stop"), DONE.to_owned()]));
    crate::server::Server::start(scripts)
}

/// Processes whose command line holds `marker`, other than ours.
fn processes_with(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = state
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z');
            (pid != std::process::id() && !zombie && cmdline.contains(marker))
                .then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

#[test]
#[ignore = "needs the MCP Python SDK: scripts/interop/run"]
fn mcp_python_sdk_tools_are_listed_as_it_defines_them() {
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--mcp", &mcp_command("PYTHON")])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n\
         add\tinterop-python\tAdds two integers.\n\
         shout\tinterop-python\tUpper-cases a text.\n\
         broken\tinterop-python\tAlways fails.\n\n--- stderr\n"
    );
}

#[test]
#[ignore = "needs the MCP Python SDK: scripts/interop/run"]
fn mcp_python_sdk_runs_a_tool_loop_with_an_error_result_and_leaves_no_process() {
    let marker = format!("gptstream-interop-marker-{}", std::process::id());
    let model = mcp_model(
        &[("add", r#"{"a":2,"b":3}"#), ("broken", "{}")],
        "Five, and broken.",
    );
    let command = format!("py={} {marker}", mcp_command("PYTHON"));
    let out = gptstream()
        .server(&model)
        .args(["--json", "--mcp", &command, "Add 2 and 3, then break."])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let results = tool_results(&out);
    assert_eq!(
        (
            &results[0]["output"],
            &results[0]["server"],
            &results[0]["is_error"]
        ),
        (&json!("5"), &json!("py"), &json!(false))
    );
    assert_eq!(results[1]["is_error"], true, "{}", results[1]);
    let broken = results[1]["output"].as_str().unwrap();
    assert!(
        broken.starts_with("error: ") && broken.contains("this tool is broken"),
        "{broken}"
    );
    let _ = model.request();
    let second = model.request().json();
    assert_eq!(
        second["messages"][2],
        json!({"role":"tool","tool_call_id":"call_0","content":"5"})
    );
    assert_eq!(content_of(&out.json_lines()), "Five, and broken.");
    assert_eq!(
        processes_with(&marker),
        Vec::<String>::new(),
        "the server outlived gptstream"
    );
}

#[test]
#[ignore = "needs the MCP Python SDK: scripts/interop/run"]
fn mcp_python_sdk_works_with_the_responses_api_too() {
    let model = {
        use crate::server::sse;
        let call = r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"shout","arguments":"{\"text\":\"hi\"}"}}"#;
        let done = r#"{"type":"response.completed","response":{"id":"r1","status":"completed","output":[]}}"#;
        let text = r#"{"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"HI it is."}"#;
        crate::server::Server::start(vec![
            sse(&[format!("data: {call}\n\n"), format!("data: {done}\n\n")]),
            sse(&[format!("data: {text}\n\n"), format!("data: {done}\n\n")]),
        ])
    };
    let out = gptstream()
        .server(&model)
        .args([
            "--api",
            "responses",
            "-q",
            "--mcp",
            &mcp_command("PYTHON"),
            "Shout hi",
        ])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHI it is.\n--- stderr\n"
    );
    let first = model.request().json();
    assert_eq!(first["tools"][0]["name"], "add", "flat Responses tools");
    let second = model.request().json();
    let output = second["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call_output")
        .cloned()
        .expect("the tool's result goes back");
    assert_eq!(output["output"], "HI");
}

#[test]
#[ignore = "needs @modelcontextprotocol/server-everything: scripts/interop/run"]
fn mcp_server_everything_sums_shows_an_image_and_never_sees_the_key() {
    let model = mcp_model(
        &[
            ("get-sum", r#"{"a":2,"b":3}"#),
            ("get-tiny-image", "{}"),
            ("get-env", "{}"),
        ],
        "Done.",
    );
    let out = gptstream()
        .server(&model)
        .env("OPENAI_API_KEY", "sk-interop-mcp-canary")
        .args([
            "--json",
            "--mcp",
            &mcp_command("EVERYTHING"),
            "Use the tools.",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let results = tool_results(&out);
    assert_eq!(results.len(), 3, "{}", out.render());
    for result in &results {
        assert_eq!(result["server"], "mcp-servers/everything");
        assert_eq!(result["is_error"], false, "{result}");
    }
    let sum = results[0]["output"].as_str().unwrap();
    assert!(sum.contains('5'), "{sum}");
    let image = results[1]["output"].as_str().unwrap();
    assert!(image.contains("[image: image/png, about "), "{image}");
    let env = results[2]["output"].as_str().unwrap();
    // The harness gives gptstream a small environment; the server inherits it, less the key.
    assert!(
        env.contains("OPENAI_BASE_URL"),
        "the server's environment: {env}"
    );
    assert!(
        !env.contains("sk-interop-mcp-canary") && !env.contains("OPENAI_API_KEY"),
        "the MCP server saw the API key: {env}"
    );
    assert_eq!(content_of(&out.json_lines()), "Done.");
}

#[test]
#[ignore = "needs the MCP Python SDK: scripts/interop/run"]
fn mcp_python_sdk_over_streamable_http_runs_a_tool_loop_and_ends_its_sessions() {
    for answers in ["SSE", "JSON"] {
        let url = mcp_command(&format!("HTTP_{answers}"));
        let model = mcp_model(
            &[("add", r#"{"a":2,"b":3}"#), ("broken", "{}")],
            "Five, and broken.",
        );
        let out = gptstream()
            .server(&model)
            .args([
                "-v",
                "--json",
                "--mcp",
                &format!("web={url}"),
                "Add, then break.",
            ])
            .run();
        assert_eq!(out.code, 0, "{answers}: {}", out.render());
        let results: Vec<_> = tool_results(&out)
            .iter()
            .map(|r| format!("{} {} {}", r["server"], r["is_error"], r["output"]))
            .collect();
        assert_eq!(
            results,
            [
                r#""web" false "5""#,
                r#""web" true "error: Error executing tool broken: this tool is broken""#,
            ],
            "{answers}"
        );
        // The server's log notification came during the call; its answers were of the kind
        // asked for; the session it gave was ended, and it agreed.
        let stderr = &out.stderr;
        let media = if answers == "SSE" {
            "text/event-stream"
        } else {
            "application/json"
        };
        assert!(
            stderr.contains(&format!("* mcp web: < 200 {media}")),
            "{stderr}"
        );
        assert!(
            stderr.contains("* mcp web: > Mcp-Session-Id: "),
            "{answers}: {stderr}"
        );
        if answers == "SSE" {
            assert!(stderr.contains("adding 2 and 3"), "{stderr}");
        }
        let end = stderr
            .split("* mcp web: > DELETE ")
            .nth(1)
            .expect("the session is ended");
        assert!(end.contains("* mcp web: < 200"), "{answers}: {end}");
    }
}

#[test]
#[ignore = "needs the MCP Python SDK: scripts/interop/run"]
fn mcp_python_sdk_over_streamable_http_lists_its_tools() {
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--mcp", &mcp_command("HTTP_SSE")])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n\
         add\tinterop-python\tAdds two integers.\n\
         shout\tinterop-python\tUpper-cases a text.\n\
         broken\tinterop-python\tAlways fails.\n\n--- stderr\n"
    );
}

#[test]
#[ignore = "needs the MCP Python SDK 2: scripts/interop/run"]
fn mcp_python_sdk_2_speaks_2026_07_28_over_stdio_and_http_with_param_headers_it_checks() {
    for (how, server) in [
        ("stdio", mcp_command("V2")),
        ("http", mcp_command("V2_HTTP")),
    ] {
        let model = mcp_model(
            &[
                ("add", r#"{"a":2,"b":3}"#),
                // Not plain ASCII: over HTTP its Mcp-Param-Name header is base64, and the SDK
                // refuses a call whose header and body disagree.
                ("greet", r#"{"name":"Jörg Ünal"}"#),
                ("broken", "{}"),
            ],
            "Done.",
        );
        let out = gptstream()
            .server(&model)
            .args(["-v", "--json", "--mcp", &format!("v2={server}"), "Go."])
            .run();
        assert_eq!(out.code, 0, "{how}: {}", out.render());
        let results: Vec<_> = tool_results(&out)
            .iter()
            .map(|r| format!("{} {}", r["is_error"], r["output"]))
            .collect();
        assert_eq!(results.len(), 3, "{how}: {}", out.render());
        assert_eq!(results[0], r#"false "5""#, "{how}");
        assert_eq!(results[1], r#"false "Hello, Jörg Ünal!""#, "{how}");
        assert!(
            results[2].starts_with(r#"true "error: "#)
                && results[2].contains("this tool is broken"),
            "{how}: {}",
            results[2]
        );
        let stderr = &out.stderr;
        assert!(
            stderr.contains("* mcp v2: speaks 2026-07-28"),
            "{how}: {stderr}"
        );
        if how == "http" {
            assert!(
                stderr.contains("* mcp v2: > Mcp-Param-Name: =?base64?SsO2cmcgw5xuYWw=?="),
                "{stderr}"
            );
            assert!(!stderr.contains("Mcp-Session-Id"), "no session: {stderr}");
            assert!(!stderr.contains("DELETE"), "no session to end: {stderr}");
        }
    }
}
