//! Colour: `--color auto|always|never` and `NO_COLOR` (no-color.org), on a terminal and into a
//! pipe. Where colour is off, not one escape byte is written.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::server::{DONE, Server, content, delta, finish, sse};
use crate::util::gptstream;

const ESC: u8 = 0x1b;

fn thinking_then_answer() -> Server {
    Server::one(sse(&[
        delta(json!({"reasoning_content":"hmm"}), None),
        content("Hi."),
        finish("stop"),
        DONE.to_owned(),
    ]))
}

/// What a terminal shows of `gptstream ARGS` (stdout and stderr together), and its status.
fn terminal_shows(args: &str) -> (bool, Vec<u8>) {
    let command = format!("exec {} {args}", crate::util::binary());
    let out = crate::util::on_terminal(&command);
    (out.status.success(), out.stdout)
}

#[test]
fn color_never_reaches_clap_s_own_errors_and_help() {
    let (ok, auto) = terminal_shows("--bogus");
    assert!(!ok);
    assert!(String::from_utf8_lossy(&auto).contains("unexpected argument"));
    assert!(
        auto.contains(&ESC),
        "clap colours its errors on a terminal: {auto:?}"
    );
    for args in [
        "--color never --bogus",
        "--color=never --bogus",
        "--color never --help",
    ] {
        let (_, shown) = terminal_shows(args);
        assert!(
            !shown.contains(&ESC),
            "{args}: {:?}",
            String::from_utf8_lossy(&shown)
        );
    }
}

/// Everything the terminal shows (stdout and stderr) of a run on a pseudo-terminal.
fn on_a_terminal(flags: &str, no_color: Option<&str>) -> Vec<u8> {
    let server = thinking_then_answer();
    let command = format!(
        "exec env OPENAI_BASE_URL={} {} {flags} hi",
        server.base_url(),
        crate::util::binary()
    );
    let mut script = Command::new("script");
    script
        .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .stdin(Stdio::null());
    if let Some(value) = no_color {
        script.env("NO_COLOR", value);
    }
    let out = script.output().expect("run util-linux script (bsdutils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hi."));
    out.stdout
}

#[test]
fn no_color_and_color_never_write_no_escape_on_a_terminal() {
    let dimmed = on_a_terminal("", None);
    assert!(
        dimmed.windows(4).any(|w| w == b"\x1b[2m"),
        "auto dims reasoning on a terminal: {dimmed:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_a_terminal("", Some("")).contains(&ESC));
    for (flags, no_color) in [
        ("", Some("1")),
        ("--color never", None),
        ("--color=never", Some("")),
    ] {
        let shown = on_a_terminal(flags, no_color);
        assert!(
            !shown.contains(&ESC),
            "{flags} NO_COLOR={no_color:?}: {shown:?}"
        );
    }
    // The flag beats the variable.
    assert!(on_a_terminal("--color always", Some("1")).contains(&ESC));
}

#[test]
fn color_always_colours_a_pipe_and_auto_does_not() {
    for (flag, coloured) in [("always", true), ("auto", false), ("never", false)] {
        let server = thinking_then_answer();
        let out = gptstream()
            .server(&server)
            .args(["--color", flag, "hi"])
            .run();
        assert_eq!(out.code, 0, "{}", out.render());
        assert_eq!(
            out.stdout, b"Hi.",
            "stdout is the answer alone, whatever --color says"
        );
        assert_eq!(
            out.stderr.contains('\x1b'),
            coloured,
            "--color {flag}: {:?}",
            out.stderr
        );
    }
}
