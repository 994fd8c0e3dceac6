//! An MCP server over Streamable HTTP: every message we send is a POST of its own to the
//! server's one endpoint, answered by one JSON message, by an SSE stream of messages that ends
//! with the answer, or (for a notification or an answer of ours) by 202 and nothing.
//!
//! A request's POST runs on a thread of its own, the one owner of its response body, which hands
//! each message over the same channel a stdio server's reader uses: the client waits for an
//! answer as it does on stdio, watching for its timeout and for a stop, and a POST that fails
//! becomes [`FromServer::Failed`] for its request. A notification's POST is sent and settled on
//! the caller's thread, so that `notifications/initialized` reaches the server before the next
//! request does. The session id of `initialize`'s answer (`Mcp-Session-Id`) and the protocol
//! version agreed there (`MCP-Protocol-Version`) go with every later POST. At the end the
//! session is ended with DELETE, the agent is shut down (which ends a read blocked on a silent
//! server) and every thread is joined.

use std::io::Read;
use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::rpc::{FromServer, Incoming, MAX_MESSAGE};
use crate::decode::sse::Decoder;
use crate::emit::redact::redact_url;
use crate::error::scrub;
use crate::transport::request::shown_header_value;

/// How long a notification's POST (or an answer of ours) may take: the server only has to
/// say 202.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the closing DELETE may take: it is a courtesy, and the run is over.
const DELETE_TIMEOUT: Duration = Duration::from_secs(1);
/// How much of an error answer is read.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;
/// The longest `Mcp-Session-Id` we keep (the spec asks for visible ASCII, nothing longer is
/// needed); a server's other one is an error.
const MAX_SESSION_ID: usize = 1024;
/// The read buffer of an event stream.
const READ_BUFFER: usize = 16 * 1024;

/// What one POST needs, shared by the threads.
struct Endpoint {
    /// Shown in notes and errors: the server's name, scrubbed.
    name: String,
    url: String,
    /// `[mcp.NAME] headers`.
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
    session: Mutex<Session>,
    verbose: bool,
}

/// What the server and we agreed on.
#[derive(Clone, Default)]
struct Session {
    id: Option<String>,
    version: Option<String>,
}

pub(crate) struct Http {
    endpoint: Arc<Endpoint>,
    sender: Sender<FromServer>,
    messages: Receiver<FromServer>,
    posts: Vec<JoinHandle<()>>,
}

impl Http {
    /// A client of the server at `url`; nothing is sent yet.
    pub(crate) fn new(
        name: &str,
        url: &str,
        headers: &[(String, String)],
        agent: ureq::Agent,
        verbose: bool,
    ) -> Http {
        let (sender, messages) = channel();
        Http {
            endpoint: Arc::new(Endpoint {
                name: scrub(name),
                url: url.to_owned(),
                headers: headers.to_vec(),
                agent,
                session: Mutex::new(Session::default()),
                verbose,
            }),
            sender,
            messages,
            posts: Vec::new(),
        }
    }

    /// Sends one message. A request's answer comes over [`Http::receive`]; a notification or an
    /// answer is settled here, and its failure is the error.
    pub(crate) fn send(&mut self, message: &Value) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|err| err.to_string())?;
        let method = message.get("method").and_then(Value::as_str);
        let Some(id) = message.get("id").filter(|_| method.is_some()).cloned() else {
            return exchange(&self.endpoint, &body, None, false, Some(NOTIFY_TIMEOUT));
        };
        let initialize = method == Some("initialize");
        let endpoint = Arc::clone(&self.endpoint);
        let sender = self.sender.clone();
        let post = std::thread::Builder::new()
            .name(format!("mcp-{}-post", self.endpoint.name))
            .spawn(move || {
                let answer_to = Some((&id, &sender));
                if let Err(why) = exchange(&endpoint, &body, answer_to, initialize, None) {
                    let _ = sender.send(FromServer::Failed { id, why });
                }
            })
            .map_err(|err| format!("cannot start a thread: {err}"))?;
        // The POSTs that are over are joined now, so that they do not pile up.
        let (over, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.posts)
            .into_iter()
            .partition(JoinHandle::is_finished);
        for thread in over {
            let _ = thread.join();
        }
        self.posts = running;
        self.posts.push(post);
        Ok(())
    }

    pub(crate) fn receive(
        &self,
        wait: Duration,
    ) -> Result<FromServer, std::sync::mpsc::RecvTimeoutError> {
        self.messages.recv_timeout(wait)
    }

    /// The protocol version `initialize` agreed on, sent with every later POST.
    pub(crate) fn agreed(&self, version: &str) {
        lock(&self.endpoint.session).version = Some(version.to_owned());
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let session = lock(&self.endpoint.session).clone();
        if let Some(id) = &session.id {
            let endpoint = &self.endpoint;
            note(endpoint, &format!("> DELETE {}", redact_url(&endpoint.url)));
            let mut request = endpoint
                .agent
                .delete(&endpoint.url)
                .header("Mcp-Session-Id", id);
            if let Some(version) = &session.version {
                request = request.header("MCP-Protocol-Version", version);
            }
            for (name, value) in &endpoint.headers {
                request = request.header(name, value);
            }
            // Whatever it answers (405: it keeps no sessions to end), the run is over.
            let answer = request
                .config()
                .timeout_global(Some(DELETE_TIMEOUT))
                .build()
                .call();
            if let Ok(answer) = answer {
                note(endpoint, &format!("< {}", answer.status().as_u16()));
            }
        }
        self.endpoint.agent.clone().shutdown();
        for post in self.posts.drain(..) {
            let _ = post.join();
        }
    }
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

fn note(endpoint: &Endpoint, what: &str) {
    if endpoint.verbose {
        super::client::note(&endpoint.name, what);
    }
}

/// POSTs `body` and settles the answer: for a request (`answer_to`, the id and where its
/// messages go) every message the answer holds is handed over until the one that answers it;
/// for a notification, 202 (or any 2xx) is all there is to it. The answer to `initialize`
/// may give the session its id.
fn exchange(
    endpoint: &Endpoint,
    body: &[u8],
    answer_to: Option<(&Value, &Sender<FromServer>)>,
    initialize: bool,
    timeout: Option<Duration>,
) -> Result<(), String> {
    let session = lock(&endpoint.session).clone();
    let mut request = endpoint
        .agent
        .post(&endpoint.url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream");
    let mut shown = vec![
        ("Content-Type", "application/json".to_owned()),
        ("Accept", "application/json, text/event-stream".to_owned()),
    ];
    if let Some(id) = &session.id {
        request = request.header("Mcp-Session-Id", id);
        shown.push(("Mcp-Session-Id", id.clone()));
    }
    if let Some(version) = &session.version {
        request = request.header("MCP-Protocol-Version", version);
        shown.push(("MCP-Protocol-Version", version.clone()));
    }
    for (name, value) in &endpoint.headers {
        request = request.header(name, value);
        shown.push((name, value.clone()));
    }
    if endpoint.verbose {
        note(endpoint, &format!("> POST {}", redact_url(&endpoint.url)));
        for (name, value) in &shown {
            note(
                endpoint,
                &format!("> {name}: {}", shown_header_value(name, value)),
            );
        }
    }
    let request = request.config().timeout_global(timeout).build();
    let mut answer = request.send(body).map_err(|err| {
        format!(
            "cannot be reached at {}: {}",
            redact_url(&endpoint.url),
            scrub(&err.to_string())
        )
    })?;
    let status = answer.status().as_u16();
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    note(endpoint, &format!("< {status} {}", scrub(&content_type)));
    if initialize
        && (200..300).contains(&status)
        && let Some(id) = header("mcp-session-id")
    {
        if id.is_empty() || id.len() > MAX_SESSION_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "sent an Mcp-Session-Id that is not 1-1024 visible ASCII characters".into(),
            );
        }
        lock(&endpoint.session).id = Some(id);
    }
    let Some((id, sender)) = answer_to else {
        return match status {
            200..=299 => Ok(()),
            _ => Err(status_error(status, &content_type, answer.body_mut())),
        };
    };
    match status {
        202 => Err("accepted the request without answering it".into()),
        200..=299 if media == "application/json" => {
            // Read through a cap of our own: ureq's limit refuses a long body as an I/O error.
            let mut bytes = Vec::new();
            answer
                .into_body()
                .into_reader()
                .take(MAX_MESSAGE as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|err| format!("broke off its answer: {}", scrub(&err.to_string())))?;
            if bytes.len() > MAX_MESSAGE {
                let _ = sender.send(FromServer::Message(Incoming::TooLong));
                return Ok(());
            }
            let messages = match serde_json::from_slice(&bytes) {
                // A batch (2025-03-26): each message in turn.
                Ok(Value::Array(batch)) => batch.into_iter().map(Incoming::of).collect(),
                Ok(value) => vec![Incoming::of(value)],
                Err(_) => vec![Incoming::parse(&bytes)],
            };
            for message in messages {
                let _ = sender.send(FromServer::Message(message));
            }
            Ok(())
        }
        200..=299 if media == "text/event-stream" => {
            let reader = answer.into_body().into_reader();
            stream(reader, id, sender)
        }
        200..=299 => Err(format!(
            "answered with {:?}, neither JSON nor an event stream",
            scrub(&content_type)
        )),
        404 if session.id.is_some() => {
            Err("ended the session (HTTP 404 for its Mcp-Session-Id)".into())
        }
        _ => Err(status_error(status, &content_type, answer.body_mut())),
    }
}

/// Hands over each message of an event stream until the one that answers `id`.
fn stream(mut reader: impl Read, id: &Value, sender: &Sender<FromServer>) -> Result<(), String> {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut buffer = vec![0; READ_BUFFER];
    let mut answered = false;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(format!(
                    "broke off its event stream: {}",
                    scrub(&err.to_string())
                ));
            }
        };
        let flow = decoder.feed(&buffer[..read], |event| {
            // An event without data primes a reconnection (2025-11-25); it holds no message.
            if event.data.trim().is_empty() {
                return Ok(ControlFlow::Continue(()));
            }
            let message = Incoming::parse(event.data.as_bytes());
            answered =
                matches!(&message, Incoming::Response { id: answering, .. } if answering == id);
            let _ = sender.send(FromServer::Message(message));
            Ok(if answered {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        });
        match flow {
            Ok(ControlFlow::Break(())) => return Ok(()),
            Ok(ControlFlow::Continue(())) => {}
            // The decoder refuses a line or an event over MAX_MESSAGE.
            Err(_) => {
                let _ = sender.send(FromServer::Message(Incoming::TooLong));
                return Ok(());
            }
        }
    }
    if answered {
        Ok(())
    } else {
        Err("closed its event stream before answering".into())
    }
}

/// An error answer as one line: its status and what its body says.
fn status_error(status: u16, content_type: &str, body: &mut ureq::Body) -> String {
    let bytes = body
        .with_config()
        .limit(ERROR_BODY_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    let error = crate::transport::http::status_error(status, content_type, &bytes);
    format!("answered {}", scrub(&error.to_string()))
}
