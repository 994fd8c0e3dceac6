//! An MCP server over Streamable HTTP: every message we send is a POST of its own to the
//! server's one endpoint, answered by one JSON message, by an SSE stream of messages that ends
//! with the answer, or (for a notification or an answer of ours) by 202 and nothing.
//!
//! A request's POST runs on a thread of its own, the one owner of its response body, with an
//! agent of its own, so that the request alone can be stopped (closing its stream, which is how
//! a 2026-07-28 server is told to cancel). The thread hands each message over the same channel
//! a stdio server's reader uses: the client waits for an answer as it does on stdio, watching
//! for its timeout and for a stop, and a POST that fails becomes [`FromServer::Failed`] for its
//! request. A notification's POST is sent and settled on the caller's thread, so that
//! `notifications/initialized` reaches the server before the next request does.
//!
//! Two eras. Modern (2026-07-28): every POST says `MCP-Protocol-Version`, `Mcp-Method`, and
//! for `tools/call` `Mcp-Name` and the `Mcp-Param-*` headers the tool's `x-mcp-header`
//! annotations ask for; there is no session. Legacy (2025-11-25 and before): the session id of
//! `initialize`'s answer (`Mcp-Session-Id`) and the version agreed there go with every later
//! POST, and the session is ended with DELETE. At the end the agents are shut down (which ends
//! a read blocked on a silent server) and every thread is joined.

use std::collections::HashMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::headers::{Annotations, header_value, param_text};
use super::rpc::{FromServer, Incoming, MAX_MESSAGE, QUEUE};
use crate::decode::sse::Decoder;
use crate::emit::redact::redact_url;
use crate::error::scrub;
use crate::transport::http::{Transport, tool_agent};
use crate::transport::request::shown_header_value;

/// The revision whose POSTs carry their metadata in headers.
pub(crate) const MODERN: &str = "2026-07-28";

/// How long a notification's POST (or an answer of ours) may take: the server only has to
/// say 202.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many of our answers and cancellations may be on their way at once.
const ASIDE: usize = 4;
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
    /// For notifications and the closing DELETE; each request gets an agent of its own.
    agent: ureq::Agent,
    transport: Transport,
    session: Mutex<Session>,
    /// Each tool's `x-mcp-header` annotations: header name and the path to its argument.
    annotations: Mutex<HashMap<String, Annotations>>,
    verbose: bool,
}

/// What the server and we agreed on.
#[derive(Clone, Default)]
struct Session {
    /// The 2026-07-28 era: metadata in headers, no session.
    modern: bool,
    id: Option<String>,
    version: Option<String>,
    /// The server said 404 to the session's id: it is over, and a new one is to be started.
    ended: bool,
}

/// A request's POST in flight: its thread, and the agent that ends it.
struct Post {
    id: Value,
    agent: ureq::Agent,
    thread: JoinHandle<()>,
}

pub(crate) struct Http {
    endpoint: Arc<Endpoint>,
    sender: SyncSender<FromServer>,
    /// What the POSTs' threads hand over, [`QUEUE`] at a time; dropped before they are joined,
    /// so that none stays blocked on a full queue.
    messages: Option<Receiver<FromServer>>,
    posts: Vec<Post>,
}

impl Http {
    /// A client of the server at `url`; nothing is sent yet.
    pub(crate) fn new(
        name: &str,
        url: &str,
        headers: &[(String, String)],
        transport: &Transport,
        verbose: bool,
    ) -> Http {
        let (sender, messages) = sync_channel(QUEUE);
        Http {
            endpoint: Arc::new(Endpoint {
                name: scrub(name),
                url: url.to_owned(),
                headers: headers.to_vec(),
                agent: tool_agent(transport),
                transport: transport.clone(),
                session: Mutex::new(Session::default()),
                annotations: Mutex::new(HashMap::new()),
                verbose,
            }),
            sender,
            messages: Some(messages),
            posts: Vec::new(),
        }
    }

    /// Sends one message. A request's answer comes over [`Http::receive`]; a notification is
    /// settled here, and its failure is the error; our answer to a server's request and a
    /// cancellation go on the side (see [`Http::post_aside`]).
    pub(crate) fn send(&mut self, message: &Value) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|err| err.to_string())?;
        let method = message.get("method").and_then(Value::as_str);
        let Some(id) = message.get("id").filter(|_| method.is_some()).cloned() else {
            if method.is_none() || method == Some("notifications/cancelled") {
                return self.post_aside(message.clone(), body);
            }
            return self.post_here(message, &body);
        };
        let endpoint = Arc::clone(&self.endpoint);
        let sender = self.sender.clone();
        let agent = tool_agent(&self.endpoint.transport);
        let message = message.clone();
        let thread = {
            let agent = agent.clone();
            let id = id.clone();
            std::thread::Builder::new()
                .name(format!("mcp-{}-post", self.endpoint.name))
                .spawn(move || {
                    let post = Exchange {
                        endpoint: &endpoint,
                        agent: &agent,
                        message: &message,
                        answer_to: Some((&id, &sender)),
                        timeout: None,
                    };
                    if let Err(Refusal { why, refused }) = post.run(&body) {
                        let _ = sender.send(FromServer::Failed { id, why, refused });
                    }
                })
                .map_err(|err| format!("cannot start a thread: {err}"))?
        };
        self.join_finished();
        self.posts.push(Post { id, agent, thread });
        Ok(())
    }

    /// POSTs a message that gets no answer, and waits until the server took it.
    fn post_here(&self, message: &Value, body: &[u8]) -> Result<(), String> {
        let endpoint = &self.endpoint;
        let post = Exchange {
            endpoint,
            agent: &endpoint.agent,
            message,
            answer_to: None,
            timeout: Some(NOTIFY_TIMEOUT),
        };
        post.run(body).map_err(|failure| failure.why)
    }

    /// Joins the POSTs that are over, so that they do not pile up.
    fn join_finished(&mut self) {
        let (over, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.posts)
            .into_iter()
            .partition(|post| post.thread.is_finished());
        for post in over {
            let _ = post.thread.join();
        }
        self.posts = running;
    }

    /// POSTs our answer to a server's request, or a cancellation, on a thread of its own
    /// (joined with the others; a failure is shown with `-v`): a server slow to take it must
    /// not hold up the call it came in, its timeout, or the stop a cancellation tells of. While
    /// [`ASIDE`] are on their way, an answer is dropped (shown with `-v`): a server that asks
    /// faster than it takes answers must not have us start a thread per question. A
    /// cancellation always goes: there is one per call given up.
    fn post_aside(&mut self, message: Value, body: Vec<u8>) -> Result<(), String> {
        self.join_finished();
        let is_answer = message.get("method").is_none();
        if is_answer && self.posts.iter().filter(|post| post.id.is_null()).count() >= ASIDE {
            note(
                &self.endpoint,
                "an answer of ours dropped: the server has not taken the last ones",
            );
            return Ok(());
        }
        let endpoint = Arc::clone(&self.endpoint);
        let agent = tool_agent(&self.endpoint.transport);
        let thread = {
            let agent = agent.clone();
            std::thread::Builder::new()
                .name(format!("mcp-{}-notify", self.endpoint.name))
                .spawn(move || {
                    let post = Exchange {
                        endpoint: &endpoint,
                        agent: &agent,
                        message: &message,
                        answer_to: None,
                        timeout: Some(NOTIFY_TIMEOUT),
                    };
                    if let Err(refusal) = post.run(&body) {
                        note(&endpoint, &refusal.why);
                    }
                })
                .map_err(|err| format!("cannot start a thread: {err}"))?
        };
        self.posts.push(Post {
            id: Value::Null,
            agent,
            thread,
        });
        Ok(())
    }

    pub(crate) fn receive(
        &self,
        wait: Duration,
    ) -> Result<FromServer, std::sync::mpsc::RecvTimeoutError> {
        match &self.messages {
            Some(messages) => messages.recv_timeout(wait),
            None => Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        }
    }

    /// Stops request `id`: its connection is closed, its thread ends (joined later).
    pub(crate) fn stop(&mut self, id: &Value) {
        for post in self.posts.iter().filter(|post| &post.id == id) {
            post.agent.clone().shutdown();
        }
    }

    /// The era: modern (2026-07-28 headers, no session) or legacy.
    pub(crate) fn set_modern(&self, modern: bool) {
        let mut session = lock(&self.endpoint.session);
        session.modern = modern;
        session.version = modern.then(|| MODERN.to_owned());
    }

    /// Whether the server ended the session since the last asking (and a new one is due).
    pub(crate) fn take_ended(&self) -> bool {
        std::mem::take(&mut lock(&self.endpoint.session).ended)
    }

    /// The protocol version `initialize` agreed on, sent with every later POST.
    pub(crate) fn agreed(&self, version: &str) {
        lock(&self.endpoint.session).version = Some(version.to_owned());
    }

    /// Tool `name`'s `x-mcp-header` annotations, mirrored into each of its calls' headers.
    pub(crate) fn annotate(&self, name: &str, headers: Annotations) {
        if !headers.is_empty() {
            let mut annotations = self
                .endpoint
                .annotations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            annotations.insert(name.to_owned(), headers);
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // A cancellation (or an answer) on its way goes before the DELETE, if it goes at all in
        // a moment.
        let deadline = std::time::Instant::now() + DELETE_TIMEOUT;
        while self
            .posts
            .iter()
            .any(|post| post.id.is_null() && !post.thread.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
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
        // A POST's thread blocked on a full queue wakes to find nobody listening.
        drop(self.messages.take());
        for post in self.posts.drain(..) {
            post.agent.shutdown();
            let _ = post.thread.join();
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

/// Why a POST got no answer; `refused` when the server answered with an HTTP error status
/// (it is there, and said no), not when it could not be reached or broke off.
struct Refusal {
    why: String,
    refused: bool,
}

impl From<String> for Refusal {
    fn from(why: String) -> Refusal {
        Refusal {
            why,
            refused: false,
        }
    }
}

/// One POST: `message`, through `agent`.
struct Exchange<'a> {
    endpoint: &'a Endpoint,
    agent: &'a ureq::Agent,
    message: &'a Value,
    /// A request's id, and where its messages go.
    answer_to: Option<(&'a Value, &'a SyncSender<FromServer>)>,
    timeout: Option<Duration>,
}

impl Exchange<'_> {
    /// The headers this message goes with, in order.
    fn headers(&self, session: &Session) -> Vec<(String, String)> {
        let endpoint = self.endpoint;
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (
                "Accept".to_owned(),
                "application/json, text/event-stream".to_owned(),
            ),
        ];
        if let Some(id) = session.id.as_ref().filter(|_| !session.modern) {
            headers.push(("Mcp-Session-Id".into(), id.clone()));
        }
        if let Some(version) = &session.version {
            headers.push(("MCP-Protocol-Version".into(), version.clone()));
        }
        let method = self.message.get("method").and_then(Value::as_str);
        if session.modern
            && let Some(method) = method
        {
            headers.push(("Mcp-Method".into(), header_value(method)));
            let params = self.message.get("params");
            if method == "tools/call"
                && let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str)
            {
                headers.push(("Mcp-Name".into(), header_value(name)));
                let annotations = endpoint
                    .annotations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let arguments = params.and_then(|p| p.get("arguments"));
                for (header, path) in annotations.get(name).into_iter().flatten() {
                    let value = arguments.and_then(|arguments| {
                        path.iter().try_fold(arguments, |value, key| value.get(key))
                    });
                    if let Some(value) = value.and_then(param_text) {
                        headers.push((format!("Mcp-Param-{header}"), header_value(&value)));
                    }
                }
            }
        }
        headers.extend(endpoint.headers.iter().cloned());
        headers
    }

    /// POSTs `body` and settles the answer: for a request every message the answer holds is
    /// handed over until the one that answers it; for a notification, 202 (or any 2xx) is all
    /// there is to it. The answer to a legacy `initialize` may give the session its id.
    fn run(&self, body: &[u8]) -> Result<(), Refusal> {
        let endpoint = self.endpoint;
        let session = lock(&endpoint.session).clone();
        let headers = self.headers(&session);
        let mut request = self.agent.post(&endpoint.url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        if endpoint.verbose {
            note(endpoint, &format!("> POST {}", redact_url(&endpoint.url)));
            for (name, value) in &headers {
                note(
                    endpoint,
                    &format!("> {name}: {}", shown_header_value(name, value)),
                );
            }
        }
        let request = request.config().timeout_global(self.timeout).build();
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
        let initialize = self.message.get("method").and_then(Value::as_str) == Some("initialize");
        if initialize
            && !session.modern
            && (200..300).contains(&status)
            && let Some(id) = header("mcp-session-id")
        {
            if id.is_empty()
                || id.len() > MAX_SESSION_ID
                || !id.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(
                    "sent an Mcp-Session-Id that is not 1-1024 visible ASCII characters"
                        .to_owned()
                        .into(),
                );
            }
            lock(&endpoint.session).id = Some(id);
        }
        let Some((id, sender)) = self.answer_to else {
            return match status {
                200..=299 => Ok(()),
                _ => refusal(status, &content_type, answer.body_mut(), None),
            };
        };
        match status {
            202 => Err("accepted the request without answering it"
                .to_owned()
                .into()),
            200..=299 if media == "application/json" => {
                let bytes = read_capped(answer.into_body(), MAX_MESSAGE)?;
                let Some(bytes) = bytes else {
                    let _ = sender.send(FromServer::Message(Incoming::TooLong));
                    return Ok(());
                };
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
                stream(reader, id, sender).map_err(Refusal::from)
            }
            200..=299 => Err(format!(
                "answered with {:?}, neither JSON nor an event stream",
                scrub(&content_type)
            )
            .into()),
            404 if session.id.is_some() && !session.modern => {
                // The client starts a new one (2025-11-25: it must), without this id.
                let mut now = lock(&endpoint.session);
                if now.id == session.id {
                    now.id = None;
                    now.ended = true;
                }
                Err(Refusal {
                    why: "ended the session (HTTP 404 for its Mcp-Session-Id)".to_owned(),
                    refused: true,
                })
            }
            _ => refusal(status, &content_type, answer.body_mut(), Some((id, sender))),
        }
    }
}

/// The body, if it is at most `max` bytes (read through a cap of our own: ureq's limit
/// refuses a long body as an I/O error).
fn read_capped(body: ureq::Body, max: usize) -> Result<Option<Vec<u8>>, Refusal> {
    let mut bytes = Vec::new();
    body.into_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("broke off its answer: {}", scrub(&err.to_string())))?;
    Ok((bytes.len() <= max).then_some(bytes))
}

/// Hands over each message of an event stream until the one that answers `id`.
fn stream(
    mut reader: impl Read,
    id: &Value,
    sender: &SyncSender<FromServer>,
) -> Result<(), String> {
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
            if sender.send(FromServer::Message(message)).is_err() {
                // Nobody listens any more: the run is ending.
                return Ok(ControlFlow::Break(()));
            }
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

/// An error status as the client gets it. A body that is a JSON-RPC error answering
/// `answer_to`'s id (as 2026-07-28 servers send with 400) is handed over as that answer
/// (`Ok`); else the status and what the body says, in one line.
fn refusal(
    status: u16,
    content_type: &str,
    body: &mut ureq::Body,
    answer_to: Option<(&Value, &SyncSender<FromServer>)>,
) -> Result<(), Refusal> {
    let bytes = body
        .with_config()
        .limit(ERROR_BODY_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    if let Some((id, sender)) = answer_to
        && let message @ Incoming::Response { .. } = Incoming::parse(&bytes)
        && matches!(&message, Incoming::Response { id: answering, outcome: Err(_) } if answering == id)
    {
        let _ = sender.send(FromServer::Message(message));
        return Ok(());
    }
    let error = crate::transport::http::status_error(status, content_type, &bytes);
    Err(Refusal {
        why: format!("answered {}", scrub(&error.to_string())),
        refused: true,
    })
}
