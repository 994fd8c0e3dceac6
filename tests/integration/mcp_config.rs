//! `[mcp.NAME]` tables in the config file: a server named once, enabled with `--mcp NAME` or by
//! a profile's `mcp = [...]`; its env (stdio) or headers (HTTP) given, its secrets never shown.

use serde_json::json;

use crate::mcp::{FAKE, call_then_answer, logged};
use crate::server::{self, Server, Step};
use crate::util::{Scratch, gptstream};

/// A config file of mode 600 (it may hold secrets) in a scratch directory.
fn config(scratch: &Scratch, text: &str) -> String {
    let path = scratch.file("config.toml", text);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn stdio_config(scratch: &Scratch, log: &str) -> String {
    config(
        scratch,
        &format!(
            r#"
[mcp.fk]
command = "python3 {FAKE} ok {log}"
env = {{ FAKE_GIVEN = "from the table" }}

[profiles.tooled]
model = "m"
mcp = ["fk"]

[profiles.plain]
model = "m"
"#
        ),
    )
}

#[test]
fn a_table_is_enabled_by_its_name_and_its_env_is_given() {
    let scratch = Scratch::new("mcp-config-name");
    let log = scratch.path("log");
    let path = stdio_config(&scratch, &log);
    let model = call_then_answer("echo", r#"{"text":"hi"}"#, "It said hi.");
    let out = gptstream()
        .server(&model)
        .env("GPTSTREAM_CONFIG", &path)
        .args(["-q", "--mcp", "fk", "go"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nIt said hi.\n--- stderr\n"
    );
    let log = logged(&log);
    assert_eq!(log[0]["given"], "from the table");
    let _ = model.request();
    assert_eq!(model.request().json()["messages"][2]["content"], "echo: hi");
}

#[test]
fn a_profile_enables_its_servers_and_another_profile_does_not() {
    let scratch = Scratch::new("mcp-config-profile");
    let log = scratch.path("log");
    let path = stdio_config(&scratch, &log);
    let list = |profile: &str| {
        gptstream()
            .env("GPTSTREAM_CONFIG", &path)
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .args(["-p", profile, "--list-tools"])
            .run()
            .render()
    };
    assert_eq!(
        list("tooled"),
        "status: 0\n--- stdout\n\
         echo\tfk\tEchoes its text\n\
         fail\tfk\tAlways an error result with a tab\n\
         slow\tfk\tNever answers\n\n--- stderr\n"
    );
    assert_eq!(list("plain"), "status: 0\n--- stdout\n\n--- stderr\n");
    // Named by the profile and by the flag: started once.
    let out = gptstream()
        .env("GPTSTREAM_CONFIG", &path)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["-p", "tooled", "--mcp", "fk", "--list-tools"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    // A word that names no table is a command, as before.
    let out = gptstream()
        .env("GPTSTREAM_CONFIG", &path)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--mcp", "no-such-server-command", "--list-tools"])
        .run();
    assert_eq!(out.code, 8, "{}", out.render());
}

#[test]
fn a_profiles_key_variable_is_hidden_from_its_servers() {
    let scratch = Scratch::new("mcp-config-key");
    let log = scratch.path("log");
    let path = config(
        &scratch,
        &format!(
            r#"
[mcp.fk]
command = "python3 {FAKE} ok {log}"

[profiles.keyed]
api_key_env = "MY_PROFILE_KEY"
mcp = ["fk"]
"#
        ),
    );
    let model = call_then_answer("echo", r#"{"text":"hi"}"#, "It said hi.");
    let out = gptstream()
        .server(&model)
        .env("GPTSTREAM_CONFIG", &path)
        .env("MY_PROFILE_KEY", "sk-profile-canary")
        .env("OPENAI_API_KEY", "sk-top-canary")
        .args(["-q", "-p", "keyed", "go"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nIt said hi.\n--- stderr\n"
    );
    // The model got the profile's key; the server saw neither variable.
    assert_eq!(
        model.request().header("authorization"),
        Some("Bearer sk-profile-canary")
    );
    assert_eq!(
        logged(&log)[0]["env"],
        json!({"OPENAI_API_KEY": false, "MY_PROFILE_KEY": false})
    );
}

#[test]
fn an_http_table_sends_its_headers_and_never_shows_their_secrets() {
    let scratch = Scratch::new("mcp-config-http");
    let secret = "mcp-header-canary-4711";
    let initialized = json!({"jsonrpc":"2.0","id":2,"result":{"protocolVersion":"2025-11-25",
        "capabilities":{},"serverInfo":{"name":"web"}}})
    .to_string();
    let tools = json!({"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"lookup"}]}}).to_string();
    let accepted = || {
        vec![Step::Raw(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec(),
        )]
    };
    let start = || {
        vec![
            // The era probe, refused as a 2025-11-25 server does.
            server::full(400, "application/json", "{}"),
            server::full(200, "application/json", &initialized),
            accepted(),
            server::full(200, "application/json", &tools),
        ]
    };
    // Twice: --dry-run, then -v; then a refusal that echoes the token.
    let mut scripts = start();
    scripts.extend(start());
    let revoked = || {
        server::full(
            401,
            "application/json",
            &format!(r#"{{"error":{{"message":"token Bearer {secret} is revoked"}}}}"#),
        )
    };
    // At the probe, and at the handshake.
    scripts.extend([revoked(), revoked()]);
    let mcp = Server::start(scripts);
    let url = format!("{}/mcp", mcp.base_url().trim_end_matches("/v1"));
    let path = config(
        &scratch,
        &format!(
            "[mcp.web]\nurl = \"{url}\"\nheaders = {{ Authorization = \"Bearer {secret}\", X-Team = \"blue\" }}\n"
        ),
    );
    let run = |args: &[&str]| {
        gptstream()
            .env("GPTSTREAM_CONFIG", &path)
            .env("OPENAI_API_KEY", "sk-model-key")
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .args(args)
            .run()
    };
    let out = run(&["--dry-run", "--mcp", "web", "hi"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(!out.render().contains(secret), "{}", out.render());
    assert!(
        out.stderr.contains(&format!(
            "* mcp web: POST {url} (Authorization: Bearer ***, X-Team: blue)\n"
        )),
        "{}",
        out.stderr
    );
    let first = mcp.request();
    assert_eq!(
        first.header("authorization"),
        Some(&*format!("Bearer {secret}"))
    );
    assert_eq!(first.header("x-team"), Some("blue"));
    for _ in 0..3 {
        assert!(
            mcp.request().header("authorization").is_some(),
            "on every POST"
        );
    }

    let out = run(&["-v", "--list-tools", "--mcp", "web"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(!out.render().contains(secret), "{}", out.render());
    assert!(
        out.stderr
            .contains("* mcp web: > Authorization: Bearer ***\n"),
        "{}",
        out.stderr
    );
    for _ in 0..4 {
        let _ = mcp.request();
    }

    let out = run(&["--mcp", "web", "hi"]);
    assert_eq!(
        out.render(),
        "status: 8\n--- stdout\n\n--- stderr\n\
         gptstream: MCP server web answered HTTP 401 Unauthorized: token *** is revoked\n"
    );
    // A file others can read may not hold the header.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["--mcp", "web", "--list-tools"]);
    assert_eq!(
        out.render(),
        format!(
            "status: 2\n--- stdout\n\n--- stderr\n\
             gptstream: {path}:3: mcp.web.headers.Authorization: a secret header in a file other users can access (mode 644); run chmod 600 on it\n"
        )
    );
}
