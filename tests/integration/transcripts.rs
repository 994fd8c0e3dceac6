//! `--save` through the binary: the transcript file keeps what the user set up around it.

use std::path::Path;

use serde_json::Value;

use crate::server::{DONE, Server, content, finish, sse};
use crate::util::{Scratch, gptstream};

/// Issue #12, defect 8: `--save` through a symlink to a `chmod 600` transcript used to replace
/// the link with a regular 0644 file. The link stays a link, the target keeps its mode and gets
/// the conversation, and no temporary file is left beside either.
#[cfg(unix)]
#[test]
fn defect8_save_keeps_a_private_transcript_private_and_a_symlink_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("save-mode-link");
    let target = scratch.file("chat.json", r#"[{"role":"user","content":"first"}]"#);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = scratch.path("link.json");
    std::os::unix::fs::symlink("chat.json", &link).unwrap();

    let server = Server::one(sse(&[content("ok"), finish("stop"), DONE.to_owned()]));
    let out = gptstream()
        .server(&server)
        .args(["-q", "--messages", &link, "--save", &link, "second"])
        .run();
    assert_eq!(out.render(), "status: 0\n--- stdout\nok\n--- stderr\n");

    let link_meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(link_meta.file_type().is_symlink(), "the link was replaced");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(saved.as_array().map(Vec::len), Some(3), "{saved}");
    let dir = Path::new(&target).parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["chat.json", "link.json"], "no temporary file left");
}

/// `--save` onto something that is not a regular file: a FIFO, a symlink to one, a directory.
/// The atomic replace would turn it into a regular file (as root, `--save /dev/null` did), so it
/// is refused, before any request, and the thing is left as it was.
#[cfg(unix)]
#[test]
fn harden9_save_refuses_a_fifo_a_link_to_one_and_a_directory_before_any_request() {
    use std::os::unix::fs::FileTypeExt;
    let scratch = Scratch::new("save-fifo");
    let fifo = scratch.path("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let link = scratch.path("link.json");
    std::os::unix::fs::symlink("pipe", &link).unwrap();
    let dir = scratch.path("dir");
    std::fs::create_dir(&dir).unwrap();
    for (path, kind) in [(&fifo, "a FIFO"), (&link, "a FIFO"), (&dir, "a directory")] {
        for flags in [&[][..], &["--chat"][..]] {
            // Nothing listens: a request would be exit 4, not the refusal.
            let out = gptstream()
                .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
                .args(flags)
                .args(["-q", "--save", path, "hi"])
                .stdin("")
                .run();
            assert_eq!(
                out.render(),
                format!(
                    "status: 1\n--- stdout\n\n--- stderr\ngptstream: cannot save the conversation to {path}: \
                     it is {kind}, and --save replaces only a regular file\n"
                ),
                "{flags:?}"
            );
        }
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A chat's `/save` onto the FIFO is refused as well, and the chat goes on.
    let server = Server::one(sse(&[content("ok"), finish("stop"), DONE.to_owned()]));
    let out = gptstream()
        .server(&server)
        .args(["--chat", "-q"])
        .stdin(format!("/save {fifo}\nhi\n"))
        .run();
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stderr
            .contains("it is a FIFO, and --save replaces only a regular file"),
        "{}",
        out.render()
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}
