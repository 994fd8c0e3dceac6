//! One MCP server's client: messages over its link (stdio or Streamable HTTP), a request
//! waiting for the answer of its id while the server's own requests are answered and its
//! notifications noted; `initialize` and `tools/list` on top.

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::http::{Http, MODERN};
use super::rpc::{self, FromServer, Incoming, RpcError};
use super::stdio::Process;
use super::{McpTool, is_name};
use crate::control::supervisor::Cancel;
use crate::error::McpError;

/// The legacy revision we ask for in `initialize`, and the ones we accept a server choosing
/// instead. The modern one (2026-07-28, no handshake) is tried first: [`MODERN`].
const PROTOCOL_VERSION: &str = "2025-11-25";
const ACCEPTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// How long the era probe (`server/discover`) may take before the server is taken for a legacy
/// one that does not answer what it does not know.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// JSON-RPC errors of the 2026-07-28 revision.
const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
const MISSING_CLIENT_CAPABILITY: i64 = -32021;
const HEADER_MISMATCH: i64 = -32020;

/// What the era probe found.
enum Probe {
    /// 2026-07-28, and the name the server gives itself.
    Modern(Option<String>),
    /// An older server: it answered, but not with a 2026-07-28 discover result.
    Legacy,
    /// No answer in time: an older server that ignores what it does not know, or a slow one.
    Silent,
}

/// The name a server gives itself at `pointer` of `info`, if any.
fn own_name(info: &Value, pointer: &str) -> Option<String> {
    info.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// Bounds on what a server may list: pages of `tools/list`, and tools in all.
const MAX_PAGES: usize = 100;
const MAX_TOOLS: usize = 1024;

/// How often a wait looks at the cancel flag.
const SLICE: Duration = Duration::from_millis(50);

/// Why a request got no answer.
pub(super) enum Failure {
    TimedOut(Duration),
    Cancelled,
    /// The server answered with a JSON-RPC error.
    Rpc(RpcError),
    /// The server answered with an HTTP error status.
    Refused(String),
    /// It could not be reached, died, or sent what is no answer.
    Other(String),
}

impl Failure {
    /// The failure of request `method` as the end of "MCP server NAME ...".
    pub(super) fn why(self, method: &str) -> String {
        match self {
            Failure::TimedOut(after) => {
                format!("did not answer {method} within {}", seconds(after))
            }
            Failure::Cancelled => "was stopped".to_owned(),
            Failure::Rpc(error) => format!(
                "answered {method} with error {}: {}",
                error.code,
                crate::error::scrub(&error.message)
            ),
            Failure::Refused(why) | Failure::Other(why) => why,
        }
    }
}

/// How messages reach a server and come back.
pub(super) enum Link {
    Stdio(Process),
    Http(Http),
}

impl Link {
    /// Sends one message; the error says why the server cannot be reached.
    fn send(&mut self, message: &Value) -> Result<(), String> {
        match self {
            Link::Stdio(process) => process.send(message).map_err(|_| process.gone()),
            Link::Http(http) => http.send(message),
        }
    }

    fn receive(&mut self, wait: Duration) -> Result<FromServer, RecvTimeoutError> {
        match self {
            Link::Stdio(process) => process.receive(wait),
            Link::Http(http) => http.receive(wait),
        }
    }

    /// Gives up request `id`: over HTTP its stream is closed.
    fn stop_request(&mut self, id: u64) {
        if let Link::Http(http) = self {
            http.stop(&json!(id));
        }
    }

    /// Stops a stdio server, handing back its threads (see [`Process::stop`]).
    pub(super) fn stop(&mut self) -> Vec<std::thread::JoinHandle<()>> {
        match self {
            Link::Stdio(process) => process.stop(),
            Link::Http(_) => Vec::new(),
        }
    }

    /// Why the server is gone (stdio: its exit status and last stderr line).
    fn gone(&mut self) -> String {
        match self {
            Link::Stdio(process) => process.gone(),
            Link::Http(_) => "closed the connection".to_owned(),
        }
    }
}

pub(super) struct Server {
    /// The name given, else the server's own.
    pub(super) name: String,
    /// How `--dry-run` shows it: [`super::Endpoint::described`].
    pub(super) described: String,
    link: Link,
    next_id: u64,
    /// Requests given up on (timed out): a late answer to one is dropped, not an error.
    abandoned: Vec<u64>,
    /// The 2026-07-28 era: every request carries its protocol metadata, there is no handshake.
    modern: bool,
    /// The era probe is out: a server that does not answer it is not told it was given up.
    probing: bool,
    /// Set by a signal during the start (before the run's own signal handling).
    stop: Cancel,
    /// `--mcp-timeout`, for a new session when a legacy HTTP server ends one.
    start_timeout: Duration,
    /// The last request of the start failed with a JSON-RPC error (not silence, not a crash).
    refused_by_rpc: bool,
    verbose: bool,
}

impl Server {
    pub(super) fn new(
        name: String,
        described: String,
        link: Link,
        stop: Cancel,
        verbose: bool,
    ) -> Server {
        Server {
            name,
            described,
            stop,
            start_timeout: Duration::ZERO,
            refused_by_rpc: false,
            link,
            next_id: 0,
            abandoned: Vec::new(),
            modern: false,
            probing: false,
            verbose,
        }
    }

    /// Stops the server's process, if it has one; see [`Link::stop`].
    pub(super) fn stop(&mut self) -> Vec<std::thread::JoinHandle<()>> {
        self.link.stop()
    }

    /// Finds out which era the server speaks, as the 2026-07-28 revision asks of a client that
    /// speaks both: `server/discover` first; a discover result offering 2026-07-28 makes it
    /// modern; any other answer, or none within [`PROBE_TIMEOUT`] (or half of `--mcp-timeout`),
    /// makes it legacy, and then comes the `initialize` handshake. A server that can be reached
    /// but shares no version with us is exit 8. Returns the name the server gives itself.
    pub(super) fn start_up(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Option<String>> {
        self.start_timeout = timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        // Half the start's time at most: the handshake may need the rest.
        let probe = self.discover((left / 2).min(PROBE_TIMEOUT))?;
        let timed_out = match probe {
            Probe::Modern(name) => return Ok(name),
            Probe::Legacy => false,
            Probe::Silent => true,
        };
        self.set_modern(false);
        match self.initialize(deadline, timeout) {
            Ok(info) => Ok(own_name(&info, "/serverInfo/name")),
            // A modern server slow to start (a first `npx` download) answers the probe too late
            // and refuses `initialize` (a JSON-RPC error): asked again, it answers.
            Err(refused) if timed_out && self.refused_by_rpc => {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.discover(left.min(PROBE_TIMEOUT))? {
                    Probe::Modern(name) => Ok(name),
                    Probe::Legacy | Probe::Silent => Err(refused),
                }
            }
            Err(refused) => Err(refused),
        }
    }

    /// Sends `server/discover` and tells the answer apart; a server that is there but speaks
    /// none of our versions, or needs what we do not offer, is exit 8.
    fn discover(&mut self, wait: Duration) -> anyhow::Result<Probe> {
        self.set_modern(true);
        self.probing = true;
        let stop = self.stop.clone();
        let probe = self.request("server/discover", json!({}), Some(wait), Some(&stop));
        self.probing = false;
        let offered = |versions: Option<&Value>| -> Vec<String> {
            versions
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let refused = |why: String| -> anyhow::Result<Probe> {
            Err(McpError(format!("MCP server {} {why}", self.shown())).into())
        };
        match probe {
            Ok(result) => {
                if offered(result.get("supportedVersions"))
                    .iter()
                    .any(|v| v == MODERN)
                {
                    self.note(&format!("speaks {MODERN}"));
                    let name = own_name(&result, "/_meta/io.modelcontextprotocol~1serverInfo/name");
                    return Ok(Probe::Modern(name));
                }
                // It answers discover, but offers only handshake versions: legacy.
                Ok(Probe::Legacy)
            }
            Err(Failure::Rpc(error)) if error.code == UNSUPPORTED_PROTOCOL_VERSION => {
                let versions = offered(error.data.get("supported"));
                if versions
                    .iter()
                    .any(|v| ACCEPTED_VERSIONS.contains(&v.as_str()))
                {
                    return Ok(Probe::Legacy);
                }
                refused(format!(
                    "speaks protocol versions {}; gptstream speaks {MODERN}, {}",
                    crate::error::scrub(&versions.join(", ")),
                    ACCEPTED_VERSIONS.join(", ")
                ))
            }
            Err(Failure::Rpc(error)) if error.code == MISSING_CLIENT_CAPABILITY => {
                refused(format!(
                    "needs client capabilities gptstream does not offer ({}): {}",
                    crate::error::scrub(&error.data.to_string()),
                    crate::error::scrub(&error.message)
                ))
            }
            Err(Failure::Rpc(error)) if error.code == HEADER_MISMATCH => refused(format!(
                "refused the 2026-07-28 headers of gptstream's request: {}",
                crate::error::scrub(&error.message)
            )),
            // What does not know discover answers anything, or nothing.
            Err(Failure::Rpc(_) | Failure::Refused(_)) => Ok(Probe::Legacy),
            Err(Failure::TimedOut(_)) => Ok(Probe::Silent),
            Err(failure) => refused(failure.why("server/discover")),
        }
    }

    fn set_modern(&mut self, modern: bool) {
        self.modern = modern;
        if let Link::Http(http) = &self.link {
            http.set_modern(modern);
        }
    }

    fn initialize(&mut self, deadline: Instant, timeout: Duration) -> anyhow::Result<Value> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "gptstream", "version": env!("CARGO_PKG_VERSION")},
        });
        let info = self.starting("initialize", params, deadline, timeout)?;
        let version = info
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !ACCEPTED_VERSIONS.contains(&version) {
            return Err(McpError(format!(
                "MCP server {} speaks protocol version {:?}; gptstream speaks {}",
                crate::error::scrub(&self.name),
                crate::error::scrub(version),
                ACCEPTED_VERSIONS.join(", ")
            ))
            .into());
        }
        if let Link::Http(http) = &self.link {
            http.agreed(version);
        }
        self.link
            .send(&rpc::notification("notifications/initialized", json!({})))
            .map_err(|why| McpError(format!("MCP server {} {why}", self.shown())))?;
        Ok(info)
    }

    pub(super) fn list_tools(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Vec<McpTool>> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(cursor) => json!({"cursor": cursor}),
                None => json!({}),
            };
            let page = self.starting("tools/list", params, deadline, timeout)?;
            for tool in page
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if tools.len() >= MAX_TOOLS {
                    return Err(McpError(format!(
                        "MCP server {} lists more than {MAX_TOOLS} tools",
                        self.shown()
                    ))
                    .into());
                }
                if let Some(tool) = self.tool(tool) {
                    tools.push(tool);
                }
            }
            cursor = page
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                return Ok(tools);
            }
        }
        Err(McpError(format!(
            "MCP server {} lists its tools in more than {MAX_PAGES} pages",
            self.shown()
        ))
        .into())
    }

    /// One listed tool, if the model can be offered it: OpenAI takes function names of 1-64
    /// letters, digits, `_` and `-`; another is left out, and said so.
    fn tool(&self, tool: &Value) -> Option<McpTool> {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        if name.len() > 64 || !is_name(name) {
            eprintln!(
                "gptstream: MCP server {}: tool {:?} left out: a function name is 1-64 letters, digits, _ or -",
                self.shown(),
                crate::error::scrub(name)
            );
            return None;
        }
        let parameters = match tool.get("inputSchema") {
            Some(Value::Object(schema)) => Value::Object(schema.clone()),
            _ => json!({"type": "object", "properties": Map::new()}),
        };
        if self.modern
            && let Link::Http(http) = &self.link
        {
            // 2026-07-28: a tool whose arguments go into headers too, if its schema says so
            // lawfully; else it is left out, as the revision asks.
            match super::headers::header_annotations(&parameters) {
                Ok(headers) => http.annotate(name, headers),
                Err(why) => {
                    eprintln!(
                        "gptstream: MCP server {}: tool {} left out: {why}",
                        self.shown(),
                        crate::error::scrub(name)
                    );
                    return None;
                }
            }
        }
        Some(McpTool {
            name: name.to_owned(),
            server: self.name.clone(),
            description: tool
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            parameters,
        })
    }

    /// A request of the start, whose failures are exit 8.
    fn starting(
        &mut self,
        method: &str,
        params: Value,
        deadline: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let stop = self.stop.clone();
        let answer = self.request(method, params, Some(left), Some(&stop));
        self.refused_by_rpc = matches!(answer, Err(Failure::Rpc(_)));
        answer.map_err(|failure| {
            let why = match failure {
                Failure::TimedOut(_) => format!(
                    "did not answer {method} within {} (--mcp-timeout)",
                    seconds(timeout)
                ),
                other => other.why(method),
            };
            McpError(format!("MCP server {} {why}", self.shown())).into()
        })
    }

    /// Calls a tool. When a legacy HTTP server has ended the session (404), a new one is
    /// started, as 2025-11-25 asks, and the call is sent once more.
    pub(super) fn call_tool(
        &mut self,
        params: Value,
        timeout: Option<Duration>,
        cancel: &Cancel,
    ) -> Result<Value, Failure> {
        let began = Instant::now();
        let answer = self.request("tools/call", params.clone(), timeout, Some(cancel));
        let ended = matches!(&self.link, Link::Http(http) if http.take_ended());
        if answer.is_ok() || !ended || matches!(answer, Err(Failure::Cancelled)) {
            return answer;
        }
        self.note("ended the session: starting a new one");
        // One deadline for the whole call, the new session's handshake included.
        let call_deadline = timeout.map(|t| began + t);
        let mut deadline = Instant::now() + self.start_timeout;
        if let Some(call_deadline) = call_deadline {
            deadline = deadline.min(call_deadline);
        }
        // A stop of the run stops this handshake too.
        let start_stop = std::mem::replace(&mut self.stop, cancel.clone());
        let renewed = self.initialize(deadline, self.start_timeout);
        self.stop = start_stop;
        if cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        if let Err(err) = renewed {
            return Err(Failure::Other(format!(
                "ended the session, and a new one could not be started: {err:#}"
            )));
        }
        let left = call_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        self.request("tools/call", params, left, Some(cancel))
    }

    pub(super) fn shown(&self) -> String {
        crate::error::scrub(&self.name)
    }

    /// Sends request `method` and waits for its answer, at most `timeout`, answering the
    /// server's own requests meanwhile.
    pub(super) fn request(
        &mut self,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
        cancel: Option<&Cancel>,
    ) -> Result<Value, Failure> {
        self.next_id += 1;
        let id = self.next_id;
        let mut params = params;
        if self.modern
            && let Value::Object(fields) = &mut params
        {
            // 2026-07-28: what the handshake said once, every request says itself.
            fields.insert(
                "_meta".to_owned(),
                json!({
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientInfo":
                        {"name": "gptstream", "version": env!("CARGO_PKG_VERSION")},
                    "io.modelcontextprotocol/clientCapabilities": {},
                }),
            );
        }
        if let Err(why) = self.link.send(&rpc::request(id, method, params)) {
            return Err(Failure::Other(why));
        }
        let answer = self.wait(id, timeout, cancel);
        // Given up on, whatever the reason: a late answer to it is dropped, never taken for the
        // answer to a later request. A server still at work on it (a timeout, a stop) is told.
        match &answer {
            Err(Failure::Cancelled) => self.abandon(id, method, Some("gptstream was stopped")),
            Err(Failure::TimedOut(_)) => self.abandon(id, method, Some("timed out")),
            Err(Failure::Other(_)) => self.abandon(id, method, None),
            _ => {}
        }
        answer
    }

    /// Waits for the answer to request `id`, answering the server's own requests meanwhile.
    fn wait(
        &mut self,
        id: u64,
        timeout: Option<Duration>,
        cancel: Option<&Cancel>,
    ) -> Result<Value, Failure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if cancel.is_some_and(Cancel::is_cancelled) {
                return Err(Failure::Cancelled);
            }
            let wait = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Failure::TimedOut(timeout.unwrap_or_default()));
                    }
                    left.min(SLICE)
                }
                None => SLICE,
            };
            let message = match self.link.receive(wait) {
                Ok(FromServer::Message(message)) => message,
                Ok(FromServer::Closed) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(Failure::Other(self.link.gone()));
                }
                Ok(FromServer::Failed {
                    id: failed,
                    why,
                    refused,
                }) => {
                    if failed.as_u64() == Some(id) {
                        return Err(if refused {
                            Failure::Refused(why)
                        } else {
                            Failure::Other(why)
                        });
                    }
                    // A request given up on earlier, failing late.
                    self.note(&format!("request {failed} {why}"));
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => continue,
            };
            match message {
                Incoming::Response {
                    id: answered,
                    outcome,
                } => {
                    if answered.as_u64() == Some(id) {
                        return outcome.map_err(Failure::Rpc);
                    }
                    if answered
                        .as_u64()
                        .is_some_and(|n| self.abandoned.contains(&n))
                    {
                        continue;
                    }
                    return Err(Failure::Other(format!(
                        "answered a request gptstream never sent (id {})",
                        crate::error::scrub(&answered.to_string())
                    )));
                }
                Incoming::Request { id, method } if self.modern => {
                    // 2026-07-28 servers ask through results, and a client sends no answers.
                    self.note(&format!("asks {method} (not answered: 2026-07-28) {id}"));
                }
                Incoming::Request { id, method } => {
                    self.note(&format!("asks {method}"));
                    // The call does not hang on our answer: a server gone for good fails it
                    // by its end instead.
                    if let Err(why) = self.link.send(&rpc::answer(&id, &method)) {
                        self.note(&format!("cannot answer {method}: {why}"));
                    }
                }
                Incoming::Notification { method, params } => {
                    self.note(&format!("{method} {params}"));
                }
                Incoming::Garbage { what } => {
                    return Err(Failure::Other(format!(
                        "wrote what is not JSON-RPC on stdout ({what})"
                    )));
                }
                Incoming::TooLong => {
                    return Err(Failure::Other(format!(
                        "sent a message over {} MiB",
                        rpc::MAX_MESSAGE >> 20
                    )));
                }
            }
        }
    }

    /// Gives request `id` up: its late answer will be dropped, and over HTTP its stream is
    /// closed (which alone is the cancellation in the 2026-07-28 era). With a `reason`, the
    /// server is told too (`notifications/cancelled`).
    fn abandon(&mut self, id: u64, method: &str, reason: Option<&str>) {
        self.abandoned.push(id);
        let Some(reason) = reason else {
            self.link.stop_request(id);
            return;
        };
        // Not for the probe (a legacy server never saw it begin), nor for `initialize` (which
        // must not be cancelled), nor for a modern server over HTTP (closing the stream is its
        // cancellation).
        let closing_is_cancelling = self.modern && matches!(self.link, Link::Http(_));
        if !(self.probing || method == "initialize" || closing_is_cancelling) {
            let _ = self.link.send(&rpc::notification(
                "notifications/cancelled",
                json!({"requestId": id, "reason": reason}),
            ));
        }
        self.link.stop_request(id);
    }

    fn note(&self, what: &str) {
        if self.verbose {
            note(&self.shown(), what);
        }
    }
}

/// Shows `what` of server `name` on stderr (`-v`), shortened to one safe line.
pub(super) fn note(name: &str, what: &str) {
    let mut what = what.to_owned();
    if what.len() > 300 {
        let mut end = 300;
        while !what.is_char_boundary(end) {
            end -= 1;
        }
        what.truncate(end);
        what.push('…');
    }
    eprintln!(
        "* mcp {name}: {}",
        crate::emit::terminal::visible(&crate::error::scrub(&what))
    );
}

pub(super) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}
