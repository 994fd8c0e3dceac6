//! `--man`: the man page, `doc/gptstream.1`, built into the binary. A test generates it from
//! the same clap definition as `--help` (with clap_mangen) and fails when the committed page
//! differs, so the two never disagree; generating it there rather than at run time keeps
//! clap_mangen's 95 KiB out of the binary. The sections a man page has and `--help` has not
//! (exit status, environment, files) are added to what clap_mangen makes; the examples and the
//! exit codes are read from `--help`'s own text.

use std::io::{self, Write};

/// The page, as committed.
const PAGE: &str = include_str!("../../doc/gptstream.1");

/// Writes the man page in roff.
pub(crate) fn write(out: &mut dyn Write) -> anyhow::Result<()> {
    out.write_all(PAGE.as_bytes())?;
    out.flush().map_err(io::Error::into)
}

#[cfg(test)]
mod generate {
    use std::io::Write;

    use clap::CommandFactory;
    use clap_mangen::roff::{Roff, bold, italic, roman};

    use crate::cli::args::{AFTER_HELP, Args};

    /// Variables read that no flag names as its `env`.
    const ENVIRONMENT: &[(&str, &str)] = &[
        (
            "OPENAI_API_KEY",
            "The API key, sent as Authorization: Bearer. Only to a profile without a key source of its own; never printed.",
        ),
        (
            "GPTSTREAM_CONFIG",
            "The config file, instead of $XDG_CONFIG_HOME/gptstream/config.toml or ~/.config/gptstream/config.toml.",
        ),
        (
            "ALL_PROXY, HTTPS_PROXY, HTTP_PROXY",
            "The proxy (any scheme --proxy takes), unless --proxy or a profile's proxy is given; the lowercase names too.",
        ),
        (
            "NO_PROXY",
            "Hosts reached without the proxy from the environment, comma-separated.",
        ),
        (
            "NO_COLOR",
            "Set and not empty: no colour, not one escape sequence, unless --color always.",
        ),
    ];

    /// The man page in roff, made from the flags.
    fn page(out: &mut dyn Write) -> std::io::Result<()> {
        let command = Args::command().after_help(None::<&str>);
        let version = command.get_version().unwrap_or_default().to_owned();
        let man = clap_mangen::Man::new(command)
            .source(format!("gptstream {version}"))
            .manual("User Commands");
        man.render_title(out)?;
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
        let mut roff = Roff::new();
        examples(&mut roff);
        exit_status(&mut roff);
        environment(&mut roff);
        files(&mut roff);
        roff.to_writer(out)?;
        man.render_version_section(out)
    }

    /// The lines of `--help`'s block that starts with `heading`, up to the next blank line.
    fn help_block(heading: &str) -> impl Iterator<Item = &'static str> {
        AFTER_HELP
            .lines()
            .skip_while(move |line| *line != heading)
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
    }

    fn examples(roff: &mut Roff) {
        roff.control("SH", ["EXAMPLES"]);
        for example in help_block("Examples:") {
            roff.control("TP", []).text([bold(example.trim())]);
        }
    }

    fn exit_status(roff: &mut Roff) {
        roff.control("SH", ["EXIT STATUS"]);
        for line in help_block("Exit codes:") {
            let (code, meaning) = line.trim().split_once("  ").unwrap_or((line.trim(), ""));
            roff.control("TP", [])
                .text([bold(code.trim())])
                .text([roman(meaning.trim())]);
        }
    }

    fn environment(roff: &mut Roff) {
        roff.control("SH", ["ENVIRONMENT"]);
        let command = Args::command();
        for arg in command.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                roff.control("TP", [])
                    .text([bold(env.to_string_lossy())])
                    .text([roman("Same as "), bold(format!("--{long}")), roman(".")]);
            }
        }
        for (name, meaning) in ENVIRONMENT {
            roff.control("TP", [])
                .text([bold(*name)])
                .text([roman(*meaning)]);
        }
    }

    fn files(roff: &mut Roff) {
        roff.control("SH", ["FILES"]);
        roff.control("TP", [])
        .text([italic("$XDG_CONFIG_HOME/gptstream/config.toml")])
        .text([roman(
            "(else ~/.config/gptstream/config.toml, or $GPTSTREAM_CONFIG): TOML. Top-level keys are \
             defaults; [profiles.NAME] tables override them, and -p NAME picks one. Keys mirror the \
             long flags: base_url, api, model, system, max_tokens, temperature, headers (a table), \
             extra (a table), retries, connect_timeout, first_byte_timeout, idle_timeout, timeout, \
             proxy, cacert, reasoning_effort, no_usage, color, and one of api_key_env (the name of \
             the variable that holds the key), api_key_file or api_key. A file holding a secret \
             (an api_key, a secret header such as Authorization or x-api-key, a password or key \
             in base_url, a proxy password) must be readable by its owner only (chmod 600). \
             Precedence, highest first: flag, selected profile, environment variable, \
             top-level default, built-in default. The whole file is checked when it is read.",
        )]);
    }

    #[test]
    fn the_help_blocks_are_found() {
        assert!(help_block("Examples:").count() >= 5);
        let codes: Vec<&str> = help_block("Exit codes:").collect();
        assert!(codes.iter().any(|line| line.trim().starts_with("7 ")));
    }

    /// `doc/gptstream.1` must be what the flags make now. With `GPTSTREAM_BLESS=1` it is rewritten
    /// (and the test still fails, so CI never blesses).
    #[test]
    fn the_committed_page_is_made_from_the_flags() {
        let mut made = Vec::new();
        page(&mut made).unwrap();
        if made != super::PAGE.as_bytes() {
            if std::env::var_os("GPTSTREAM_BLESS").is_some() {
                let path = concat!(env!("CARGO_MANIFEST_DIR"), "/doc/gptstream.1");
                std::fs::write(path, &made).unwrap();
            }
            panic!(
                "doc/gptstream.1 differs from the flags; run GPTSTREAM_BLESS=1 cargo test --no-fail-fast, then cargo test, and commit"
            );
        }
    }
}
