//! `--list-models`: `GET {base}/models` with the key, headers, retries and exit codes of a
//! completion request; ids sorted one per line, or the server's objects as JSON lines.

use serde_json::json;

use crate::server::{Server, full};
use crate::util::gptstream;

const LISTING: &str = r#"{"object":"list","data":[{"id":"zeta","object":"model","owned_by":"me"},{"id":"alpha","object":"model","created":1}]}"#;

#[test]
fn ids_sorted_one_per_line_with_the_key_and_headers() {
    let server = Server::one(full(200, "application/json", LISTING));
    let out = gptstream()
        .server(&server)
        .env("OPENAI_API_KEY", "sk-test")
        .args(["--list-models", "-H", "X-Org: acme"])
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nalpha\nzeta\n\n--- stderr\n"
    );
    let request = server.request();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(request.header("x-org"), Some("acme"));
    assert_eq!(request.body, "");
}

#[test]
fn json_lines_are_the_server_s_objects() {
    let server = Server::one(full(200, "application/json", LISTING));
    // A base URL that names the chat endpoint still lists from the base.
    let out = gptstream()
        .env(
            "OPENAI_BASE_URL",
            &format!("{}/chat/completions", server.base_url()),
        )
        .args(["--list-models", "--json"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        out.json_lines(),
        [
            json!({"id":"alpha","object":"model","created":1}),
            json!({"id":"zeta","object":"model","owned_by":"me"}),
        ]
    );
    assert_eq!(server.request().path, "/v1/models");
}

#[test]
fn errors_and_retries_as_for_a_completion() {
    let unauthorized = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let server = Server::one(full(401, "application/json", unauthorized));
    let out = gptstream().server(&server).arg("--list-models").run();
    assert_eq!(out.code, 3, "{}", out.render());
    assert!(
        out.stderr.contains("Incorrect API key provided"),
        "{}",
        out.stderr
    );
    // A 503 is retried; the listing that follows is printed once.
    let server = Server::start(vec![
        full(503, "application/json", r#"{"error":{"message":"down"}}"#),
        full(200, "application/json", LISTING),
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--list-models", "--retries", "1"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), "alpha\nzeta\n");
    assert!(out.stderr.contains("retrying in"), "{}", out.stderr);
    // Not a listing: a malformed answer, exit 5.
    let server = Server::one(full(200, "application/json", r#"{"models":"none"}"#));
    let out = gptstream().server(&server).arg("--list-models").run();
    assert_eq!(out.code, 5, "{}", out.render());
    // Nobody there: a network error, exit 4.
    let out = gptstream()
        .env(
            "OPENAI_BASE_URL",
            &format!("http://127.0.0.1:{}/v1", crate::server::unused_port()),
        )
        .args(["--list-models", "--retries", "0"])
        .run();
    assert_eq!(out.code, 4, "{}", out.render());
}

#[test]
fn a_listing_that_is_not_json_says_so() {
    let server = Server::one(full(200, "text/html", "<html>hi</html>"));
    let out = gptstream().server(&server).arg("--list-models").run();
    assert_eq!(out.code, 5, "{}", out.render());
    assert!(
        out.stderr
            .starts_with("gptstream: the response is not JSON"),
        "{}",
        out.stderr
    );
}

#[test]
fn compat7_an_empty_listing_says_so_on_stderr_and_exits_0() {
    for flags in [&[][..], &["--json"][..]] {
        for listing in [r#"{"object":"list","data":[]}"#, "[]"] {
            let server = Server::one(full(200, "application/json", listing));
            let out = gptstream()
                .server(&server)
                .arg("--list-models")
                .args(flags)
                .run();
            assert_eq!(
                out.render(),
                "status: 0\n--- stdout\n\n--- stderr\ngptstream: the server listed no models\n"
            );
        }
    }
}

#[test]
fn a_404_names_the_url_and_asks_whether_the_base_url_needs_v1() {
    let server = Server::one(full(404, "application/json", r#"{"detail":"Not Found"}"#));
    let root = server.base_url().trim_end_matches("/v1").to_owned();
    let out = gptstream()
        .env("OPENAI_BASE_URL", &root)
        .arg("--list-models")
        .run();
    assert_eq!(
        out.render(),
        format!(
            "status: 3\n--- stdout\n\n--- stderr\n\
             gptstream: HTTP 404 Not Found: Not Found (GET {root}/models; does the base URL need /v1?)\n"
        )
    );
}
