//! MCP servers that misbehave in ways a review found: a stray line that must not put every
//! later answer one call behind, a flood of notifications that must not grow our memory, a
//! daemon that holds the server's pipes, a server that stops reading, a signal while servers
//! start, a 2026-07-28 server slow to start, a URL's key in a server's error.

use serde_json::json;

use crate::mcp::{
    FAKE, assert_gone, call_turn, logged, methods, pid_of, signal_when, tool_results,
};
use crate::server::{self, DONE, Server, Step, content, delta, finish, sse};
use crate::util::{Scratch, gptstream};

fn mcp(mode: &str, log: &str) -> String {
    format!("fk=python3 {FAKE} {mode} {log}")
}

#[test]
fn a_stray_line_fails_one_call_and_the_next_gets_its_own_answer() {
    let scratch = Scratch::new("mcp-stray");
    let log = scratch.path("log");
    let model = Server::start(vec![
        sse(&call_turn("echo", r#"{"text":"one"}"#)),
        sse(&call_turn("echo", r#"{"text":"two"}"#)),
        sse(&[content("Done."), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&model)
        .args(["--json", "--mcp", &mcp("stray", &log), "go"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let outputs: Vec<_> = tool_results(&out)
        .iter()
        .map(|e| e["output"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(outputs.len(), 2, "{}", out.render());
    assert!(
        outputs[0].starts_with("error: wrote what is not JSON-RPC"),
        "{}",
        outputs[0]
    );
    // The first call's late answer is dropped, not taken for the second call's (nor an error).
    assert_eq!(outputs[1], "echo: two");
}

/// Runs a server in flood `mode` while the model takes its time (meanwhile nobody takes the
/// server's messages); the most messages it logged as written within 2 s, once the run ended
/// as it should.
fn flooded_while_nobody_reads(name: &str, mode: &str) -> u64 {
    let scratch = Scratch::new(name);
    let log = scratch.path("log");
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let mut answer = vec![Step::WaitFor(hold)];
    answer.extend(sse(&[content("ok"), finish("stop"), DONE.to_owned()]));
    let model = Server::start(vec![answer]);
    let child = gptstream()
        .server(&model)
        .args(["-q", "--mcp", &mcp(mode, &log), "go"])
        .spawn();
    let _ = model.request();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let flooded = logged(&log)
        .iter()
        .filter_map(|m| m["flooded"].as_u64())
        .max()
        .unwrap_or(0);
    drop(release);
    let out = crate::util::finish(child);
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");
    flooded
}

#[test]
fn a_flood_of_notifications_waits_for_us_instead_of_filling_memory() {
    let flooded = flooded_while_nobody_reads("mcp-flood", "flood");
    // Our queue, our read buffer and the pipe's hold a few hundred 110-byte messages;
    // past that the server waits. Unbounded, it wrote hundreds of thousands in 2 s.
    assert!(
        flooded < 5000,
        "{flooded} notifications taken while nobody read them"
    );
}

#[test]
fn big_messages_nobody_takes_are_held_one_at_a_time() {
    let flooded = flooded_while_nobody_reads("mcp-flood-big", "flood-big");
    // A message parsed can take many times its size (a MiB of `[0,0,...]` is tens of MiB as
    // JSON values): we hold one in the queue and one in hand, the pipe a part of the next. A
    // queue of 64 held 64 MiB of them, and 64 messages of 16 MiB would have been gigabytes.
    assert!(
        (1..=2).contains(&flooded),
        "{flooded} messages of a MiB taken while nobody read them"
    );
}

#[test]
fn a_daemon_holding_the_servers_pipes_does_not_hold_up_the_exit() {
    let scratch = Scratch::new("mcp-daemon");
    let log = scratch.path("log");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--mcp", &mcp("daemon", &log)])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let daemon = logged(&log)
        .iter()
        .find_map(|m| m["daemon"].as_u64())
        .expect("the daemon's pid");
    assert_gone(daemon);
}

#[test]
fn a_server_that_stops_reading_cannot_hold_up_the_tool_timeout() {
    let scratch = Scratch::new("mcp-deaf");
    let log = scratch.path("log");
    // The second call's arguments are more than its stdin pipe holds.
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(300_000));
    let model = Server::start(vec![
        sse(&call_turn("echo", r#"{"text":"one"}"#)),
        sse(&call_turn("echo", &big)),
        sse(&[content("Gave up twice."), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&model)
        .args([
            "-q",
            "--tool-timeout",
            "1",
            "--mcp",
            &mcp("deaf", &log),
            "go",
        ])
        .run();
    // Without its own writer the second call blocked on the pipe for the server's 30 s, past
    // the harness's patience.
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nGave up twice.\n--- stderr\n\
         gptstream: ran tool echo (call_1) on fk: timed out, 57 bytes\n\
         gptstream: ran tool echo (call_1) on fk: timed out, 57 bytes\n"
    );
}

/// Runs gptstream with `args` and a server that never answers `initialize`, sends `signal`
/// once the server was asked; the output, after checking that the server is gone.
fn signalled_while_starting(name: &str, args: &[&str], signal: &str) -> crate::util::Output {
    let scratch = Scratch::new(name);
    let log = scratch.path("log");
    let spec = mcp("hang-at-start", &log);
    let child = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--mcp", &spec])
        .args(args)
        .spawn();
    let started = |log: &[serde_json::Value]| methods(log).contains(&"initialize".to_owned());
    let out = signal_when(child, &log, started, signal);
    let log = logged(&log);
    assert_eq!(log.last().unwrap()["stdin"], "closed", "told to leave");
    assert_gone(pid_of(&log));
    out
}

#[test]
fn a_signal_while_servers_start_is_130_with_the_usual_report_and_leaves_none() {
    let out = signalled_while_starting("mcp-start-signal", &["go"], "-INT");
    // As for a signal while the model is asked: the report on stderr.
    assert_eq!(
        out.render(),
        "status: 130\n--- stdout\n\n--- stderr\ninterrupted signal=SIGINT usage=none\n"
    );
}

#[test]
fn a_signal_while_servers_start_ends_the_json_lines_with_the_interrupted_error() {
    let out = signalled_while_starting("mcp-start-term", &["--json", "--list-tools"], "-TERM");
    assert_eq!(
        out.render(),
        "status: 143\n--- stdout\n\
         {\"type\":\"error\",\"message\":\"interrupted\",\"status\":null,\"code\":null,\"signal\":\"SIGTERM\"}\n\n\
         --- stderr\n"
    );
}

#[test]
fn a_2026_07_28_server_slow_to_start_is_spoken_to_once_it_is_up() {
    let scratch = Scratch::new("mcp-slow-modern");
    let log = scratch.path("log");
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args([
            // The probe waits 5 s at most; the server is up after 5.5.
            "--mcp-timeout",
            "10",
            "--list-tools",
            "--mcp",
            &format!("python3 {FAKE} slow-modern {log}"),
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stdout().starts_with("echo\tfake-modern\t"),
        "{}",
        out.render()
    );
    assert_eq!(
        methods(&logged(&log)),
        [
            "server/discover",
            "initialize",
            "server/discover",
            "tools/list",
            "tools/list"
        ],
        "the probe too late, initialize refused, asked again"
    );
}

#[test]
fn a_key_in_the_urls_query_never_shows_in_an_error() {
    let key = "mcp-query-canary-0451";
    let echo =
        json!({"error": {"message": format!("no access for /mcp?api_key={key}")}}).to_string();
    let mcp = Server::start(vec![
        server::full(401, "application/json", &echo),
        server::full(401, "application/json", &echo),
    ]);
    let url = format!(
        "{}/mcp?api_key={key}",
        mcp.base_url().trim_end_matches("/v1")
    );
    let out = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--mcp", &format!("web={url}")])
        .run();
    assert_eq!(out.code, 8, "{}", out.render());
    assert!(!out.stderr.contains(key), "{}", out.stderr);
    assert!(out.stderr.contains("api_key=***"), "{}", out.stderr);
    let _ = delta;
}

#[test]
fn a_daemon_an_mcp_server_started_lives_through_the_tools_and_ends_with_the_run() {
    let scratch = Scratch::new("mcp-daemon-tools");
    let log = scratch.path("log");
    let pidfile = scratch.path("daemon.pid");
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"check","parameters":{"type":"object"}}"#,
    );
    // Its parent (a subshell) is gone at once: the daemon is ours from the start of the run.
    let server =
        format!("fk=( setsid sleep 60 & echo $! > {pidfile} ); exec python3 {FAKE} ok {log}");
    let check = format!("check=kill -0 $(cat {pidfile}) && echo alive || echo dead");
    let model = Server::start(vec![
        sse(&call_turn("check", "{}")),
        sse(&call_turn("check", "{}")),
        sse(&[content("Checked."), finish("stop"), DONE.to_owned()]),
    ]);
    let out = gptstream()
        .server(&model)
        .args([
            "--json",
            "--tools",
            &tools,
            "--tool-exec",
            &check,
            "--mcp",
            &server,
            "go",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let outputs: Vec<_> = tool_results(&out)
        .iter()
        .map(|e| e["output"].clone())
        .collect();
    assert_eq!(
        outputs,
        [json!("alive\n"), json!("alive\n")],
        "not a tool's to sweep"
    );
    let pid: u64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_gone(pid);
}

#[test]
fn a_signal_while_the_servers_stop_waits_until_they_are_gone() {
    let scratch = Scratch::new("mcp-stop-signal");
    let log = scratch.path("log");
    // This server ignores the end of its stdin and SIGTERM: its stop takes a second.
    let child = gptstream()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--list-tools", "--mcp", &mcp("linger", &log)])
        .spawn();
    let stopping = |log: &[serde_json::Value]| log.iter().any(|m| m["stdin"] == "closed");
    let out = signal_when(child, &log, stopping, "-INT");
    assert_gone(pid_of(&logged(&log)));
    // Then the signal is acted on: the end, by SIGINT.
    assert_eq!(out.code, -1, "{}", out.render());
}
