//! The HTTP transport: one blocking POST with ureq, and what the answer turns into.
//!
//! A 2xx `text/event-stream` answer becomes a reader of raw body bytes for the SSE decoder; a 2xx
//! JSON answer (a server that ignored `stream: true`) is read whole; anything else becomes one
//! plain error line. Every way the network can fail is named here, with the flag that governs it.

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::{SendBody, Timeout};

use crate::emit::redact::redact_url;
use crate::error::{ApiError, NetworkError, StreamError, UsageError, scrub};
use crate::transport::body::Wire;
use crate::transport::proxy::ProxyInfo;
use crate::transport::request::{Request, host_of};
use crate::transport::retry;

/// How much of an error body we read: enough for any JSON error, not a whole HTML page.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;
/// A non-streamed completion is read whole; this bounds it.
const JSON_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// How to reach the server: the time limits and the proxy, from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    pub(crate) connect: Duration,
    pub(crate) first_byte: Duration,
    pub(crate) idle: Duration,
    pub(crate) total: Option<Duration>,
    /// The proxy from `--proxy` or the environment, resolved once (see `proxy::resolve`).
    pub(crate) proxy: Option<ProxyInfo>,
    /// `--cacert`: the roots to trust instead of the built-in ones.
    pub(crate) roots: Option<RootCerts>,
    /// `--verbose`: show the request and the response head on stderr.
    pub(crate) verbose: bool,
}

/// Reads the certificates of a PEM file (`--cacert`, `SSL_CERT_FILE`); a file with none is an
/// error, not an empty trust store that would fail every connection later.
pub(crate) fn load_roots(path: &Path) -> anyhow::Result<RootCerts> {
    let name = path.display();
    let pem = std::fs::read(path)
        .map_err(|err| UsageError(format!("cannot read --cacert {name}: {err}")))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(err) => {
                return Err(UsageError(format!("bad PEM in --cacert {name}: {err}")).into());
            }
        }
    }
    if certificates.is_empty() {
        return Err(UsageError(format!("--cacert {name} holds no PEM certificate")).into());
    }
    Ok(RootCerts::new_with_certs(&certificates))
}

/// A successful answer.
pub(crate) enum Reply {
    /// Server-Sent Events, to be decoded as they arrive.
    EventStream(Box<dyn Read + Send>),
    /// A complete chat completion (or response) object, and its bytes as received.
    Json(Value, Vec<u8>),
}

/// ureq's buffer size each way.
const IO_BUFFER: usize = 32 * 1024;
/// The largest response head we accept. ureq finds a head too large only once its input buffer
/// holds more than this: with the limit at the buffer's size, a full buffer was "no progress",
/// reported as the server closing the connection (and retried). So that buffer is one byte
/// larger.
const MAX_RESPONSE_HEAD: usize = IO_BUFFER;

/// The agent for one run or chat: every request of it goes through this one, so a kept-alive
/// connection is reused (tool-loop follow-ups, retries, chat turns), and shutting it down ends
/// a read blocked on a silent server.
pub(crate) fn agent(transport: &Transport) -> anyhow::Result<ureq::Agent> {
    Ok(config(transport)
        .timeout_recv_response(Some(transport.first_byte))
        .timeout_per_read(Some(transport.idle))
        .timeout_global(transport.total)
        .build()
        .into())
}

/// The agent for MCP servers over Streamable HTTP: the same proxy, roots and connect timeout,
/// but no limit on a tool's time to answer or pauses between its events: `--tool-timeout` and
/// `--mcp-timeout` say that, and shutting the agent down ends what is left at the end.
pub(crate) fn tool_agent(transport: &Transport) -> ureq::Agent {
    config(transport).build().into()
}

fn config(transport: &Transport) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let mut config = ureq::Agent::config_builder();
    // Set even when there is none: ureq's default reads the environment itself, and skips a
    // value it cannot parse.
    config = config.proxy(transport.proxy.as_ref().map(|proxy| proxy.proxy().clone()));
    if let Some(roots) = &transport.roots {
        config = config.tls_config(TlsConfig::builder().root_certs(roots.clone()).build());
    }
    config
        .http_status_as_error(false)
        // ureq's 128 KiB buffers each way are zero-filled when the connection opens, which is
        // 6% of our peak memory. A request head and a response head fit in far less, and the
        // body is read through our own buffer (pipeline::READ_BUFFER).
        .input_buffer_size(MAX_RESPONSE_HEAD + 1)
        .output_buffer_size(IO_BUFFER)
        .max_response_header_size(MAX_RESPONSE_HEAD)
        .max_redirects(0)
        .user_agent(concat!("gptstream/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(transport.connect))
}

/// Sends the request through `agent` and waits for the response headers.
pub(crate) fn send(
    agent: &ureq::Agent,
    request: &Request,
    transport: &Transport,
) -> anyhow::Result<Reply> {
    let mut builder = agent
        .post(&request.url)
        .header("Content-Type", "application/json");
    for (name, value) in request.header_lines() {
        builder = builder.header(name, value);
    }
    // Written into the socket from the conversation, with its exact length: not copied first.
    let json = request.json();
    let body = Wire::new(&json)?;
    builder = builder.header("Content-Length", body.len());
    if transport.verbose {
        for line in request.describe() {
            eprintln!("> {line}");
        }
    }
    let response = builder
        .send(SendBody::from_reader(&mut body.reader()))
        .map_err(|err| describe_failure(err, &request.url, transport, transport.proxy.as_ref()))?;
    if transport.verbose {
        show_response_head(&response);
    }

    let (response, content_type) = successful(response, request, "POST")?;
    if content_type.starts_with("application/json") {
        let (value, bytes) = json_body(
            response,
            request,
            transport,
            "the JSON response does not parse",
        )?;
        return Ok(Reply::Json(value, bytes));
    }
    Ok(Reply::EventStream(Box::new(
        response.into_body().into_reader(),
    )))
}

/// A 2xx response with its content type (lowercased), or the error its status means.
fn successful(
    response: ureq::http::Response<ureq::Body>,
    request: &Request,
    method: &str,
) -> anyhow::Result<(ureq::http::Response<ureq::Body>, String)> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !(200..300).contains(&status) {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let retry_after = header("retry-after")
            .and_then(|value| retry::parse_retry_after(&value, std::time::SystemTime::now()));
        let bytes = read_limited(response.into_body(), ERROR_BODY_LIMIT);
        let mut error = status_error(status, &content_type, &bytes);
        error.retry_after = retry_after;
        if let Some(location) = location.filter(|_| (300..400).contains(&status)) {
            let location = scrub(&redact_url(&location));
            error.message = format!("redirected to {location}; use that as --base-url");
        } else if status == 401 && request.header_lines().is_empty() {
            error
                .message
                .push_str(" (no API key was sent: set OPENAI_API_KEY)");
        } else if status == 404 {
            let hint = not_found_hint(method, &request.url, &error);
            error.message.push_str(&hint);
        }
        return Err(error.into());
    }
    Ok((response, content_type))
}

/// `GET` of a JSON document (`--list-models`), with the request's URL, key and headers.
pub(crate) fn get_json(
    agent: &ureq::Agent,
    request: &Request,
    transport: &Transport,
) -> anyhow::Result<Value> {
    let mut builder = agent.get(&request.url).header("Accept", "application/json");
    for (name, value) in request.header_lines() {
        builder = builder.header(name, value);
    }
    if transport.verbose {
        eprintln!("> GET {}", redact_url(&request.url));
        for line in request.describe().iter().skip(2) {
            eprintln!("> {line}");
        }
    }
    let response = builder
        .call()
        .map_err(|err| describe_failure(err, &request.url, transport, transport.proxy.as_ref()))?;
    if transport.verbose {
        show_response_head(&response);
    }
    let (response, _) = successful(response, request, "GET")?;
    Ok(json_body(response, request, transport, "the response is not JSON")?.0)
}

/// A JSON body read whole (up to [`JSON_BODY_LIMIT`]): the value, and its bytes as received.
fn json_body(
    response: ureq::http::Response<ureq::Body>,
    request: &Request,
    transport: &Transport,
    not_json: &str,
) -> anyhow::Result<(Value, Vec<u8>)> {
    let bytes = response
        .into_body()
        .into_with_config()
        .limit(JSON_BODY_LIMIT)
        .read_to_vec()
        .map_err(|err| describe_failure(err, &request.url, transport, None))?;
    let value =
        serde_json::from_slice(&bytes).map_err(|err| StreamError(format!("{not_json}: {err}")))?;
    Ok((value, bytes))
}

/// Reads at most `limit` bytes of an error body; a body that fails midway is as good as cut.
fn read_limited(body: ureq::Body, limit: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = body.into_reader().take(limit).read_to_end(&mut bytes);
    bytes
}

/// The error for a non-2xx status: the server's own message when it sent OpenAI-style JSON,
/// otherwise a short excerpt (an HTML error page is summarised by its title, not dumped).
pub(crate) fn status_error(status: u16, content_type: &str, body: &[u8]) -> ApiError {
    if let Ok(json) = serde_json::from_slice::<Value>(body)
        && let Some(error) = ApiError::from_body(&json, Some(status))
    {
        return error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        "(empty body)".to_owned()
    } else if content_type.contains("html") || text.starts_with('<') {
        match html_title(text) {
            Some(title) => format!("HTML error page: {title}"),
            None => format!("HTML error page ({} bytes)", body.len()),
        }
    } else {
        let first_line = text.lines().next().unwrap_or("");
        first_line.chars().take(200).collect()
    };
    ApiError::new(Some(status), None, &message)
}

/// What a 404 adds to the server's message: the URL that was requested (its secrets hidden), and
/// what to try, unless the server said what was not found (a model). A base URL without a
/// version in its path usually lacks `/v1`; a server that has no `/responses` may still speak
/// Chat Completions.
fn not_found_hint(method: &str, url: &str, error: &ApiError) -> String {
    let shown = scrub(&redact_url(url));
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let versioned = segments.iter().any(|segment| {
        let mut chars = segment.chars();
        chars.next() == Some('v') && chars.next().is_some_and(|c| c.is_ascii_digit())
    });
    // Azure's deployment URLs have no version in their path, and need none.
    let azure = segments.contains(&"deployments");
    // "model \"x\" not found" (Ollama) is about the model; OpenAI's "Invalid URL (GET /models)"
    // is about the URL, though the path it echoes says "model".
    let message = error.message.to_ascii_lowercase().replace("/models", "");
    let about_the_model = error.code.as_deref() == Some("model_not_found")
        || (message.contains("model") && !message.contains("invalid url"));
    let hint = if about_the_model {
        None
    } else if !versioned && !azure {
        Some("does the base URL need /v1?")
    } else if method == "POST" && segments.last() == Some(&"responses") {
        Some("this server may not serve the Responses API; try --api chat")
    } else {
        None
    };
    match hint {
        Some(hint) => format!(" ({method} {shown}; {hint})"),
        None => format!(" ({method} {shown})"),
    }
}

fn html_title(html: &str) -> Option<&str> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    Some(html[start..end].trim()).filter(|t| !t.is_empty())
}

/// Names a failure to get a response, with the flag that governs it, or the proxy it went
/// through (`None` once the answer has started).
fn describe_failure(
    err: ureq::Error,
    url: &str,
    transport: &Transport,
    proxy: Option<&ProxyInfo>,
) -> anyhow::Error {
    if let Some(failure) = proxy.and_then(|proxy| proxy.failure(&err, url, transport.connect)) {
        return failure;
    }
    let host = host_of(url);
    match err {
        ureq::Error::Timeout(which) => timeout_error(which, host, transport),
        ureq::Error::HostNotFound => {
            NetworkError::new(format!("cannot resolve host {host}")).into()
        }
        ureq::Error::ConnectionFailed => {
            NetworkError::transient(format!("cannot connect to {host}")).into()
        }
        ureq::Error::BadUri(reason) => {
            // ureq's reason can quote the whole URL.
            let shown = redact_url(url);
            let reason = scrub(&reason.replace(url, &shown));
            UsageError(format!("bad --base-url {shown}: {reason}")).into()
        }
        ureq::Error::Io(io) => io_error(&io, url, transport),
        ureq::Error::Tls(_) | ureq::Error::Pem(_) | ureq::Error::Rustls(_) => NetworkError::new(
            format!("TLS error talking to {host}: {err}{}", tls_hint(transport)),
        )
        .into(),
        ureq::Error::BodyExceedsLimit(limit) => StreamError(format!(
            "the response from {host} is larger than {limit} bytes"
        ))
        .into(),
        // Not transient: a server that sends such headers will send them again.
        ureq::Error::LargeResponseHeader(_, limit) => NetworkError::new(format!(
            "the response headers from {host} are larger than {limit} bytes"
        ))
        .into(),
        ureq::Error::Protocol(_) => {
            NetworkError::new(format!("{host} did not answer with valid HTTP: {err}")).into()
        }
        other => NetworkError::new(format!("request to {host} failed: {other}")).into(),
    }
}

/// `--verbose`: the status line and every header, secret ones as `***`, in one write.
fn show_response_head(response: &ureq::http::Response<ureq::Body>) {
    let mut head = format!("< {:?} {}\n", response.version(), response.status());
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        let shown = crate::transport::request::shown_header_value(name.as_str(), &value);
        head.push_str(&format!("< {name}: {shown}\n"));
    }
    eprint!("{head}");
}

/// What to try after a TLS failure.
fn tls_hint(transport: &Transport) -> &'static str {
    if transport.roots.is_some() {
        " (is it a plain http:// server? does --cacert/SSL_CERT_FILE hold the CA that signed its certificate?)"
    } else {
        " (is it a plain http:// server? if a proxy intercepts TLS, trust its CA with --cacert PATH or SSL_CERT_FILE)"
    }
}

fn io_error(io: &io::Error, url: &str, transport: &Transport) -> anyhow::Error {
    let host = host_of(url);
    match io.kind() {
        // rustls reports handshake failures as InvalidData.
        io::ErrorKind::InvalidData if url.starts_with("https://") => NetworkError::new(format!(
            "TLS error talking to {host}: {io}{}",
            tls_hint(transport)
        )),
        // std's resolver error has no stable kind of its own.
        _ if io.to_string().contains("failed to lookup address") => {
            NetworkError::new(format!("cannot resolve host {host}: {io}"))
        }
        io::ErrorKind::ConnectionRefused => NetworkError::transient(format!(
            "connection refused by {host} (is the server running?)"
        )),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            NetworkError::transient(format!("the connection to {host} was reset"))
        }
        io::ErrorKind::UnexpectedEof => {
            NetworkError::transient(format!("{host} closed the connection before answering"))
        }
        _ => NetworkError::new(format!("network error talking to {host}: {io}")),
    }
    .into()
}

/// What `--timeout` running out says, whether ureq found it or the control path did.
pub(crate) fn total_timeout(host: &str, transport: &Transport) -> String {
    let total = transport.total.map_or(0.0, |d| d.as_secs_f64());
    format!("timed out: the request to {host} took longer than {total}s (--timeout)")
}

fn timeout_error(which: Timeout, host: &str, transport: &Transport) -> anyhow::Error {
    let secs = |d: Duration| d.as_secs_f64();
    let message = match which {
        Timeout::Resolve | Timeout::Connect => {
            format!(
                "timed out connecting to {host} after {}s (--connect-timeout)",
                secs(transport.connect)
            )
        }
        Timeout::RecvResponse | Timeout::SendRequest | Timeout::SendBody => format!(
            "timed out waiting for {host} to answer after {}s (--first-byte-timeout)",
            secs(transport.first_byte)
        ),
        Timeout::PerRead => format!(
            "timed out: {host} sent nothing for {}s (--idle-timeout)",
            secs(transport.idle)
        ),
        Timeout::Global | Timeout::PerCall | Timeout::RecvBody => total_timeout(host, transport),
        other => format!("timed out talking to {host} ({other})"),
    };
    NetworkError::new(message).into()
}

/// Names a failure while reading the stream body. An early close is a truncated stream (exit 5);
/// the rest are network failures (exit 4).
pub(crate) fn stream_read_error(err: io::Error, url: &str, transport: &Transport) -> anyhow::Error {
    let host = host_of(url);
    match ureq::Error::from(err) {
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => StreamError(format!(
            "{host} closed the connection in the middle of the stream; the answer is incomplete"
        ))
        .into(),
        ureq::Error::Protocol(err) => StreamError(format!(
            "{host} broke the HTTP framing of the stream: {err}"
        ))
        .into(),
        other => describe_failure(other, url, transport, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_bodies_give_the_server_message() {
        let body = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let err = status_error(401, "application/json", body);
        assert_eq!(
            err.to_string(),
            "HTTP 401 Unauthorized (invalid_api_key): Incorrect API key provided"
        );
    }

    #[test]
    fn html_pages_are_summarised_not_dumped() {
        let page = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center>\n</body></html>";
        let err = status_error(502, "text/html", page);
        assert_eq!(
            err.to_string(),
            "HTTP 502 Bad Gateway: HTML error page: 502 Bad Gateway"
        );
        let err = status_error(503, "text/html", b"<p>down</p>");
        assert_eq!(err.message, "HTML error page (11 bytes)");
    }

    #[test]
    fn a_404_names_the_url_and_what_to_try() {
        let not_found = ApiError::new(Some(404), None, "Not Found");
        let cases = [
            (
                "POST",
                "http://h:8000/chat/completions",
                " (POST http://h:8000/chat/completions; does the base URL need /v1?)",
            ),
            (
                "GET",
                "http://u:pw@h/api/models?key=k",
                " (GET http://u:***@h/api/models?key=***; does the base URL need /v1?)",
            ),
            (
                "POST",
                "http://h/v1/responses",
                " (POST http://h/v1/responses; this server may not serve the Responses API; try --api chat)",
            ),
            (
                "POST",
                "https://g/v1beta/openai/responses",
                " (POST https://g/v1beta/openai/responses; this server may not serve the Responses API; try --api chat)",
            ),
            (
                "POST",
                "http://h/v1/chat/completions",
                " (POST http://h/v1/chat/completions)",
            ),
            ("GET", "http://h/v1/models", " (GET http://h/v1/models)"),
            (
                "POST",
                "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=1",
                " (POST https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=1)",
            ),
        ];
        for (method, url, hint) in cases {
            assert_eq!(not_found_hint(method, url, &not_found), hint, "{url}");
        }
        // The server said what is missing: the URL, and no guess.
        let ollama = ApiError::new(
            Some(404),
            None,
            "model \"llama9\" not found, try pulling it first",
        );
        assert_eq!(
            not_found_hint("POST", "http://h:11434/responses", &ollama),
            " (POST http://h:11434/responses)"
        );
        // OpenAI's own answer to a base URL without /v1 echoes the path: still the URL's fault.
        let invalid_url = ApiError::new(Some(404), None, "Invalid URL (GET /models)");
        assert_eq!(
            not_found_hint("GET", "https://api.openai.com/models", &invalid_url),
            " (GET https://api.openai.com/models; does the base URL need /v1?)"
        );
        let invalid_url = ApiError::new(Some(404), None, "Invalid URL (POST /chat/completions)");
        assert_eq!(
            not_found_hint(
                "POST",
                "https://api.openai.com/chat/completions",
                &invalid_url
            ),
            " (POST https://api.openai.com/chat/completions; does the base URL need /v1?)"
        );
        let openai = ApiError::new(Some(404), Some("model_not_found".into()), "no such thing");
        assert_eq!(
            not_found_hint("POST", "http://h/chat/completions", &openai),
            " (POST http://h/chat/completions)"
        );
    }

    #[test]
    fn plain_text_gives_its_first_line_and_empty_says_so() {
        assert_eq!(
            status_error(500, "text/plain", b"boom\nstack...").message,
            "boom"
        );
        assert_eq!(status_error(500, "", b"").message, "(empty body)");
    }
}
