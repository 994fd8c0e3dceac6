//! The command line as users meet it: help, version, completions.

use std::path::Path;

use crate::util::gptstream;

#[test]
fn help_has_examples_and_the_exit_code_table() {
    let out = gptstream().arg("--help").run();
    assert_eq!(out.code, 0);
    let help = out.stdout();
    for needle in [
        "Examples:",
        "gptstream --replay examples/hello.sse",
        "Exit codes:",
        "  0  success",
        "  1  other error",
        "  2  usage or input error",
        "  3  API error",
        "  4  network error",
        "  5  truncated",
        "  6  the model was still calling tools",
        "  7  the answer does not match --schema",
        "  130, 143  interrupted",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}

#[test]
fn version_prints_name_and_version() {
    let out = gptstream().arg("--version").run();
    assert_eq!(
        out.render(),
        format!(
            "status: 0\n--- stdout\ngptstream {}\n\n--- stderr\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// The committed completion scripts must be what the current CLI generates. With
/// `GPTSTREAM_BLESS=1` the files are rewritten, and the test still fails, so CI never blesses.
#[test]
fn committed_completions_are_up_to_date() {
    let files = [
        ("bash", "gptstream.bash"),
        ("zsh", "_gptstream"),
        ("fish", "gptstream.fish"),
        ("elvish", "gptstream.elv"),
        ("powershell", "_gptstream.ps1"),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    let mut stale = Vec::new();
    for (shell, file) in files {
        let out = gptstream().args(["--completions", shell]).run();
        assert_eq!(out.code, 0, "{}", out.render());
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(&out.stdout[..]) {
            if std::env::var_os("GPTSTREAM_BLESS").is_some() {
                std::fs::write(&path, &out.stdout).unwrap();
            }
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "completions/{stale:?} differ from the CLI; rerun with GPTSTREAM_BLESS=1 and commit"
    );
}

/// `--man` prints `doc/gptstream.1` (a unit test in src/cli/manual.rs keeps that page in step with
/// the flags), and `man` must render it without a warning.
#[test]
fn the_man_page_is_printed_whole_and_renders_cleanly() {
    let out = gptstream().arg("--man").run();
    assert_eq!(out.code, 0, "{}", out.render());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/gptstream.1");
    assert!(
        std::fs::read(&path).unwrap() == out.stdout,
        "--man prints the committed page"
    );
    // groff's own checks (every warning on), as `man -l` would render it.
    let rendered = std::process::Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&path)
        .output()
        .expect("groff (man-db's renderer) is installed: .ci/run installs it");
    assert!(rendered.status.success(), "{rendered:?}");
    assert_eq!(String::from_utf8_lossy(&rendered.stderr), "", "groff warns");
    for section in ["EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES", "OPTIONS"] {
        let heading = if section.contains(' ') {
            format!(".SH \"{section}\"\n")
        } else {
            format!(".SH {section}\n")
        };
        assert!(out.stdout().contains(&heading), "{section}");
    }
}

/// Values from the environment are not flags given: `--completions` and `--man` work wherever
/// SSL_CERT_FILE or OPENAI_BASE_URL is set (clap's `exclusive` refused them).
#[test]
fn completions_and_man_work_with_variables_set() {
    for flag in [&["--completions", "bash"][..], &["--man"]] {
        let out = gptstream()
            .args(flag)
            .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
            .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
            .env("GPTSTREAM_MODEL", "m")
            .run();
        assert_eq!(out.code, 0, "{flag:?}: {}", out.render());
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn harden8_help_and_man_name_variables_but_never_show_their_values() {
    let canary = "canary-Secret-9f3e";
    let variables = [
        "GPTSTREAM_MODEL",
        "GPTSTREAM_API",
        "OPENAI_BASE_URL",
        "SSL_CERT_FILE",
        "GPTSTREAM_PROFILE",
    ];
    for flags in [&["-h"][..], &["--help"][..], &["--man"][..]] {
        let mut command = gptstream().args(flags);
        for variable in variables {
            // GPTSTREAM_API must parse for --help to be reached at all.
            let value = if variable == "GPTSTREAM_API" {
                "responses".to_owned()
            } else {
                format!("{canary}-{variable}")
            };
            command = command.env(variable, &value);
        }
        let out = command.run();
        assert_eq!(out.code, 0, "{flags:?}: {}", out.render());
        let text = out.stdout();
        for variable in variables {
            assert!(
                text.contains(variable),
                "{flags:?} does not name {variable}"
            );
        }
        assert!(!text.contains(canary), "{flags:?} shows a value:\n{text}");
        assert!(
            !text.contains("GPTSTREAM_API=responses"),
            "{flags:?}:\n{text}"
        );
    }
}
