//! The API key never appears in any output: every mode and error path is run with canary keys
//! (from the environment, a key file and a header), including servers that echo the key back.

use std::sync::mpsc;

use crate::server::{self, DONE, Server, Step, content, finish, hello_chunks, sse};
use crate::util::{Output, gptstream};

const CANARY: &str = "sk-canary-7f3a9c";
const HEADER_CANARY: &str = "azure-canary-51e2";

fn echoing_error(status: u16) -> Vec<Step> {
    server::full(
        status,
        "application/json",
        &format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {CANARY} / {HEADER_CANARY}","code":"invalid_api_key"}}}}"#
        ),
    )
}

fn check(name: &str, out: &Output) {
    let all = out.render();
    for canary in [CANARY, HEADER_CANARY] {
        assert!(!all.contains(canary), "{name}: a key leaked:\n{all}");
    }
}

fn with_keys(command: crate::util::Gptstream) -> crate::util::Gptstream {
    command
        .env("OPENAI_API_KEY", CANARY)
        .args(["-H", &format!("api-key: {HEADER_CANARY}")])
}

#[test]
fn no_output_of_any_mode_or_error_path_contains_the_key() {
    let mid_stream_echo = || {
        sse(&[
            content("partial"),
            format!("data: {{\"error\":{{\"message\":\"key {CANARY} revoked\"}}}}\n\n"),
        ])
    };
    let scripts: Vec<(&str, Vec<Step>, Vec<&str>)> = vec![
        ("text", sse(&hello_chunks()), vec![]),
        ("json", sse(&hello_chunks()), vec!["--json"]),
        ("401 echo", echoing_error(401), vec![]),
        ("401 echo json", echoing_error(401), vec!["--json"]),
        ("mid-stream echo", mid_stream_echo(), vec![]),
        ("mid-stream echo json", mid_stream_echo(), vec!["--json"]),
        ("truncated", sse(&[content("x")]), vec!["--json"]),
        ("verbose", sse(&hello_chunks()), vec!["-v"]),
        ("verbose 401 echo", echoing_error(401), vec!["-v"]),
        ("chat 401 echo", echoing_error(401), vec!["--chat"]),
        (
            "chat mid-stream echo",
            mid_stream_echo(),
            vec!["--chat", "--json"],
        ),
        (
            "no-stream 401 echo",
            echoing_error(401),
            vec!["--no-stream"],
        ),
        (
            "length",
            sse(&[content("x"), finish("length"), DONE.to_owned()]),
            vec![],
        ),
        (
            "responses 401 echo",
            echoing_error(401),
            vec!["--api", "responses", "-v"],
        ),
        (
            "responses error event echo",
            sse(&[format!(
                "data: {{\"type\":\"error\",\"code\":\"x\",\"message\":\"key {CANARY} revoked\"}}\n\n"
            )]),
            vec!["--api", "responses", "--json"],
        ),
    ];
    for (name, script, flags) in scripts {
        let server = Server::one(script);
        let out = with_keys(gptstream().server(&server))
            .args(["--retries", "0"])
            .args(flags)
            .arg("hi")
            .run();
        check(name, &out);
    }

    let (_release, hold) = mpsc::channel::<()>();
    let silent = Server::one(vec![Step::WaitFor(hold)]);
    let out = with_keys(gptstream().server(&silent))
        .args(["--first-byte-timeout", "0.2", "hi"])
        .run();
    check("timeout", &out);

    let offline = |args: &[&str]| {
        with_keys(gptstream())
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .args(args)
            .run()
    };
    for args in [
        &["--dry-run", "hi"][..],
        &["--dry-run", "--api", "responses", "hi"],
        &["--retries", "0", "hi"],
        &["--extra", "{bad", "hi"],
        &["--no-such-flag"],
        &["--help"],
        &["--max-tokens", "lots", "hi"],
    ] {
        check(&format!("{args:?}"), &offline(args));
    }
}

#[test]
fn a_key_file_canary_does_not_leak_either() {
    let dir = std::env::temp_dir().join(format!("gptstream-canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{CANARY}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let echo_key = || {
        let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {CANARY}"}}}}"#);
        server::full(401, "application/json", &body)
    };
    for flags in [&["--dry-run"][..], &[]] {
        let server = Server::one(echo_key());
        let out = gptstream()
            .server(&server)
            .arg("--api-key-file")
            .arg(&key_file)
            .args(flags)
            .arg("hi")
            .run();
        if flags.is_empty() {
            assert_eq!(out.code, 3);
        } else {
            // --dry-run sends nothing; the server is still called once to satisfy its drop check.
            let _ = gptstream()
                .server(&server)
                .args(["--retries", "0", "hi"])
                .run();
        }
        check("key file", &out);
    }
    let _ = std::fs::remove_dir_all(dir);
}

const PASSWORD_CANARY: &str = "pw-canary-83d1f0";
const QUERY_CANARY: &str = "key-canary-2b7e44";
const QUERY_HEADER_CANARY: &str = "apikey-canary-9c05aa";

/// A base URL with a secret in each place a URL can carry one: the userinfo password and two
/// query parameters, around one that is not secret.
fn secret_url(host: &str) -> String {
    format!(
        "http://user:{PASSWORD_CANARY}@{host}/v1?key={QUERY_CANARY}&api-version=2024-10-21&api-key={QUERY_HEADER_CANARY}"
    )
}

fn check_url(name: &str, out: &Output) {
    let all = out.render();
    for canary in [PASSWORD_CANARY, QUERY_CANARY, QUERY_HEADER_CANARY] {
        assert!(!all.contains(canary), "{name}: a URL secret leaked:\n{all}");
    }
}

/// Issue #12, defect 9: `--dry-run`, `-v` and errors showed `http://user:pass@host/v1?key=...`
/// verbatim. Every path that shows the URL, or text a server echoes, hides the URL's secrets.
#[test]
fn defect9_no_output_shows_the_password_or_secret_query_values_of_the_url() {
    let echo = || {
        server::full(
            401,
            "application/json",
            &format!(
                r#"{{"error":{{"message":"bad credentials {PASSWORD_CANARY} {QUERY_CANARY} {QUERY_HEADER_CANARY}"}}}}"#
            ),
        )
    };
    let served: Vec<(&str, Vec<Step>, Vec<&str>)> = vec![
        ("verbose", sse(&hello_chunks()), vec!["-v"]),
        ("401 echo", echo(), vec![]),
        ("verbose 401 echo", echo(), vec!["-v"]),
        ("401 echo json", echo(), vec!["--json"]),
    ];
    for (name, script, flags) in served {
        let server = Server::one(script);
        let host = server.base_url();
        let host = host
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
            .to_owned();
        let out = gptstream()
            .env("OPENAI_BASE_URL", &secret_url(&host))
            .args(["--retries", "0"])
            .args(flags)
            .arg("hi")
            .run();
        check_url(name, &out);
        let path = server.request().path;
        assert!(path.contains(QUERY_CANARY), "{name}: the query was sent");
    }

    let refused = secret_url(&format!("127.0.0.1:{}", server::unused_port()));
    for (name, url, flags) in [
        ("dry run", refused.clone(), &["--dry-run"][..]),
        ("dry run verbose", refused.clone(), &["--dry-run", "-v"]),
        ("refused", refused.clone(), &["--retries", "0"]),
        ("refused, retried", refused.clone(), &["--retries", "1"]),
        ("bad scheme", refused.replace("http://", "ftp://"), &[]),
        ("no host", secret_url(""), &["--retries", "0"]),
        (
            "bad port",
            secret_url("127.0.0.1:99999"),
            &["--retries", "0"],
        ),
    ] {
        let out = gptstream()
            .env("OPENAI_BASE_URL", &url)
            .args(flags)
            .arg("hi")
            .run();
        let dry_run = name.starts_with("dry run");
        assert_eq!(out.code == 0, dry_run, "{name}: {}", out.render());
        check_url(name, &out);
    }
}

#[test]
fn harden17_a_key_echoed_in_the_answer_is_blanked_from_save_and_record_and_the_answer_is_kept() {
    let scratch = crate::util::Scratch::new("secrets-files");
    // The key whole in one delta, and split over two: the transcript holds the joined text.
    let answer = || {
        sse(&[
            content(&format!("echo {CANARY} and {HEADER_CANARY};")),
            content(" split sk-canary"),
            content("-7f3a9c."),
            finish("stop"),
            DONE.to_owned(),
        ])
    };
    let expected_answer = format!("echo {CANARY} and {HEADER_CANARY}; split {CANARY}.");
    for saved_name in ["chat.json", "chat.jsonl"] {
        let saved = scratch.path(saved_name);
        let recorded = scratch.path("stream.sse");
        let server = Server::one(answer());
        let out = with_keys(gptstream().server(&server))
            .args(["-q", "--save", &saved, "--record", &recorded])
            .arg(format!("my key is {CANARY}"))
            .run();
        // The answer on stdout is the server's bytes, exactly: it is not ours to rewrite.
        assert_eq!(
            out.render(),
            format!("status: 0\n--- stdout\n{expected_answer}\n--- stderr\n")
        );
        let saved = std::fs::read_to_string(&saved).unwrap();
        let recorded = std::fs::read_to_string(&recorded).unwrap();
        for (name, text) in [("--save", &saved), ("--record", &recorded)] {
            for canary in [CANARY, HEADER_CANARY] {
                assert!(
                    !text.contains(canary),
                    "{name} {saved_name} leaked:\n{text}"
                );
            }
        }
        assert!(
            saved.contains("my key is ***") && saved.contains("echo *** and ***; split ***."),
            "{saved}"
        );
        // The raw body as recorded: whole occurrences blanked, the split one is in two events.
        assert!(recorded.contains("echo *** and ***;"), "{recorded}");
        assert!(recorded.contains("split sk-canary"), "{recorded}");
    }
}
