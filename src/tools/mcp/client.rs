//! One MCP server's client: messages over its link (stdio or Streamable HTTP), a request
//! waiting for the answer of its id while the server's own requests are answered and its
//! notifications noted; `initialize` and `tools/list` on top.

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::http::Http;
use super::rpc::{self, FromServer, Incoming};
use super::stdio::Process;
use super::{McpTool, is_name};
use crate::control::supervisor::Cancel;
use crate::error::McpError;

/// The revision we ask for, and the ones we accept a server choosing instead.
const PROTOCOL_VERSION: &str = "2025-11-25";
const ACCEPTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Bounds on what a server may list: pages of `tools/list`, and tools in all.
const MAX_PAGES: usize = 100;
const MAX_TOOLS: usize = 1024;

/// How often a wait looks at the cancel flag.
const SLICE: Duration = Duration::from_millis(50);

/// Why a request got no answer.
pub(super) enum Failure {
    TimedOut(Duration),
    Cancelled,
    Other(String),
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
            Link::Stdio(process) => process.messages.recv_timeout(wait),
            Link::Http(http) => http.receive(wait),
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
    verbose: bool,
}

impl Server {
    pub(super) fn new(name: String, described: String, link: Link, verbose: bool) -> Server {
        Server {
            name,
            described,
            link,
            next_id: 0,
            abandoned: Vec::new(),
            verbose,
        }
    }

    pub(super) fn initialize(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
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
        self.request(method, params, Some(left), None)
            .map_err(|failure| {
                let why = match failure {
                    Failure::TimedOut(_) => format!(
                        "did not answer {method} within {} (--mcp-timeout)",
                        seconds(timeout)
                    ),
                    Failure::Cancelled => "was stopped".to_owned(),
                    Failure::Other(why) => why,
                };
                McpError(format!("MCP server {} {why}", self.shown())).into()
            })
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
        if let Err(why) = self.link.send(&rpc::request(id, method, params)) {
            return Err(Failure::Other(why));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if cancel.is_some_and(Cancel::is_cancelled) {
                self.abandon(id, "gptstream was stopped");
                return Err(Failure::Cancelled);
            }
            let wait = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.abandon(id, "timed out");
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
                Ok(FromServer::Failed { id: failed, why }) => {
                    if failed.as_u64() == Some(id) {
                        return Err(Failure::Other(why));
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
                        return outcome.map_err(|error| {
                            Failure::Other(format!(
                                "answered {method} with error {}: {}",
                                error.code,
                                crate::error::scrub(&error.message)
                            ))
                        });
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
                Incoming::Request { id, method } => {
                    self.note(&format!("asks {method}"));
                    if let Err(why) = self.link.send(&rpc::answer(&id, &method)) {
                        return Err(Failure::Other(why));
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

    /// Tells the server request `id` is given up (`notifications/cancelled`); its late answer
    /// will be dropped.
    fn abandon(&mut self, id: u64, reason: &str) {
        self.abandoned.push(id);
        let _ = self.link.send(&rpc::notification(
            "notifications/cancelled",
            json!({"requestId": id, "reason": reason}),
        ));
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
