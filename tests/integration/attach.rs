//! `-a, --attach`: files as parts of the user message, told apart by their bytes, in the shape
//! each API wants; bad attachments refused before any request.

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{DONE, Server, content, finish, sse};
use crate::util::{Scratch, gptstream};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nIHDR";

fn ok() -> Vec<crate::server::Step> {
    sse(&[content("Seen."), finish("stop"), DONE.to_owned()])
}

/// "Seen." in the dialect of `api`.
fn answer(api: &str) -> Vec<crate::server::Step> {
    if api == "chat" {
        return ok();
    }
    let event = |value: Value| format!("data: {value}\n\n");
    sse(&[
        event(json!({"type":"response.output_text.delta","delta":"Seen."})),
        event(json!({"type":"response.completed","response":{"status":"completed"}})),
    ])
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
    let request = server.request();
    // Byte for byte, as sent: the body is written in pieces from the conversation.
    assert_eq!(
        request.body,
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"describe"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgpJSERS"}},{"type":"file","file":{"filename":"invoice.pdf","file_data":"data:application/pdf;base64,JVBERi0xLjcK"}},{"type":"text","text":"notes.md\n# Notes\nhello\n"},{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]}],"stream":true,"stream_options":{"include_usage":true}}"#
    );
    assert_eq!(
        request.json()["messages"][0],
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
    let request = server.request();
    assert_eq!(
        request.body,
        r#"{"model":"gpt-4o-mini","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"what?"},{"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgpJSERS"},{"type":"input_file","filename":"b.pdf","file_data":"data:application/pdf;base64,JVBERi0xLjcK"}]}],"stream":true,"store":false}"#
    );
    let body = request.json();
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

/// Standard base64 (RFC 4648), written out here so the test does not share the binary's encoder.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn a_large_attachment_reaches_every_request_of_a_tool_loop_whole_with_its_length() {
    // Over a MiB, and not a multiple of the reader's buffer: the body is written from the
    // conversation in pieces, and every piece must arrive, counted in Content-Length.
    let mut png = PNG.to_vec();
    png.extend((0..1_234_567u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    // A long text that needs escaping, and one that does not.
    let quoted = format!("{}\"q\"\\\n", "é".repeat(5000));
    let plain = "abc ".repeat(3000);
    let scratch = Scratch::new("attach-large");
    let image = scratch.path("big.png");
    std::fs::write(&image, &png).unwrap();
    let quoted_file = scratch.file("quoted.txt", &quoted);
    let plain_file = scratch.file("plain.txt", &plain);
    let tools = scratch.file(
        "tools.json",
        r#"{"name":"f","parameters":{"type":"object","properties":{}}}"#,
    );
    let call = json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]});
    for api in ["chat", "responses"] {
        let (first, second) = if api == "chat" {
            (
                sse(&[
                    crate::server::delta(call.clone(), Some("tool_calls")),
                    DONE.to_owned(),
                ]),
                ok(),
            )
        } else {
            let event = |value: Value| format!("data: {value}\n\n");
            (
                sse(&[
                    event(
                        json!({"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"{}"}}),
                    ),
                    event(json!({"type":"response.completed","response":{"status":"completed"}})),
                ]),
                sse(&[
                    event(json!({"type":"response.output_text.delta","delta":"Seen."})),
                    event(json!({"type":"response.completed","response":{"status":"completed"}})),
                ]),
            )
        };
        let server = Server::start(vec![first, second]);
        let out = gptstream()
            .server(&server)
            .args([
                "--api",
                api,
                "-q",
                "--tools",
                &tools,
                "--tool-exec",
                "f=echo done",
            ])
            .args(["-a", &image, "-a", &quoted_file, "-a", &plain_file, "look"])
            .run();
        assert_eq!(
            out.render(),
            "status: 0\n--- stdout\nSeen.\n--- stderr\n",
            "{api}"
        );
        let url = format!("data:image/png;base64,{}", base64(&png));
        for round in 1..=2 {
            let request = server.request();
            assert_eq!(
                request.header("content-length"),
                Some(request.body.len().to_string().as_str()),
                "{api} round {round}"
            );
            let body = request.json();
            let (image_part, texts) = if api == "chat" {
                let parts = &body["messages"][0]["content"];
                (
                    &parts[1]["image_url"]["url"],
                    [&parts[2]["text"], &parts[3]["text"]],
                )
            } else {
                let parts = &body["input"][0]["content"];
                (
                    &parts[1]["image_url"],
                    [&parts[2]["text"], &parts[3]["text"]],
                )
            };
            assert!(
                *image_part == url.as_str(),
                "{api} round {round}: the image differs"
            );
            assert_eq!(
                *texts[0],
                format!("quoted.txt\n{quoted}"),
                "{api} round {round}"
            );
            assert_eq!(
                *texts[1],
                format!("plain.txt\n{plain}"),
                "{api} round {round}"
            );
        }
    }
}

#[test]
fn a_large_attachment_is_held_once_not_copied_per_stage() {
    // 16 MiB of image is 21.3 MiB of base64. Held once, the peak is that plus the program
    // (about 4 MiB); each copy (the request's, the serialized body's) adds another 21 MiB, as
    // three copies did before. The server waits before answering, so the peak is sampled.
    const MIB: u64 = 1024 * 1024;
    let mut png = PNG.to_vec();
    png.resize(16 * MIB as usize, 7);
    let scratch = Scratch::new("attach-memory");
    let image = scratch.path("big.png");
    std::fs::write(&image, &png).unwrap();
    for api in ["chat", "responses"] {
        let mut steps = vec![crate::server::Step::Sleep(Duration::from_millis(300))];
        steps.extend(answer(api));
        let server = Server::one(steps);
        let child = gptstream()
            .server(&server)
            .args(["--api", api, "-q", "-a", &image, "look"])
            .spawn();
        let (out, peak_kib) = crate::util::finish_measuring(child);
        assert!(peak_kib > 0, "the peak is read from /proc");
        assert_eq!(
            out.render(),
            "status: 0\n--- stdout\nSeen.\n--- stderr\n",
            "{api}"
        );
        let base64_kib = (png.len() as u64).div_ceil(3) * 4 / 1024;
        assert!(
            peak_kib < base64_kib + 12 * 1024,
            "{api}: peak {peak_kib} KiB for {base64_kib} KiB of base64"
        );
        assert_eq!(
            server.request().body.len() as u64 / 1024,
            base64_kib,
            "{api}"
        );
    }
}

#[test]
fn dry_run_shortens_a_long_attached_text_under_either_api() {
    let scratch = Scratch::new("attach-dry-text");
    let notes = scratch.file("notes.txt", &"line of notes\n".repeat(400));
    for (api, pointer) in [
        ("chat", "/messages/0/content/1/text"),
        ("responses", "/input/0/content/1/text"),
    ] {
        let out = gptstream()
            .args(["--dry-run", "--api", api, "-a", &notes, "hi"])
            .run();
        assert_eq!(out.code, 0, "{}", out.render());
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        let shown = body.pointer(pointer).and_then(Value::as_str).unwrap();
        assert!(shown.starts_with("notes.txt\nline of notes\n"), "{api}");
        assert!(shown.ends_with("…(5610 bytes)"), "{api}: {shown:?}");
        assert!(out.stdout.len() < 3000, "{api}: {} bytes", out.stdout.len());
    }
}
