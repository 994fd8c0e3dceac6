//! `--chat`: driven by a script over a pipe, and by a person at a real pseudo-terminal (through
//! util-linux `script`, which gives the child a pty as a terminal would).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::server::{self, DONE, Server, content, finish, sse};
use crate::util::{Scratch, drain, finish as finish_child, gptstream, wait_for};

fn answer(text: &str) -> Vec<server::Step> {
    sse(&[content(text), finish("stop"), DONE.to_owned()])
}

fn messages(request: &server::Recorded) -> Value {
    request.json()["messages"].clone()
}

#[test]
fn a_script_chats_over_a_pipe_one_message_per_line() {
    let scratch = Scratch::new("chat-pipe");
    let saved = scratch.path("chat.json");
    let server = Server::start(vec![answer("Hi!"), answer("Bye.")]);
    let out = gptstream()
        .server(&server)
        .args(["--chat", "-q", "-s", "Be brief.", "--save", &saved])
        .stdin("hello\n\n/model other-model\nsecond\n")
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nHi!\nBye.\n\n--- stderr\ngptstream: model other-model\n"
    );
    let first = server.request();
    let second = server.request();
    assert_eq!(first.json()["model"], "gpt-4o-mini");
    assert_eq!(second.json()["model"], "other-model");
    let expected = json!([
        {"role":"system","content":"Be brief."},
        {"role":"user","content":"hello"},
        {"role":"assistant","content":"Hi!"},
        {"role":"user","content":"second"},
    ]);
    assert_eq!(messages(&second), expected);
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let mut all = expected.as_array().unwrap().clone();
    all.push(json!({"role":"assistant","content":"Bye."}));
    assert_eq!(on_disk, Value::Array(all));
}

#[test]
fn chat_commands_clear_set_the_system_message_and_save() {
    let scratch = Scratch::new("chat-commands");
    let saved = scratch.path("copy.jsonl");
    let server = Server::start(vec![answer("One."), answer("Two.")]);
    let out = gptstream()
        .server(&server)
        .args(["--chat", "-q"])
        .stdin(format!(
            "first\n/clear\n/system Be terse.\nsecond\n/save {saved}\n/bogus\n/exit\nnever sent\n"
        ))
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.stdout(), "One.\nTwo.\n");
    server.request();
    assert_eq!(
        messages(&server.request()),
        json!([{"role":"system","content":"Be terse."},{"role":"user","content":"second"}])
    );
    let lines = std::fs::read_to_string(&saved).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert!(
        out.stderr.contains("gptstream: unknown command /bogus;"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_turn_is_reported_and_the_chat_goes_on() {
    let server = Server::start(vec![
        server::full(500, "application/json", r#"{"error":{"message":"boom"}}"#),
        answer("Better."),
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--chat", "-q", "--retries", "0"])
        .stdin("try\nagain\n")
        .run();
    assert_eq!(
        out.render(),
        "status: 0\n--- stdout\nBetter.\n\n--- stderr\ngptstream: HTTP 500 Internal Server Error: boom\n"
    );
    server.request();
    // The failed turn is not in the history.
    assert_eq!(
        messages(&server.request()),
        json!([{"role":"user","content":"again"}])
    );
}

/// `script` runs the command on a new pseudo-terminal and copies our writes to its input.
fn on_a_terminal(server: &Server, extra: &str) -> std::process::Child {
    let command = format!(
        "exec env OPENAI_BASE_URL={} {} {extra}",
        server.base_url(),
        env!("CARGO_BIN_EXE_gptstream")
    );
    Command::new("script")
        .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run util-linux script (bsdutils)")
}

#[test]
fn at_a_terminal_plain_gptstream_chats_and_ctrl_c_cancels_only_the_answer() {
    let scratch = Scratch::new("chat-pty");
    let saved = scratch.path("chat.json");
    // Stalls after "Once upon" until released, then hangs up (the cancelled answer's thread
    // holds that connection until then; a real server would go on talking into it).
    let (release, mut stalled) = server::stalls_after("Once upon");
    stalled.push(server::Step::Close);
    let server = Server::start(vec![stalled, answer("The end.")]);
    let mut child = on_a_terminal(&server, &format!("--save {saved}"));
    let mut keys = child.stdin.take().unwrap();
    let screen = drain(child.stdout.take().unwrap());
    wait_for(&screen, "you> ");
    keys.write_all(b"tell a story\n").unwrap();
    wait_for(&screen, "Once upon");
    // Ctrl-C, as the terminal's line discipline turns it into SIGINT.
    keys.write_all(b"\x03").unwrap();
    let after = wait_for(&screen, "you> ");
    assert!(after.contains("interrupted signal=SIGINT"), "{after:?}");
    drop(release);
    keys.write_all(b"go on\n").unwrap();
    wait_for(&screen, "The end.");
    wait_for(&screen, "you> ");
    keys.write_all(b"\x04").unwrap(); // Ctrl-D
    let out = finish_child(child);
    assert_eq!(out.code, 0, "{}", out.render());
    server.request();
    let second = server.request();
    assert_eq!(
        messages(&second),
        json!([
            {"role":"user","content":"tell a story"},
            {"role":"assistant","content":"Once upon\n[answer incomplete: interrupted by SIGINT]"},
            {"role":"user","content":"go on"},
        ])
    );
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(on_disk.as_array().unwrap().len(), 4, "{on_disk}");
}
