//! Terminal safety: text from the server that is not the answer (reasoning, refusals) reaches
//! stderr with its control characters shown, not obeyed; the answer keeps its exact bytes in a
//! pipe and is shown the same safe way on a terminal.

use serde_json::json;

use crate::server::{DONE, Server, content, delta, finish, sse};
use crate::util::gptstream;

/// Sets the window title, rings the bell, clears the screen, overwrites the line, and a C1 CSI.
const HOSTILE: &str = "A\x1b]0;pwned\x07\x1b[2J\rB\u{9b}31mC\x7f\n";
/// What is shown instead.
const SHOWN: &str = "A^[]0;pwned^G^[[2JBM-^[31mC^?\n";

fn hostile_server() -> Server {
    Server::one(sse(&[
        delta(json!({"reasoning_content": HOSTILE}), None),
        delta(json!({"refusal": HOSTILE}), None),
        content(HOSTILE),
        finish("stop"),
        DONE.to_owned(),
    ]))
}

#[test]
fn harden11_reasoning_and_refusals_are_shown_safely_and_a_pipe_gets_the_answer_s_exact_bytes() {
    let server = hostile_server();
    let out = gptstream().server(&server).args(["-q", "hi"]).run();
    assert_eq!(
        out.render(),
        format!(
            "status: 0\n--- stdout\n{HOSTILE}\n--- stderr\n{SHOWN}\ngptstream: the model refused: {SHOWN}\n"
        )
    );
}

#[test]
fn harden11_the_answer_on_a_terminal_is_shown_safely_too() {
    let server = hostile_server();
    let command = format!(
        "exec env OPENAI_BASE_URL={} {} -q --color never hi",
        server.base_url(),
        crate::util::binary()
    );
    let out = crate::util::on_terminal(&command);
    assert!(out.status.success());
    // The terminal turns each `\n` into `\r\n`; nothing else is a control character.
    let shown = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert_eq!(
        shown,
        format!("{SHOWN}\ngptstream: the model refused: {SHOWN}\n{SHOWN}")
    );
}
