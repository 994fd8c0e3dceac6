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
    assert_eq!(server.connections(), 1, "the turns share one connection");
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
fn defect6_a_piped_chat_ends_at_the_first_failed_turn_with_its_exit_code() {
    let scratch = Scratch::new("chat-fail");
    let saved = scratch.path("chat.json");
    let server = Server::start(vec![
        answer("Fine."),
        server::full(500, "application/json", r#"{"error":{"message":"boom"}}"#),
    ]);
    let out = gptstream()
        .server(&server)
        .args(["--chat", "-q", "--retries", "0", "--save", &saved])
        .stdin("first\nsecond\nnever sent\n")
        .run();
    assert_eq!(
        out.render(),
        "status: 3\n--- stdout\nFine.\n\n--- stderr\ngptstream: HTTP 500 Internal Server Error: boom\n"
    );
    server.request();
    server.request();
    // What succeeded is saved; the failed turn is not.
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        on_disk,
        json!([{"role":"user","content":"first"},{"role":"assistant","content":"Fine."}])
    );
}

#[test]
fn defect6_a_piped_chat_with_the_server_down_exits_4() {
    let out = gptstream()
        .env(
            "OPENAI_BASE_URL",
            &format!("http://127.0.0.1:{}/v1", server::unused_port()),
        )
        .args(["--chat", "--retries", "0"])
        .stdin("a\nb\n")
        .run();
    assert_eq!(out.code, 4, "{}", out.render());
    assert_eq!(out.stdout(), "");
    assert_eq!(
        out.stderr.matches("connection refused").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn defect5_calls_to_tools_nobody_runs_are_answered_so_the_next_turn_is_accepted() {
    let scratch = Scratch::new("chat-tools");
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"get_weather","parameters":{"type":"object"}}"#,
    );
    let call = server::delta(
        json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}),
        None,
    );
    let server = Server::strict(
        vec![
            sse(&[call, finish("tool_calls"), DONE.to_owned()]),
            answer("Sorry, no weather."),
        ],
        server::rejects_null_content,
    );
    let out = gptstream()
        .server(&server)
        .args(["--chat", "-q", "--tools", &tools])
        .stdin("weather?\nthen?\n")
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        out.stdout(),
        "{\"id\":\"call_1\",\"name\":\"get_weather\",\"arguments\":{}}\nSorry, no weather.\n"
    );
    assert!(out.stderr.contains("no --tool-exec runs"), "{}", out.stderr);
    server.request();
    let second = messages(&server.request());
    assert_eq!(
        second[2],
        json!({"role":"tool","tool_call_id":"call_1","content":"error: this tool call was not run: no --tool-exec runs this tool in this chat"})
    );
}

#[test]
fn defect12_sigint_to_a_piped_chat_at_its_prompt_says_interrupted() {
    let server = Server::start(vec![answer("Hi!")]);
    let mut child = Command::new(crate::util::binary())
        .env_clear()
        .env("OPENAI_BASE_URL", server.base_url())
        .args(["--chat", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    keys.write_all(b"hello\n").unwrap();
    wait_for(&stdout, "\"type\":\"end\"");
    crate::signals::send(&child, "INT");
    let out = finish_child(child);
    drop(keys);
    assert_eq!(out.code, 130, "{}", out.render());
    let rest = String::from_utf8(stdout.iter().flatten().collect()).unwrap();
    assert_eq!(
        rest,
        "{\"type\":\"error\",\"message\":\"interrupted\",\"status\":null,\"code\":null,\"signal\":\"SIGINT\"}\n"
    );
}

/// `script` runs the command on a new pseudo-terminal and copies our writes to its input.
fn on_a_terminal(server: &Server, extra: &str) -> std::process::Child {
    let command = format!(
        "exec env OPENAI_BASE_URL={} {} {extra}",
        server.base_url(),
        crate::util::binary()
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

/// What a terminal shows, read as it comes. Each wait looks for its text after the end of the
/// previous match, so two things that arrive in one read are both found, in order.
struct Screen {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: String,
    cursor: usize,
}

impl Screen {
    fn new(pipe: impl std::io::Read + Send + 'static) -> Screen {
        Screen {
            rx: drain(pipe),
            seen: String::new(),
            cursor: 0,
        }
    }

    /// Everything from the end of the previous match to the end of `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + server::PATIENCE;
        loop {
            if let Some(at) = self.seen[self.cursor..].find(needle) {
                let end = self.cursor + at + needle.len();
                let shown = self.seen[self.cursor..end].to_owned();
                self.cursor = end;
                return shown;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("{needle:?} never arrived; the screen shows {:?}", self.seen),
            }
        }
    }

    /// All that was shown, once the program has exited.
    fn all(mut self) -> String {
        for bytes in self.rx.iter() {
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
        self.seen
    }
}

/// The pid of the program `script` runs: its only child.
fn child_of(script: &std::process::Child) -> u32 {
    let pid = script.id();
    let deadline = std::time::Instant::now() + server::PATIENCE;
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next() {
            return child.parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "script started no child"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn defect12_at_a_terminal_ctrl_c_stops_the_answer_once_on_its_own_line_and_the_chat_goes_on() {
    let scratch = Scratch::new("chat-pty");
    let saved = scratch.path("chat.json");
    // The first answer stalls after "Once upon" until gptstream closes the connection: a
    // stopped answer must close it (defect 12's double prompt came from an answer left running).
    let (closed_tx, closed) = std::sync::mpsc::channel();
    let stalled = vec![
        server::chunked_head(200, "text/event-stream"),
        server::Step::Chunk(content("Once upon").into_bytes()),
        server::Step::AwaitClose(closed_tx),
    ];
    let server = Server::start(vec![stalled, answer("The end.")]);
    let mut child = on_a_terminal(&server, &format!("--save {saved}"));
    let mut keys = child.stdin.take().unwrap();
    let mut screen = Screen::new(child.stdout.take().unwrap());
    screen.wait_for("you> ");
    keys.write_all(b"tell a story\n").unwrap();
    screen.wait_for("Once upon");
    // Ctrl-C, as the terminal's line discipline turns it into SIGINT.
    keys.write_all(b"\x03").unwrap();
    let after = screen
        .wait_for("you> ")
        .replace("\x1b[2m", "")
        .replace("\x1b[0m", "");
    closed
        .recv_timeout(server::PATIENCE)
        .expect("the stopped answer's connection was closed");
    // The cut answer's line is ended before the summary, which has a line of its own.
    let summary = after.find("interrupted signal=SIGINT").expect(&after);
    assert!(after[..summary].ends_with('\n'), "{after:?}");
    keys.write_all(b"go on\n").unwrap();
    screen.wait_for("The end.");
    screen.wait_for("you> ");
    keys.write_all(b"\x04").unwrap(); // Ctrl-D
    let out = finish_child(child);
    let seen = screen.all();
    assert_eq!(out.code, 0, "{}\n{seen:?}", out.render());
    // One prompt each time, never two in a row; and Ctrl-D ends the prompt's line.
    assert_eq!(seen.matches("you> ").count(), 3, "{seen:?}");
    assert!(
        seen.trim_end_matches(['\r', '\n']).ends_with("you> ") && seen.ends_with('\n'),
        "{seen:?}"
    );
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

#[test]
fn defect12_sigterm_at_a_terminal_prompt_says_interrupted_and_exits_143() {
    let server = Server::start(vec![answer("Hi!")]);
    let mut child = on_a_terminal(&server, "");
    let mut keys = child.stdin.take().unwrap();
    let mut screen = Screen::new(child.stdout.take().unwrap());
    screen.wait_for("you> ");
    keys.write_all(b"hello\n").unwrap();
    screen.wait_for("Hi!");
    screen.wait_for("you> ");
    crate::signals::send_to(child_of(&child), "TERM");
    let after = screen.wait_for("interrupted signal=SIGTERM");
    let out = finish_child(child);
    assert_eq!(out.code, 143, "{}", out.render());
    // The prompt's line is ended first.
    assert!(!after.starts_with("interrupted"), "{after:?}");
    assert!(after.contains('\n'), "{after:?}");
    server.request();
}
