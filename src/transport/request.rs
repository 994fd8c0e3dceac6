//! The request: URL, headers and JSON body, and the API key ([`ApiKey`]) that goes with them.
//! The plan ([`crate::cli::plan`]) builds one from the flags as a template; each exchange fills
//! in the conversation.

use std::io::Write;
use std::sync::Arc;

use serde_json::Value;

use crate::decode::dialect::Dialect;
use crate::emit::redact::redact_url;
use crate::error::{UsageError, register_secret};
use crate::transport::body::Json;
use crate::transport::key::ApiKey;

/// The default server: OpenAI itself. Any OpenAI-compatible base URL works.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The key under which an assistant message keeps the Responses API's output items as
/// received (see [`crate::session::conversation::Conversation::keep_output_items`]); never sent to a chat server, never saved.
pub(crate) const OUTPUT_ITEMS: &str = "gptstream_output_items";

/// Everything needed to send one chat completion request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// Which API the body speaks, and so how the conversation goes into it.
    pub(crate) dialect: Dialect,
    pub(crate) url: String,
    /// Extra headers from `-H`, in the order given.
    pub(crate) headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer ...` unless a `-H Authorization` overrides it.
    pub(crate) api_key: Option<ApiKey>,
    /// Every field of the body but the conversation, whose place a `messages` (chat) or `input`
    /// (responses) placeholder keeps.
    pub(crate) body: Value,
    /// The conversation, shared with the session rather than copied: it carries attachments.
    pub(crate) messages: Vec<Arc<Value>>,
}

/// `{base}/chat/completions`, keeping a query string (Azure's `?api-version=`) at the end and
/// accepting a base that already names the endpoint.
pub(crate) fn chat_completions_url(base: &str) -> String {
    endpoint_url(base, "/chat/completions")
}

/// `{base}/responses`, by the same rules as [`chat_completions_url`].
pub(crate) fn responses_url(base: &str) -> String {
    endpoint_url(base, "/responses")
}

/// `{base}/models`, for `--list-models`; a base that names an endpoint loses it first.
pub(crate) fn models_url(base: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base, None),
    };
    let path = path.trim_end_matches('/');
    let path = ["/chat/completions", "/responses"]
        .iter()
        .find_map(|endpoint| path.strip_suffix(endpoint))
        .unwrap_or(path);
    let base = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    endpoint_url(&base, "/models")
}

fn endpoint_url(base: &str, endpoint: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base, None),
    };
    let path = path.trim_end_matches('/');
    let mut url = if path.ends_with(endpoint) {
        path.to_owned()
    } else {
        format!("{path}{endpoint}")
    };
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The host part of a URL, for messages and for recognising OpenAI itself.
pub(crate) fn host_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

pub(crate) fn is_openai(url: &str) -> bool {
    let host = host_of(url);
    host.split(':').next() == host_of(DEFAULT_BASE_URL).split(':').next()
}

pub(crate) fn parse_header(raw: &str) -> Result<(String, String), UsageError> {
    let Some((name, value)) = raw.split_once(':') else {
        // Not shown: without its colon, a header may be a name and a secret run together.
        return Err(UsageError(
            "bad --header: expected 'Name: value', and this one has no colon".into(),
        ));
    };
    let (name, value) = (name.trim(), value.trim());
    // The value is not shown: it may be a secret.
    check_header(name, value).map_err(|why| {
        UsageError(format!(
            "bad --header {:?}: {why}",
            crate::error::scrub(name)
        ))
    })?;
    Ok((name.to_owned(), value.to_owned()))
}

/// Why a header cannot be sent as given, if it cannot: a name that is not an HTTP token, a
/// header that frames the body (sent with its exact length by us), a control character in the
/// value (a line break would end the header early).
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(
            "expected 'Name: value', the name of letters, digits and !#$%&'*+-.^_`|~".into(),
        );
    }
    if ["content-length", "transfer-encoding"]
        .iter()
        .any(|framing| name.eq_ignore_ascii_case(framing))
    {
        return Err(format!(
            "{name} is set by gptstream, which sends the body with its exact length"
        ));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("the value holds a control character".into());
    }
    Ok(())
}

/// A header that carries a credential by its known name: `Authorization`, `api-key`...
pub(crate) fn is_auth_header(name: &str) -> bool {
    [
        "authorization",
        "api-key",
        "x-api-key",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ]
    .iter()
    .any(|secret| name.eq_ignore_ascii_case(secret))
}

/// A header whose value is a secret: the known ones, and any with a word of its name (between
/// `-` or `_`) that says so: `X-Auth-Token`, `Private-Token`, `X-Goog-Api-Key` (but not
/// `X-Portkey-Provider`, `X-Max-Tokens` or `Idempotency-Key`).
pub(crate) fn is_secret_header(name: &str) -> bool {
    let words: Vec<String> = name
        .split(['-', '_'])
        .map(str::to_ascii_uppercase)
        .collect();
    let says_so = words
        .iter()
        .any(|word| SECRET_WORDS.contains(&word.as_str()) || word == "CREDENTIALS");
    is_auth_header(name) || (says_so && !name.eq_ignore_ascii_case("idempotency-key"))
}

/// A name (of a variable, an option) that says its value is a secret: it holds KEY, TOKEN,
/// SECRET, PASSWORD, PASSWD, AUTH, CREDENTIAL or COOKIE.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| upper.contains(word))
}

/// The words that make a name a secret's.
const SECRET_WORDS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "AUTH",
    "CREDENTIAL",
    "COOKIE",
];

/// Remembers the values of secret `-H` headers, so that [`crate::error::scrub`] blanks them.
pub(crate) fn register_header_secrets(headers: &[(String, String)]) {
    for (name, value) in headers {
        if is_secret_header(name) {
            register_secret(value);
            if let Some(token) = value.strip_prefix("Bearer ") {
                register_secret(token);
            }
        }
    }
}

impl Request {
    /// The headers as sent, in order: Authorization from the key (unless overridden), then `-H`.
    pub(crate) fn header_lines(&self) -> Vec<(&str, String)> {
        let overridden = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        let mut lines = Vec::new();
        if let (Some(key), false) = (&self.api_key, overridden) {
            lines.push(("Authorization", format!("Bearer {}", key.expose())));
        }
        lines.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.clone())));
        lines
    }

    /// The conversation to send, shared with the caller's.
    pub(crate) fn set_messages(&mut self, messages: &[Arc<Value>]) {
        self.messages = messages.to_vec();
    }

    /// The body as it is sent: the template's fields in their order, with the conversation in
    /// its place, as `messages` for chat, as `input` items (and the first system message as
    /// `instructions`) for the Responses API. It borrows the conversation; see [`crate::transport::body`].
    pub(crate) fn json(&self) -> Json<'_> {
        let Value::Object(template) = &self.body else {
            return Json::Ref(&self.body);
        };
        let (place, conversation, instructions) = match self.dialect {
            Dialect::Chat => {
                let messages = self.messages.iter().map(|m| without_output_items(m));
                ("messages", Json::List(messages.collect()), None)
            }
            Dialect::Responses => {
                let (instructions, input) = responses_input(&self.messages);
                // `--extra '{"instructions":...}'` merges last, as any field: it wins.
                let instructions = instructions.filter(|_| !template.contains_key("instructions"));
                ("input", Json::List(input), instructions)
            }
        };
        let mut conversation = Some(conversation);
        let mut fields: Vec<(&str, Json<'_>)> = template
            .iter()
            .map(|(key, value)| {
                let json = if key == place {
                    conversation.take()
                } else {
                    None
                };
                (key.as_str(), json.unwrap_or(Json::Ref(value)))
            })
            .collect();
        if let Some(conversation) = conversation {
            fields.push((place, conversation));
        }
        if let Some(instructions) = instructions {
            fields.push(("instructions", Json::Ref(instructions)));
        }
        Json::Object(fields)
    }

    /// The body as a value (a copy, for tests).
    #[cfg(test)]
    pub(crate) fn body_value(&self) -> Value {
        self.json().to_value()
    }

    /// The request line and headers as `--verbose` shows them: secrets (in the URL too) as
    /// `***`.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!("POST {}", redact_url(&self.url)),
            "Content-Type: application/json".to_owned(),
        ];
        for (name, value) in self.header_lines() {
            lines.push(format!("{name}: {}", shown_header_value(name, &value)));
        }
        lines
    }

    /// `--dry-run`: the body as pretty JSON on stdout (so it pipes into jq), the method, URL and
    /// headers on stderr, with secrets shown as `***`.
    pub(crate) fn print_dry_run(
        &self,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> anyhow::Result<()> {
        for line in self.describe() {
            writeln!(err, "{line}")?;
        }
        // Attachments' payloads are shown by their size, not dumped (nor copied first).
        let shown = self.json().shown();
        serde_json::to_writer_pretty(&mut *out, &shown)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }
}

/// A header's value as it may be shown: secret ones as `***` (keeping a `Bearer ` prefix), the
/// rest with any registered secret blanked.
pub(crate) fn shown_header_value(name: &str, value: &str) -> String {
    if !is_secret_header(name) {
        crate::error::scrub(value)
    } else if value.starts_with("Bearer ") {
        "Bearer ***".to_owned()
    } else {
        "***".to_owned()
    }
}

/// A message without our own keys, as chat servers take it.
fn without_output_items(message: &Value) -> Json<'_> {
    match message {
        Value::Object(fields) if fields.contains_key(OUTPUT_ITEMS) => Json::Object(
            fields
                .iter()
                .filter(|(key, _)| *key != OUTPUT_ITEMS)
                .map(|(key, value)| (key.as_str(), Json::Ref(value)))
                .collect(),
        ),
        other => Json::Ref(other),
    }
}

/// A chat message's content as Responses input parts: text stays text; `text` parts become
/// `input_text`, `image_url` parts `input_image` (with their `detail`), `file` parts
/// `input_file`. Payloads are borrowed, not copied.
fn input_content(content: &Value) -> Json<'_> {
    let Value::Array(parts) = content else {
        return Json::Ref(content);
    };
    let typed = |kind: &'static str| ("type", Json::Owned(kind.into()));
    let parts = parts
        .iter()
        .map(|part| match part["type"].as_str() {
            Some("text") => Json::Object(vec![
                typed("input_text"),
                ("text", Json::Ref(&part["text"])),
            ]),
            Some("image_url") => {
                let url = part["image_url"].get("url").unwrap_or(&part["image_url"]);
                let mut image = vec![typed("input_image"), ("image_url", Json::Ref(url))];
                if let Some(detail) = part["image_url"].get("detail") {
                    image.push(("detail", Json::Ref(detail)));
                }
                Json::Object(image)
            }
            Some("file") => {
                let mut file = vec![typed("input_file")];
                let fields = part["file"].as_object().into_iter().flatten();
                file.extend(
                    fields
                        .filter(|(key, _)| *key != "type")
                        .map(|(key, value)| (key.as_str(), Json::Ref(value))),
                );
                Json::Object(file)
            }
            _ => Json::Ref(part),
        })
        .collect::<Vec<_>>();
    Json::List(parts)
}

/// The conversation (chat messages, our transcript format) as Responses input: the first
/// message, when it is a system message, becomes `instructions` (the API's own field for it,
/// which every server we know maps to the system prompt); later system messages stay system
/// items. User messages and assistant text are `message` items, each tool call a
/// `function_call`, each tool result a `function_call_output`. An assistant turn that came from
/// the Responses API is sent back as its output items were received.
pub(crate) fn responses_input(messages: &[Arc<Value>]) -> (Option<&Value>, Vec<Json<'_>>) {
    let mut instructions = None;
    let mut input = Vec::with_capacity(messages.len());
    let typed = |kind: &'static str| ("type", Json::Owned(kind.into()));
    for (i, message) in messages.iter().enumerate() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message["role"].as_str().unwrap_or_default() {
            "system" | "developer" if i == 0 && content.is_string() => {
                instructions = Some(content);
            }
            "assistant" => {
                if let Some(Value::Array(items)) = message.get(OUTPUT_ITEMS) {
                    input.extend(items.iter().map(Json::Ref));
                    continue;
                }
                let text = match content {
                    Value::String(text) => Some(Json::Ref(content)).filter(|_| !text.is_empty()),
                    Value::Array(parts) => Some(
                        parts
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<String>(),
                    )
                    .filter(|text| !text.is_empty())
                    .map(|text| Json::Owned(text.into())),
                    _ => None,
                };
                if let Some(text) = text {
                    input.push(Json::Object(vec![
                        typed("message"),
                        ("role", Json::Owned("assistant".into())),
                        ("content", text),
                    ]));
                }
                for call in message["tool_calls"].as_array().into_iter().flatten() {
                    input.push(Json::Object(vec![
                        typed("function_call"),
                        ("call_id", Json::Ref(&call["id"])),
                        ("name", Json::Ref(&call["function"]["name"])),
                        ("arguments", Json::Ref(&call["function"]["arguments"])),
                    ]));
                }
            }
            "tool" => input.push(Json::Object(vec![
                typed("function_call_output"),
                ("call_id", Json::Ref(&message["tool_call_id"])),
                (
                    "output",
                    match content {
                        Value::Array(_) => input_content(content),
                        Value::String(_) => Json::Ref(content),
                        other => Json::Owned(other.to_string().into()),
                    },
                ),
            ])),
            role => input.push(Json::Object(vec![
                typed("message"),
                ("role", Json::Owned(role.into())),
                ("content", input_content(content)),
            ])),
        }
    }
    (instructions, input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_by_their_known_names_and_by_a_word_of_the_name() {
        for secret in [
            "Authorization",
            "x-api-key",
            "X-Auth-Token",
            "Private-Token",
            "X-Goog-Api-Key",
            "Cookie",
        ] {
            assert!(is_secret_header(secret), "{secret}");
        }
        for plain in [
            "X-Portkey-Provider",
            "X-Max-Tokens",
            "X-Author",
            "Idempotency-Key",
            "X-Title",
        ] {
            assert!(!is_secret_header(plain), "{plain}");
        }
        assert!(is_auth_header("API-KEY") && !is_auth_header("X-Auth-Token"));
    }
    use serde_json::json;

    fn values(input: &[Json<'_>]) -> Vec<Value> {
        input.iter().map(Json::to_value).collect()
    }

    #[test]
    fn url_joins_base_and_keeps_queries() {
        let cases = [
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:11434/v1/",
                "http://127.0.0.1:11434/v1/chat/completions",
            ),
            (
                "http://h/v1/chat/completions",
                "http://h/v1/chat/completions",
            ),
            (
                "https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
                "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
            ),
        ];
        for (base, url) in cases {
            assert_eq!(chat_completions_url(base), url);
            let responses = url.replace("/chat/completions", "/responses");
            if !base.contains("/chat/completions") {
                assert_eq!(responses_url(base), responses);
            }
            assert_eq!(responses_url(&responses), responses, "already the endpoint");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(host_of("http://u:p@127.0.0.1:8080/v1?x"), "127.0.0.1:8080");
        assert!(is_openai("https://api.openai.com:443/v1/chat/completions"));
        assert!(!is_openai("http://localhost:11434/v1/chat/completions"));
    }

    #[test]
    fn a_transcript_becomes_responses_input() {
        let messages = [
            json!({"role":"system","content":"Be brief."}),
            json!({"role":"user","content":"Weather in Paris?"}),
            json!({"role":"assistant","content":"Checking.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}),
            json!({"role":"tool","tool_call_id":"call_1","content":"18C"}),
            json!({"role":"assistant","content":"Sunny, 18C."}),
            json!({"role":"user","content":[{"type":"text","text":"And this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}),
        ];
        let messages = messages.map(Arc::new);
        let (instructions, input) = responses_input(&messages);
        assert_eq!(instructions, Some(&json!("Be brief.")));
        assert_eq!(
            values(&input),
            [
                json!({"type":"message","role":"user","content":"Weather in Paris?"}),
                json!({"type":"message","role":"assistant","content":"Checking."}),
                json!({"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"}),
                json!({"type":"function_call_output","call_id":"call_1","output":"18C"}),
                json!({"type":"message","role":"assistant","content":"Sunny, 18C."}),
                json!({"type":"message","role":"user","content":[{"type":"input_text","text":"And this?"},{"type":"input_image","image_url":"data:image/png;base64,AA=="}]}),
            ]
        );
    }

    #[test]
    fn content_parts_and_tool_outputs_in_responses_shapes() {
        let messages = [
            json!({"role":"user","content":[
                {"type":"image_url","image_url":{"url":"https://x/cat.png","detail":"low"}},
                {"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,AA=="}}]}),
            json!({"role":"tool","tool_call_id":"c","content":[{"type":"text","text":"18C"}]}),
        ];
        let messages = messages.map(Arc::new);
        let (_, input) = responses_input(&messages);
        assert_eq!(
            values(&input),
            [
                json!({"type":"message","role":"user","content":[
                    {"type":"input_image","image_url":"https://x/cat.png","detail":"low"},
                    {"type":"input_file","filename":"a.pdf","file_data":"data:application/pdf;base64,AA=="}]}),
                json!({"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"18C"}]}),
            ]
        );
    }

    #[test]
    fn output_items_kept_with_an_answer_go_back_as_received_and_never_to_chat() {
        let items = json!([{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAA"},
                           {"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"{}"}]);
        let assistant = json!({"role":"assistant","content":null,
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}],
            OUTPUT_ITEMS: items});
        let assistant = Arc::new(assistant);
        let (_, input) = responses_input(std::slice::from_ref(&assistant));
        assert_eq!(Value::Array(values(&input)), items);
        let mut chat = Request {
            dialect: Dialect::Chat,
            url: String::new(),
            headers: Vec::new(),
            api_key: None,
            body: json!({}),
            messages: Vec::new(),
        };
        chat.set_messages(std::slice::from_ref(&assistant));
        let body = chat.body_value();
        assert!(body["messages"][0].get(OUTPUT_ITEMS).is_none());
        assert_eq!(body["messages"][0]["tool_calls"][0]["id"], "call_1");
    }

    #[test]
    fn headers_must_have_a_name_and_colon() {
        assert_eq!(
            parse_header("X-Org: acme").unwrap(),
            ("X-Org".into(), "acme".into())
        );
        assert_eq!(
            parse_header("X-Empty:").unwrap(),
            ("X-Empty".into(), "".into())
        );
        assert!(parse_header("nocolon").is_err());
        for framing in ["Transfer-Encoding: chunked", "content-length: 5"] {
            let err = parse_header(framing).unwrap_err().0;
            assert!(err.contains("is set by gptstream"), "{err}");
        }
        assert!(parse_header(": v").is_err());
    }
}
