//! A scripted HTTP/1.1 server on 127.0.0.1: one script per request, in order, and a thread per
//! connection. A connection that the client keeps alive (the script ended its response
//! cleanly) serves the client's next request too, as a real server does, and the server counts
//! the connections it accepted.
//!
//! Each script is a list of steps (send bytes, send one HTTP chunk, wait for the test's signal,
//! pause, close early), so a test says exactly how the bytes reach the client: split mid-line,
//! mid-character, with pauses or with a handshake. The request each script answered is recorded
//! for the test to check. Dropping the server checks it was called.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long anything in a test may wait before it is a failure rather than a hang.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub enum Step {
    /// Raw bytes, as they are.
    Raw(Vec<u8>),
    /// One chunk of a `Transfer-Encoding: chunked` body.
    Chunk(Vec<u8>),
    /// The final zero-length chunk.
    EndChunks,
    /// Block until the test signals (or gives up).
    WaitFor(Receiver<()>),
    Sleep(Duration),
    /// Close the connection now, whatever state the body is in.
    Close,
    /// Read until the client closes the connection, then tell the test.
    AwaitClose(Sender<()>),
}

/// What the client sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// Checks a request body as a strict server would; an `Err` is answered with a 400.
pub type Validator = fn(&serde_json::Value) -> Result<(), String>;

pub struct Server {
    port: u16,
    requests: Receiver<Recorded>,
    hit: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

/// The scripts not yet used, shared by the connections.
type Scripts = Arc<Mutex<VecDeque<Vec<Step>>>>;

impl Server {
    /// Starts a server that answers the requests it gets with these scripts, in order.
    pub fn start(scripts: Vec<Vec<Step>>) -> Server {
        Server::strict(scripts, |_| Ok(()))
    }

    /// Like [`Server::start`], but a request that `validator` rejects gets an OpenAI-style 400
    /// instead of the next script.
    pub fn strict(scripts: Vec<Vec<Step>>, validator: Validator) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (tx, requests) = mpsc::channel();
        let hit = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (hit_flag, count) = (Arc::clone(&hit), Arc::clone(&connections));
        let scripts: Scripts = Arc::new(Mutex::new(scripts.into()));
        thread::spawn(move || {
            while !scripts.lock().unwrap().is_empty() {
                let Some(stream) = accept(&listener) else {
                    return;
                };
                hit_flag.store(true, Ordering::SeqCst);
                count.fetch_add(1, Ordering::SeqCst);
                let (scripts, tx) = (Arc::clone(&scripts), tx.clone());
                thread::spawn(move || serve(stream, &scripts, &tx, validator));
            }
        });
        Server {
            port,
            requests,
            hit,
            connections,
        }
    }

    /// How many connections the client opened so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// One connection answered by one script.
    pub fn one(script: Vec<Step>) -> Server {
        Server::start(vec![script])
    }

    /// The base URL to pass as `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The next request the server received, if it has one now.
    pub fn try_request(&self) -> Option<Recorded> {
        self.requests.try_recv().ok()
    }

    /// The next request the server received.
    pub fn request(&self) -> Recorded {
        self.requests
            .recv_timeout(PATIENCE)
            .expect("the server got a request")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !thread::panicking() {
            assert!(
                self.hit.load(Ordering::SeqCst),
                "the test server was never called"
            );
        }
    }
}

fn accept(listener: &TcpListener) -> Option<TcpStream> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).ok()?;
                stream.set_nodelay(true).ok()?;
                return Some(stream);
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    None
}

/// Answers requests on one connection, each with the next script, until the client closes it
/// or a script does.
fn serve(stream: TcpStream, scripts: &Scripts, tx: &Sender<Recorded>, validator: Validator) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    // A kept-alive connection waits this long for the client's next request.
    let _ = stream.set_read_timeout(Some(PATIENCE));
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        // A POST must carry a JSON body; a GET (`--list-models`) carries none.
        let verdict =
            if (request.method == "GET" || request.method == "DELETE") && request.body.is_empty() {
                Ok(())
            } else {
                serde_json::from_str(&request.body)
                    .map_err(|e| e.to_string())
                    .and_then(|body| validator(&body))
            };
        let script = match verdict {
            Ok(()) => match scripts.lock().unwrap().pop_front() {
                Some(script) => script,
                None => return,
            },
            Err(message) => {
                let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
                full(400, "application/json", &body.to_string())
            }
        };
        let _ = tx.send(request);
        if !play(&mut stream, script) {
            return;
        }
    }
}

/// Plays one script; false when the connection is closed (by the script or the client).
fn play(stream: &mut TcpStream, script: Vec<Step>) -> bool {
    for step in script {
        let result = match step {
            Step::Raw(bytes) => stream.write_all(&bytes),
            Step::Chunk(bytes) => {
                let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
                framed.extend_from_slice(&bytes);
                framed.extend_from_slice(b"\r\n");
                stream.write_all(&framed)
            }
            Step::EndChunks => stream.write_all(b"0\r\n\r\n"),
            Step::WaitFor(signal) => {
                let _ = signal.recv_timeout(PATIENCE);
                Ok(())
            }
            Step::Sleep(pause) => {
                thread::sleep(pause);
                Ok(())
            }
            Step::Close => return false,
            Step::AwaitClose(closed) => {
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                let _ = closed.send(());
                return false;
            }
        };
        if result.and_then(|()| stream.flush()).is_err() {
            return false; // the client went away; that is the client's business
        }
    }
    true
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

/// A loopback port nothing listens on (bound, then freed), for refused connections.
pub fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

// ---- Script builders -------------------------------------------------------------------------

/// A stream that sends one delta and then goes silent until the returned sender is dropped.
pub fn stalls_after(text: &str) -> (Sender<()>, Vec<Step>) {
    let (release, hold) = mpsc::channel();
    let steps = vec![
        chunked_head(200, "text/event-stream"),
        Step::Chunk(content(text).into_bytes()),
        Step::WaitFor(hold),
    ];
    (release, steps)
}

/// Status line and headers of a chunked response.
pub fn chunked_head(status: u16, content_type: &str) -> Step {
    Step::Raw(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes(),
    )
}

/// A complete response with a Content-Length body.
pub fn full(status: u16, content_type: &str, body: &str) -> Vec<Step> {
    vec![Step::Raw(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )]
}

/// An SSE response: each string is sent as its own HTTP chunk, then the body ends.
pub fn sse<S: AsRef<[u8]>>(chunks: &[S]) -> Vec<Step> {
    let mut steps = vec![chunked_head(200, "text/event-stream")];
    steps.extend(chunks.iter().map(|c| Step::Chunk(c.as_ref().to_vec())));
    steps.push(Step::EndChunks);
    steps
}

/// One `data:` event carrying a chunk with a content delta for choice 0.
pub fn content(text: &str) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "test-model",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
    });
    format!("data: {chunk}\n\n")
}

/// One `data:` event with a chunk whose choice 0 has this delta and finish reason.
pub fn delta(delta: serde_json::Value, finish: Option<&str>) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {chunk}\n\n")
}

pub fn finish(reason: &str) -> String {
    delta(serde_json::json!({}), Some(reason))
}

pub fn usage(prompt: u64, completion: u64) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "test-model",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    });
    format!("data: {chunk}\n\n")
}

/// As OpenAI does: every `tool_calls` of an assistant message must be answered by a `tool`
/// message before the conversation goes on.
pub fn rejects_unanswered_tool_calls(body: &serde_json::Value) -> Result<(), String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for (i, message) in messages.iter().enumerate() {
        let Some(calls) = message["tool_calls"].as_array() else {
            continue;
        };
        let answered: Vec<&str> = messages[i + 1..]
            .iter()
            .take_while(|m| m["role"] == "tool")
            .filter_map(|m| m["tool_call_id"].as_str())
            .collect();
        let missing: Vec<&str> = calls
            .iter()
            .filter_map(|c| c["id"].as_str())
            .filter(|id| !answered.contains(id))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

/// As a server that validates requests with pydantic does (a Python server on llama.cpp,
/// `transformers serve`): a message's `content`, when present, must be text or parts, never
/// `null`, and every tool call must be answered.
pub fn rejects_null_content(body: &serde_json::Value) -> Result<(), String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for (i, message) in messages.iter().enumerate() {
        if message
            .get("content")
            .is_some_and(serde_json::Value::is_null)
        {
            return Err(format!(
                "1 validation error for ChatCompletionRequest\nmessages.{i}.content\n  Input should be a valid string [type=string_type, input_value=None]"
            ));
        }
    }
    rejects_unanswered_tool_calls(body)
}

pub const DONE: &str = "data: [DONE]\n\n";

/// The usual happy stream for "Hello, world!" with usage, as separate chunk strings.
pub fn hello_chunks() -> Vec<String> {
    vec![
        delta(
            serde_json::json!({"role": "assistant", "content": ""}),
            None,
        ),
        content("Hello"),
        content(", wor"),
        content("ld!"),
        finish("stop"),
        usage(9, 4),
        DONE.to_owned(),
    ]
}
