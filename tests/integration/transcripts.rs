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
