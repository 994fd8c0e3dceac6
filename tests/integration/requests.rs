//! What gptstream sends: the request line, headers and body, built from flags, args and stdin.

use serde_json::json;

use crate::server::{Server, hello_chunks, sse};
use crate::util::gptstream;

#[test]
fn the_request_carries_model_messages_stream_options_and_auth() {
    let server = Server::one(sse(&hello_chunks()));
    let out = gptstream()
        .server(&server)
        .env("OPENAI_API_KEY", "sk-test-canary")
        .args([
            "-m",
            "my-model",
            "-s",
            "Be terse.",
            "--temperature",
            "0.2",
            "--max-tokens",
            "50",
            "Summarize",
            "this:",
        ])
        .stdin("line one\nline two\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let request = server.request();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        request.header("authorization"),
        Some("Bearer sk-test-canary")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("gptstream/")
    );
    assert_eq!(
        request.json(),
        json!({
            "model": "my-model",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Summarize this:\n\nline one\nline two\n"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "max_tokens": 50
        })
    );
    assert!(!out.render().contains("sk-test-canary"));
}

#[test]
fn stdin_alone_is_the_prompt_and_model_comes_from_the_environment() {
    let server = Server::one(sse(&hello_chunks()));
    let out = gptstream()
        .server(&server)
        .env("GPTSTREAM_MODEL", "env-model")
        .stdin("explain this\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let request = server.request();
    assert_eq!(
        request.header("authorization"),
        None,
        "a local server needs no key"
    );
    let body = request.json();
    assert_eq!(body["model"], "env-model");
    assert_eq!(
        body["messages"],
        json!([{"role":"user","content":"explain this\n"}])
    );
}

#[test]
fn headers_extra_and_no_usage() {
    let server = Server::one(sse(&hello_chunks()));
    let out = gptstream()
        .server(&server)
        .args([
            "-H",
            "X-Org: acme",
            "-H",
            "api-key: azure-secret",
            "--no-usage",
        ])
        .args([
            "--extra",
            r#"{"seed": 7, "response_format": {"type": "json_object"}}"#,
            "hi",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let request = server.request();
    assert_eq!(request.header("x-org"), Some("acme"));
    assert_eq!(request.header("api-key"), Some("azure-secret"));
    assert_eq!(
        request.header("authorization"),
        None,
        "no key, no Authorization header"
    );
    let body = request.json();
    assert_eq!(body["seed"], 7);
    assert_eq!(body["response_format"], json!({"type":"json_object"}));
    assert!(body.get("stream_options").is_none());
}

#[test]
fn an_azure_style_base_url_keeps_its_query_string() {
    let server = Server::one(sse(&hello_chunks()));
    let base = format!(
        "{}/openai/deployments/gpt4?api-version=2024-10-21",
        server.base_url()
    );
    let out = gptstream()
        .env("OPENAI_BASE_URL", &base)
        .args(["-q", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        server.request().path,
        "/v1/openai/deployments/gpt4/chat/completions?api-version=2024-10-21"
    );
}

#[test]
fn the_api_key_can_come_from_a_file() {
    let dir = std::env::temp_dir().join(format!("gptstream-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, "sk-from-file\n").unwrap();
    set_mode(&key_file, 0o644);
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .arg("--api-key-file")
        .arg(&key_file)
        .arg("hi")
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(
        out.stderr
            .contains("is accessible by other users (mode 644); run chmod 600"),
        "{}",
        out.stderr
    );
    set_mode(&key_file, 0o600);
    let server = Server::one(sse(&hello_chunks()));
    let out = gptstream()
        .server(&server)
        .arg("--api-key-file")
        .arg(&key_file)
        .args(["-q", "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        server.request().header("authorization"),
        Some("Bearer sk-from-file")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dry_run_prints_the_request_and_sends_nothing() {
    let out = gptstream()
        .env("OPENAI_API_KEY", "sk-dry-canary")
        .args(["--dry-run", "-m", "m", "hello"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\n{\n  \"model\": \"m\",\n  \"messages\": [\n    {\n      \"role\": \"user\",\n      \"content\": \"hello\"\n    }\n  ],\n  \
         \"stream\": true,\n  \"stream_options\": {\n    \"include_usage\": true\n  }\n}\n\n\
         --- stderr\nPOST https://api.openai.com/v1/chat/completions\nContent-Type: application/json\nAuthorization: Bearer ***\n"
    );
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
