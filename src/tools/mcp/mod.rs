//! The MCP client: tools from Model Context Protocol servers (`--mcp [NAME=]COMMAND`), offered
//! to the model beside `--tools` and run through the same tool loop.
//!
//! Each server is started once per run, initialized (`initialize`, then
//! `notifications/initialized`), and its tools listed (`tools/list`, every page). A call is a
//! `tools/call`; its text content is the tool message. A request waits for its answer by id;
//! meanwhile a `ping` of the server's is answered, its other requests get "method not found",
//! and its notifications are shown with `-v` only. Servers are stopped when the toolbox goes.

mod client;
mod headers;
mod http;
mod rpc;
mod stdio;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::control::supervisor::Cancel;
use crate::error::{McpError, UsageError};
use crate::event::{ToolCall, ToolOutcome};
use client::{Failure, Link, Server, seconds};
use http::Http;
use stdio::Process;

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
        // Its password or key, wherever a server echoes it, is blanked like any other secret.
        for secret in crate::emit::redact::url_secrets(text) {
            crate::error::register_secret(&secret);
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

    /// Where the server is and what it gets, secrets as `***`: `sh -c COMMAND (env: NAME, ...)`
    /// or `POST URL (Header: value, ...)`.
    fn described(&self) -> String {
        let (what, extras): (String, Vec<String>) = match self {
            Endpoint::Command { command, env } => (
                format!("sh -c {}", shown_command(command)),
                env.iter().map(|(name, _)| name.clone()).collect(),
            ),
            Endpoint::Url { url, headers } => (
                format!("POST {}", crate::emit::redact::redact_url(url)),
                headers
                    .iter()
                    .map(|(name, value)| {
                        let value = crate::transport::request::shown_header_value(name, value);
                        format!("{name}: {value}")
                    })
                    .collect(),
            ),
        };
        match (self, extras.is_empty()) {
            (_, true) => what,
            (Endpoint::Command { .. }, false) => format!("{what} (env: {})", extras.join(", ")),
            (Endpoint::Url { .. }, false) => format!("{what} ({})", extras.join(", ")),
        }
    }

    /// The server as notes and errors show it before it has a name: its command, or its URL
    /// without secrets.
    fn shown(&self) -> String {
        match self {
            Endpoint::Command { command, .. } => shown_command(command),
            Endpoint::Url { url, .. } => crate::emit::redact::redact_url(url),
        }
    }
}

/// A command as it may be shown, its secrets as `***`: the value of an assignment whose name
/// says it is one (`GITHUB_TOKEN=...`, `--api-key=...`), the word after such a flag
/// (`--token VALUE`), a bearer token (`'Authorization: Bearer ...'`), a URL's password or key.
/// Each value hidden is registered as a secret, so a server that echoes it is blanked too.
fn shown_command(command: &str) -> String {
    let words = shell_words(command);
    let mut shown = Vec::with_capacity(words.len());
    let mut hide_next = false;
    for (raw, value) in &words {
        let is_secret = crate::transport::request::is_secret_name;
        let hidden = if std::mem::take(&mut hide_next) {
            if value == "Bearer" {
                // `Authorization: Bearer TOKEN`: the token is the secret.
                hide_next = true;
                shown.push(raw.clone());
                continue;
            }
            Some((String::new(), value.clone()))
        } else if let Some((name, secret)) = value.split_once('=')
            && !secret.is_empty()
            && !name.is_empty()
            && !name.contains(' ')
            && is_secret(name.trim_start_matches('-'))
        {
            Some((format!("{name}="), secret.to_owned()))
        } else if let Some(at) = value.find("Bearer ") {
            Some((value[..at + 7].to_owned(), value[at + 7..].to_owned()))
        } else {
            if value.starts_with('-')
                && !value.contains('=')
                && is_secret(value.trim_start_matches('-'))
            {
                hide_next = true;
            }
            hide_next |= value == "Bearer" || value.ends_with("Authorization:");
            None
        };
        match hidden {
            Some((before, secret)) => {
                crate::error::register_secret(&secret);
                shown.push(format!("{before}***"));
            }
            None if raw.contains("://") => shown.push(crate::emit::redact::redact_url(raw)),
            None => shown.push(raw.clone()),
        }
    }
    shown.join(" ")
}

/// A command's words as `sh` would split them (quotes and backslashes, not expansions): each
/// as written, and its value.
fn shell_words(command: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let (mut raw, mut value) = (String::new(), String::new());
    let mut chars = command.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !raw.is_empty() {
                    words.push((std::mem::take(&mut raw), std::mem::take(&mut value)));
                }
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None | Some('"'), '\\') => {
                raw.push(c);
                if let Some(next) = chars.next() {
                    raw.push(next);
                    value.push(next);
                }
                continue;
            }
            _ => value.push(c),
        }
        raw.push(c);
    }
    if !raw.is_empty() {
        words.push((raw, value));
    }
    words
}

/// A server's or a tool's name: letters, digits, `_` and `-`.
pub(crate) fn is_name(name: &str) -> bool {
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

impl Drop for Servers {
    /// Every server stopped first, then what they started outside their groups swept (it may
    /// hold their pipes), then their threads joined.
    ///
    /// A signal meanwhile waits until they are gone (it would end gptstream with them left
    /// behind), then is acted on.
    fn drop(&mut self) {
        if self.servers.is_empty() {
            return;
        }
        let ((), signal) = crate::control::signals::catching(
            || {},
            || {
                let threads: Vec<_> = self
                    .servers
                    .iter()
                    .flat_map(|server| lock(server).stop())
                    .collect();
                crate::control::reaper::sweep_all();
                for thread in threads {
                    let _ = thread.join();
                }
            },
        );
        if let Some(signal) = signal {
            crate::control::signals::raise(signal);
        }
    }
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
    /// How to reach Streamable HTTP servers (proxy, `--cacert`, `--connect-timeout`).
    pub(crate) transport: Option<crate::transport::http::Transport>,
    pub(crate) verbose: bool,
}

impl Servers {
    /// Starts and initializes every server and lists its tools. A server that cannot start,
    /// exits, or does not answer in time is exit 8, naming it; two tools of one name, exit 2.
    pub(crate) fn start(start: &Start<'_>) -> anyhow::Result<Servers> {
        // Ctrl-C or SIGTERM while the servers start stops the start, and the servers started
        // so far are stopped as at any end: not killed with gptstream and left behind.
        let stop = Cancel::default();
        let (started, signal) = crate::control::signals::catching(
            {
                let stop = stop.clone();
                move || stop.cancel()
            },
            || {
                let mut servers = Servers::default();
                for spec in start.specs {
                    servers.add(Self::start_one(spec, start, &stop)?)?;
                }
                anyhow::Ok(servers)
            },
        );
        match signal {
            Some(signal) => Err(crate::error::Interrupted(signal).into()),
            None => started,
        }
    }

    /// Starts one server, finds out its era and lists its tools.
    fn start_one(
        spec: &Spec,
        start: &Start<'_>,
        stop: &Cancel,
    ) -> anyhow::Result<(Server, Vec<McpTool>)> {
        let deadline = Instant::now() + start.timeout;
        // First: it registers the secrets in the command, before the server can echo them.
        let described = spec.endpoint.described();
        let shown = spec.name.clone().unwrap_or_else(|| spec.endpoint.shown());
        let link = match &spec.endpoint {
            Endpoint::Command { command, env } => Link::Stdio(
                Process::start(&shown, command, env, &start.hidden, start.verbose)
                    .map_err(|err| McpError(format!("{err:#}")))?,
            ),
            Endpoint::Url { url, headers } => {
                let Some(transport) = &start.transport else {
                    anyhow::bail!("no HTTP transport for MCP server {shown}");
                };
                Link::Http(Http::new(&shown, url, headers, transport, start.verbose))
            }
        };
        let mut server = Server::new(shown, described, link, stop.clone(), start.verbose);
        let own_name = server.start_up(deadline, start.timeout)?;
        if spec.name.is_none()
            && let Some(name) = own_name
        {
            server.name = name;
        }
        let tools = server.list_tools(deadline, start.timeout)?;
        Ok((server, tools))
    }

    /// Adds a started server: two of one name, or two tools of one name, are exit 2.
    fn add(&mut self, (server, tools): (Server, Vec<McpTool>)) -> anyhow::Result<()> {
        if self.servers.iter().any(|s| lock(s).name == server.name) {
            return Err(UsageError(format!(
                "two MCP servers are named {}: give one a name with --mcp NAME=COMMAND",
                crate::error::scrub(&server.name)
            ))
            .into());
        }
        for tool in tools {
            if let Some(other) = self.tools.iter().find(|t| t.name == tool.name) {
                return Err(UsageError(format!(
                    "MCP servers {} and {} both offer a tool named {}",
                    crate::error::scrub(&other.server),
                    crate::error::scrub(&tool.server),
                    crate::error::scrub(&tool.name)
                ))
                .into());
            }
            self.tools.push(tool);
        }
        self.servers.push(Mutex::new(server));
        Ok(())
    }

    /// Each server in one line, `mcp NAME: sh -c COMMAND (env: A, B)` or `mcp NAME: POST URL
    /// (Header: value, ...)`, secrets as `***`.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| {
                let server = lock(server);
                crate::emit::terminal::visible(&format!(
                    "mcp {}: {}",
                    server.shown(),
                    crate::error::scrub(&server.described)
                ))
                .into_owned()
            })
            .collect()
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
        let (text, is_error, timed_out) = match server.call_tool(params, timeout, cancel) {
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
            Err(failure) => (format!("error: {}", failure.why("tools/call")), true, false),
        };
        Ok(outcome(text, is_error, timed_out, max_output, &name))
    }
}

fn lock(server: &Mutex<Server>) -> std::sync::MutexGuard<'_, Server> {
    server.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tool's result as the model gets it: `max_output` bytes of it at most, and a note of the cut.
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
        text.push_str(&super::truncation_note(output_bytes, end));
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
    if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
        // 2026-07-28: the server asks the client (elicitation, sampling, roots) before it
        // answers; gptstream declares none of those capabilities.
        let text = "error: the tool asked gptstream for input (elicitation, sampling or roots), which it does not give";
        return (text.to_owned(), true);
    }
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
    fn commands_are_shown_without_their_secrets() {
        for (command, shown) in [
            (
                "env GITHUB_TOKEN=ghp_abc server --api-key=k1 --dir=/tmp http://u:p@h/x",
                "env GITHUB_TOKEN=*** server --api-key=*** --dir=/tmp http://u:***@h/x",
            ),
            ("GH_TOKEN='a b' server", "GH_TOKEN=*** server"),
            (
                "server --token sekrit --verbose",
                "server --token *** --verbose",
            ),
            (
                "npx mcp-remote https://h/mcp --header 'Authorization: Bearer tok-123456789'",
                "npx mcp-remote https://h/mcp --header Authorization: Bearer ***",
            ),
            (
                "npx mcp-remote https://h/mcp --header Authorization: Bearer tok-123456789",
                "npx mcp-remote https://h/mcp --header Authorization: Bearer ***",
            ),
            (
                "python3 'my server.py' --x=1",
                "python3 'my server.py' --x=1",
            ),
        ] {
            assert_eq!(shown_command(command), shown, "{command}");
        }
        assert_eq!(
            crate::error::scrub("bad credentials: tok-123456789"),
            "bad credentials: ***",
            "what is hidden is a secret everywhere"
        );
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
            (
                "aéa\n[output truncated by gptstream: 30 bytes, first 4 kept]",
                30,
                true
            )
        );
    }
}
