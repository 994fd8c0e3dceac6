//! The MCP client: tools from Model Context Protocol servers (`--mcp [NAME=]COMMAND`), offered
//! to the model beside `--tools` and run through the same tool loop.
//!
//! Each server is started once per run, initialized (`initialize`, then
//! `notifications/initialized`), and its tools listed (`tools/list`, every page). A call is a
//! `tools/call`; its text content is the tool message. A request waits for its answer by id;
//! meanwhile a `ping` of the server's is answered, its other requests get "method not found",
//! and its notifications are shown with `-v` only. Servers are stopped when the toolbox goes.

mod http;
mod rpc;
mod stdio;

use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::control::supervisor::Cancel;
use crate::error::{McpError, UsageError};
use crate::event::{ToolCall, ToolOutcome};
use http::Http;
use rpc::{FromServer, Incoming};
use stdio::Process;

/// The revision we ask for, and the ones we accept a server choosing instead.
const PROTOCOL_VERSION: &str = "2025-11-25";
const ACCEPTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Bounds on what a server may list: pages of `tools/list`, and tools in all.
const MAX_PAGES: usize = 100;
const MAX_TOOLS: usize = 1024;

/// How often a wait looks at the cancel flag.
const SLICE: Duration = Duration::from_millis(50);

/// `--mcp [NAME=]COMMAND` or `--mcp [NAME=]URL`, parsed (or a `[mcp.NAME]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    /// The name the user gave; else the server's own `serverInfo.name`.
    pub(crate) name: Option<String>,
    pub(crate) endpoint: Endpoint,
}

/// Where a server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Over stdio: `sh -c command`, with `env` added to the environment.
    Command {
        command: String,
        env: Vec<(String, String)>,
    },
    /// Over Streamable HTTP, every POST with `headers`.
    Url {
        url: String,
        headers: Vec<(String, String)>,
    },
}

impl Spec {
    /// `NAME=` is a name when what precedes the first `=` is one (letters, digits, `_`, `-`);
    /// a command that starts with a variable assignment needs a name before it. An
    /// `http://` or `https://` URL is a Streamable HTTP server.
    pub(crate) fn parse(spec: &str) -> Result<Spec, UsageError> {
        let (name, command) = match spec.split_once('=') {
            Some((name, command)) if is_name(name) => (Some(name.to_owned()), command),
            _ => (None, spec),
        };
        if command.trim().is_empty() {
            return Err(UsageError(format!(
                "bad --mcp {}: expected [NAME=]COMMAND or [NAME=]URL",
                crate::error::scrub(spec)
            )));
        }
        let endpoint = match Endpoint::url(command.trim())? {
            Some(url) => url,
            None => Endpoint::Command {
                command: command.to_owned(),
                env: Vec::new(),
            },
        };
        Ok(Spec { name, endpoint })
    }
}

impl Endpoint {
    /// `text` as a Streamable HTTP endpoint, if it is a URL: one ureq can reach.
    pub(crate) fn url(text: &str) -> Result<Option<Endpoint>, UsageError> {
        let lower = text.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Ok(None);
        }
        let shown = crate::emit::redact::redact_url(text);
        match text.parse::<ureq::http::Uri>() {
            Ok(uri) if uri.host().is_some_and(|host| !host.is_empty()) => Ok(Some(Endpoint::Url {
                url: text.to_owned(),
                headers: Vec::new(),
            })),
            _ => Err(UsageError(format!("bad --mcp URL {shown}"))),
        }
    }

    /// The server as notes and errors show it before it has a name: its command, or its URL
    /// without secrets.
    fn shown(&self) -> String {
        match self {
            Endpoint::Command { command, .. } => command.clone(),
            Endpoint::Url { url, .. } => crate::emit::redact::redact_url(url),
        }
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One tool a server offers.
#[derive(Debug, Clone)]
pub(crate) struct McpTool {
    pub(crate) name: String,
    pub(crate) server: String,
    pub(crate) description: String,
    /// `inputSchema`, the function's parameters.
    pub(crate) parameters: Value,
}

impl McpTool {
    /// The tool as a chat `tools` entry.
    pub(crate) fn definition(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }})
    }
}

/// The servers of a run, each behind a lock: the tool loop runs one call at a time, but the
/// toolbox is shared by reference.
#[derive(Default)]
pub(crate) struct Servers {
    servers: Vec<Mutex<Server>>,
    pub(crate) tools: Vec<McpTool>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers")
            .field("servers", &self.servers.len())
            .field("tools", &self.tools)
            .finish()
    }
}

/// What to start the servers with.
pub(crate) struct Start<'a> {
    pub(crate) specs: &'a [Spec],
    /// `--mcp-timeout`: to start, initialize and list the tools.
    pub(crate) timeout: Duration,
    /// Variables the servers must not see: the API key's.
    pub(crate) hidden: Vec<String>,
    /// The agent for Streamable HTTP servers (proxy, `--cacert`, `--connect-timeout`).
    pub(crate) agent: Option<ureq::Agent>,
    pub(crate) verbose: bool,
}

impl Servers {
    /// Starts and initializes every server and lists its tools. A server that cannot start,
    /// exits, or does not answer in time is exit 8, naming it; two tools of one name, exit 2.
    pub(crate) fn start(start: &Start<'_>) -> anyhow::Result<Servers> {
        let mut servers = Servers::default();
        for spec in start.specs {
            let deadline = Instant::now() + start.timeout;
            let shown = spec.name.clone().unwrap_or_else(|| spec.endpoint.shown());
            let link = match &spec.endpoint {
                Endpoint::Command { command, env } => Link::Stdio(
                    Process::start(&shown, command, env, &start.hidden, start.verbose)
                        .map_err(|err| McpError(format!("{err:#}")))?,
                ),
                Endpoint::Url { url, headers } => {
                    let Some(agent) = &start.agent else {
                        anyhow::bail!("no HTTP agent for MCP server {shown}");
                    };
                    Link::Http(Http::new(
                        &shown,
                        url,
                        headers,
                        agent.clone(),
                        start.verbose,
                    ))
                }
            };
            let mut server = Server {
                name: shown,
                link,
                next_id: 0,
                abandoned: Vec::new(),
                verbose: start.verbose,
            };
            let info = server.initialize(deadline, start.timeout)?;
            if spec.name.is_none()
                && let Some(name) = info
                    .get("serverInfo")
                    .and_then(|i| i.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
            {
                server.name = name.to_owned();
            }
            if servers.servers.iter().any(|s| lock(s).name == server.name) {
                return Err(UsageError(format!(
                    "two MCP servers are named {}: give one a name with --mcp NAME=COMMAND",
                    crate::error::scrub(&server.name)
                ))
                .into());
            }
            let tools = server.list_tools(deadline, start.timeout)?;
            for tool in tools {
                if let Some(other) = servers.tools.iter().find(|t| t.name == tool.name) {
                    return Err(UsageError(format!(
                        "MCP servers {} and {} both offer a tool named {}",
                        crate::error::scrub(&other.server),
                        crate::error::scrub(&tool.server),
                        crate::error::scrub(&tool.name)
                    ))
                    .into());
                }
                servers.tools.push(tool);
            }
            servers.servers.push(Mutex::new(server));
        }
        Ok(servers)
    }

    /// The server that offers tool `name`, if one does.
    pub(crate) fn server_of(&self, name: &str) -> Option<&str> {
        self.tools
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.server.as_str())
    }

    /// Runs `call` on its server. Everything that goes wrong with the call (a timeout, an
    /// error answer, a server that died) is an error result for the model; only a stop is an
    /// error here.
    pub(crate) fn call(
        &self,
        call: &ToolCall,
        max_output: usize,
        timeout: Option<Duration>,
        cancel: &Cancel,
    ) -> anyhow::Result<ToolOutcome> {
        let Some(server_name) = self.server_of(&call.name) else {
            anyhow::bail!("no MCP server offers {}", call.name);
        };
        let Some(server) = self.servers.iter().find(|s| lock(s).name == server_name) else {
            anyhow::bail!("no MCP server named {server_name}");
        };
        let mut server = lock(server);
        let arguments = match call.parsed_arguments() {
            Some(Value::Object(arguments)) => Value::Object(arguments),
            // Servers take an object; an empty call is no arguments.
            Some(Value::Null) | None if call.arguments.trim().is_empty() => json!({}),
            _ => {
                return Ok(outcome(
                    format!(
                        "error: the arguments are not a JSON object: {}",
                        call.arguments
                    ),
                    true,
                    false,
                    max_output,
                    &server.name,
                ));
            }
        };
        let params = json!({"name": call.name, "arguments": arguments});
        let name = server.name.clone();
        let (text, is_error, timed_out) =
            match server.request("tools/call", params, timeout, Some(cancel)) {
                Ok(result) => {
                    let (text, is_error) = result_text(&result);
                    (text, is_error, false)
                }
                Err(Failure::Cancelled) => return Err(crate::error::Cancelled.into()),
                Err(Failure::TimedOut(after)) => (
                    format!(
                        "error: the tool did not answer within {} (--tool-timeout)",
                        seconds(after)
                    ),
                    true,
                    true,
                ),
                Err(Failure::Other(why)) => (format!("error: {why}"), true, false),
            };
        Ok(outcome(text, is_error, timed_out, max_output, &name))
    }
}

fn lock(server: &Mutex<Server>) -> std::sync::MutexGuard<'_, Server> {
    server.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tool's result as the model gets it: `max_output` bytes of it at most.
fn outcome(
    mut text: String,
    is_error: bool,
    timed_out: bool,
    max_output: usize,
    server: &str,
) -> ToolOutcome {
    let output_bytes = text.len();
    let truncated = text.len() > max_output;
    if truncated {
        let mut end = max_output;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    ToolOutcome {
        content: text,
        exit_code: None,
        output_bytes,
        truncated,
        timed_out,
        server: Some(server.to_owned()),
        is_error: Some(is_error),
    }
}

/// The text of a `tools/call` result: its text parts, one per line; other parts each described
/// in a short line; `structuredContent` when there is no text. `isError` starts it `error: `.
fn result_text(result: &Value) -> (String, bool) {
    let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
    let mut lines: Vec<String> = Vec::new();
    for part in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        let field = |key: &str| part.get(key).and_then(Value::as_str).unwrap_or("");
        lines.push(match kind {
            "text" => field("text").to_owned(),
            "image" | "audio" => {
                let bytes = field("data").len() / 4 * 3;
                format!("[{kind}: {}, about {bytes} bytes]", field("mimeType"))
            }
            "resource_link" => format!("[resource link: {}]", field("uri")),
            "resource" => {
                let resource = part.get("resource").cloned().unwrap_or(Value::Null);
                match resource.get("text").and_then(Value::as_str) {
                    Some(text) => text.to_owned(),
                    None => format!(
                        "[resource: {}]",
                        resource.get("uri").and_then(Value::as_str).unwrap_or("")
                    ),
                }
            }
            other => format!("[{other} content]"),
        });
    }
    let mut text = lines.join("\n");
    if text.is_empty()
        && let Some(structured) = result.get("structuredContent")
    {
        text = structured.to_string();
    }
    if is_error {
        text = format!("error: {text}");
    }
    (text, is_error)
}

/// Why a request got no answer.
enum Failure {
    TimedOut(Duration),
    Cancelled,
    Other(String),
}

/// How messages reach a server and come back.
enum Link {
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

struct Server {
    name: String,
    link: Link,
    next_id: u64,
    /// Requests given up on (timed out): a late answer to one is dropped, not an error.
    abandoned: Vec<u64>,
    verbose: bool,
}

impl Server {
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

    fn list_tools(&mut self, deadline: Instant, timeout: Duration) -> anyhow::Result<Vec<McpTool>> {
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

    fn shown(&self) -> String {
        crate::error::scrub(&self.name)
    }

    /// Sends request `method` and waits for its answer, at most `timeout`, answering the
    /// server's own requests meanwhile.
    fn request(
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
fn note(name: &str, what: &str) {
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

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_with_and_without_a_name() {
        assert_eq!(
            Spec::parse("fs=npx server /tmp").unwrap(),
            Spec {
                name: Some("fs".into()),
                endpoint: Endpoint::Command {
                    command: "npx server /tmp".into(),
                    env: Vec::new()
                }
            }
        );
        assert_eq!(
            Spec::parse("python3 server.py --x=1").unwrap(),
            Spec {
                name: None,
                endpoint: Endpoint::Command {
                    command: "python3 server.py --x=1".into(),
                    env: Vec::new()
                }
            }
        );
        assert_eq!(
            Spec::parse("web=https://mcp.example.com/mcp?x=1").unwrap(),
            Spec {
                name: Some("web".into()),
                endpoint: Endpoint::Url {
                    url: "https://mcp.example.com/mcp?x=1".into(),
                    headers: Vec::new()
                }
            }
        );
        assert!(Spec::parse("HTTP://127.0.0.1:8/mcp").is_ok_and(|spec| spec.name.is_none()));
        assert!(Spec::parse("http://").is_err());
        assert!(Spec::parse("http://exa mple.com/").is_err());
        assert!(Spec::parse("fs=").is_err());
        assert!(Spec::parse("").is_err());
    }

    #[test]
    fn result_text_of_every_part() {
        let result = json!({"content": [
            {"type": "text", "text": "one"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource_link", "uri": "file:///a"},
            {"type": "resource", "resource": {"uri": "file:///b", "text": "bee"}},
        ]});
        assert_eq!(
            result_text(&result),
            (
                "one\n[image: image/png, about 3 bytes]\n[resource link: file:///a]\nbee".into(),
                false
            )
        );
        assert_eq!(
            result_text(&json!({"content": [{"type": "text", "text": "no"}], "isError": true})),
            ("error: no".into(), true)
        );
        assert_eq!(
            result_text(&json!({"content": [], "structuredContent": {"n": 1}})),
            ("{\"n\":1}".into(), false)
        );
    }

    #[test]
    fn long_results_are_cut_at_a_character() {
        let cut = outcome("aé".repeat(10), false, false, 5, "s");
        assert_eq!(
            (cut.content.as_str(), cut.output_bytes, cut.truncated),
            ("aéa", 30, true)
        );
    }
}
