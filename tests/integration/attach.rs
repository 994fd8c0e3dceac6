//! `-a, --attach`: files as parts of the user message, told apart by their bytes, in the shape
//! each API wants; bad attachments refused before any request.

use serde_json::{Value, json};

use crate::server::{DONE, Server, content, finish, sse};
use crate::util::{Scratch, gptstream};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nIHDR";

fn ok() -> Vec<crate::server::Step> {
    sse(&[content("Seen."), finish("stop"), DONE.to_owned()])
}

#[test]
fn each_kind_becomes_its_part_by_its_bytes_not_its_name() {
    let scratch = Scratch::new("attach-kinds");
    let png = scratch.path("screenshot.txt");
    std::fs::write(&png, PNG).unwrap();
    let pdf = scratch.path("invoice.pdf");
    std::fs::write(&pdf, b"%PDF-1.7\n").unwrap();
    let notes = scratch.file("notes.md", "# Notes\nhello\n");
    let server = Server::one(ok());
    let out = gptstream()
        .server(&server)
        .args(["-q", "-a", &png, "-a", &pdf, "-a", &notes])
        .args(["-a", "https://example.com/cat.png", "describe"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nSeen.\n--- stderr\n");
    assert_eq!(
        server.request().json()["messages"][0],
        json!({"role":"user","content":[
            {"type":"text","text":"describe"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgpJSERS"}},
            {"type":"file","file":{"filename":"invoice.pdf","file_data":"data:application/pdf;base64,JVBERi0xLjcK"}},
            {"type":"text","text":"notes.md\n# Notes\nhello\n"},
            {"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}
        ]})
    );
}

#[test]
fn the_responses_api_gets_its_own_part_types() {
    let scratch = Scratch::new("attach-responses");
    let png = scratch.path("a.png");
    std::fs::write(&png, PNG).unwrap();
    let pdf = scratch.path("b.pdf");
    std::fs::write(&pdf, b"%PDF-1.7\n").unwrap();
    let answer = [
        format!(
            "data: {}\n\n",
            json!({"type":"response.output_text.delta","delta":"Seen."})
        ),
        format!(
            "data: {}\n\n",
            json!({"type":"response.completed","response":{"status":"completed"}})
        ),
    ];
    let server = Server::one(sse(&answer));
    let out = gptstream()
        .server(&server)
        .args(["--api", "responses", "-q", "-a", &png, "-a", &pdf, "what?"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let body = server.request().json();
    assert_eq!(
        body["input"][0]["content"],
        json!([
            {"type":"input_text","text":"what?"},
            {"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgpJSERS"},
            {"type":"input_file","filename":"b.pdf","file_data":"data:application/pdf;base64,JVBERi0xLjcK"}
        ])
    );
}

#[test]
fn stdin_can_be_the_attachment_with_the_prompt_in_the_arguments() {
    let server = Server::one(ok());
    let out = gptstream()
        .server(&server)
        .args(["-q", "-a", "-", "what is on screen?"])
        .stdin(PNG)
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let content = &server.request().json()["messages"][0]["content"];
    assert_eq!(
        content[0],
        json!({"type":"text","text":"what is on screen?"})
    );
    assert_eq!(
        content[1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgpJSERS"
    );
}

#[test]
fn bad_attachments_are_exit_2_naming_the_path_before_any_request() {
    let scratch = Scratch::new("attach-bad");
    let blob = scratch.path("blob.bin");
    std::fs::write(&blob, [0u8, 159, 146, 150]).unwrap();
    let big = scratch.path("big.txt");
    std::fs::write(&big, vec![b'a'; 20 * 1024 * 1024 + 1]).unwrap();
    let dir = scratch.path("");
    let missing = scratch.path("missing.png");
    for (path, why) in [
        (
            &blob,
            "not an image (PNG, JPEG, GIF, WebP), a PDF or UTF-8 text",
        ),
        (&big, "larger than 20 MiB"),
        (&dir, "is a directory"),
        (&missing, "No such file or directory"),
    ] {
        let out = gptstream()
            .args(["--base-url", "http://127.0.0.1:9/v1", "-a", path, "hi"])
            .run();
        assert_eq!(out.code, 2, "{}", out.render());
        assert!(
            out.stderr.starts_with(&format!("gptstream: -a {path}: ")) && out.stderr.contains(why),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn dry_run_shows_payloads_by_size_and_save_keeps_them() {
    let scratch = Scratch::new("attach-save");
    let png = scratch.path("big.png");
    let mut bytes = PNG.to_vec();
    bytes.extend(vec![0u8; 3000]);
    std::fs::write(&png, &bytes).unwrap();
    let out = gptstream().args(["--dry-run", "-a", &png, "hi"]).run();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["messages"][0]["content"][1]["image_url"]["url"],
        "data:image/png;base64,…(3012 bytes)"
    );
    let saved = scratch.path("chat.json");
    let server = Server::one(ok());
    let out = gptstream()
        .server(&server)
        .args(["-q", "-a", &png, "--save", &saved, "hi"])
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let url = on_disk[0]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert_eq!(url.len(), 4038, "the whole attachment is kept");
    assert_eq!(server.request().json()["messages"][0], on_disk[0]);
}

#[test]
fn review_fixes_text_that_looks_like_data_and_attachments_without_words() {
    // A prompt of pasted SSE is shown as it is, not as a payload.
    let sse_line = format!("data: {{\"x\":\"{}\"}}", "y".repeat(200));
    let out = gptstream().args(["--dry-run", &sse_line]).run();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["messages"][0]["content"], sse_line.as_str());
    // With --messages and no prompt, the attachments make the next user message.
    let scratch = Scratch::new("attach-continue");
    let saved = scratch.file(
        "chat.json",
        r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]"#,
    );
    let notes = scratch.file("notes.txt", "n\n");
    let out = gptstream()
        .args(["--dry-run", "--messages", &saved, "-a", &notes])
        .run();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body["messages"][2],
        json!({"role":"user","content":[{"type":"text","text":""},{"type":"text","text":"notes.txt\nn\n"}]})
    );
    // An empty stdin, or text with NUL bytes, is no attachment.
    let out = gptstream()
        .args(["--dry-run", "-a", "-", "hi"])
        .stdin("")
        .run();
    assert_eq!(
        out.render(),
        "status: 2\n--- stdout\n\n--- stderr\ngptstream: -a -: stdin is empty\n"
    );
    let out = gptstream()
        .args(["--dry-run", "-a", "-", "hi"])
        .stdin(vec![0u8; 100])
        .run();
    assert_eq!(out.code, 2, "{}", out.render());
}
