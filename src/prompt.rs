//! The prompt: positional arguments and stdin turned into the request's `messages`.
//!
//! Arguments are joined with spaces. stdin is read when it is not a terminal (unless `--no-stdin`
//! or `--replay -` claims it). With both, the user message is the arguments, a blank line, then
//! stdin, so `git diff | gptstream "write a commit message"` reads as an instruction followed by
//! its material.

use std::io::{self, IsTerminal, Read};

use anyhow::Context;

use crate::error::UsageError;

const NO_PROMPT_HINT: &str = "no prompt: give it as arguments or on stdin, e.g. gptstream \"hello\" or echo hello | gptstream";

/// Reads stdin whole when it is a pipe or a file; `None` on a terminal, so we never hang there.
pub fn read_stdin_if_piped() -> anyhow::Result<Option<String>> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    stdin
        .lock()
        .read_to_end(&mut bytes)
        .context("cannot read stdin")?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(text)),
        Err(err) => Err(UsageError(format!(
            "stdin is not valid UTF-8 (invalid byte at offset {}); convert it first, e.g. with iconv",
            err.utf8_error().valid_up_to()
        ))
        .into()),
    }
}

/// The user message from the argument words and stdin's text; an error when both are empty.
pub fn user_message(words: &[String], stdin: Option<&str>) -> Result<String, UsageError> {
    let from_args = words.join(" ");
    let from_stdin = stdin.filter(|text| !text.trim().is_empty());
    match (from_args.trim().is_empty(), from_stdin) {
        (true, None) => Err(UsageError(NO_PROMPT_HINT.into())),
        (true, Some(text)) => Ok(text.to_owned()),
        (false, None) => Ok(from_args),
        (false, Some(text)) => Ok(format!("{from_args}\n\n{text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_stdin_and_both() {
        assert_eq!(
            user_message(&words(&["write", "a", "haiku"]), None).unwrap(),
            "write a haiku"
        );
        assert_eq!(
            user_message(&[], Some("from stdin\n")).unwrap(),
            "from stdin\n"
        );
        assert_eq!(
            user_message(&words(&["summarize"]), Some("line 1\nline 2\n")).unwrap(),
            "summarize\n\nline 1\nline 2\n"
        );
    }

    #[test]
    fn blank_stdin_does_not_count() {
        assert_eq!(user_message(&words(&["hi"]), Some(" \n")).unwrap(), "hi");
        assert!(user_message(&[], Some("\n\n")).is_err());
        assert!(user_message(&words(&[" "]), None).is_err());
    }
}
