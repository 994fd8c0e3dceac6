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

/// The most stdin may hold, as a prompt (or `--tools -`), and the longest line a chat reads.
/// Far beyond any model's context (a million tokens is a few MiB of text), yet bounded: a runaway
/// `cat /dev/zero | gptstream` ends with a clear error instead of eating the machine's memory.
pub(crate) const MAX_STDIN_BYTES: usize = 64 * 1024 * 1024;

/// What `MAX_STDIN_BYTES` is called in messages.
pub(crate) const MAX_STDIN_SHOWN: &str = "64 MiB";

/// Reads stdin whole when it is a pipe or a file; `None` on a terminal, so we never hang there.
/// The bytes are read once into one buffer that becomes the `String` (no copy); a regular file
/// gets a buffer of its size up front, so a big one is not grown by doubling.
pub(crate) fn read_stdin_if_piped() -> anyhow::Result<Option<String>> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    read_capped(stdin.lock(), regular_file_len()).map(Some)
}

/// stdin's size when it is a regular file (`< file`), for the buffer's first capacity.
#[cfg(unix)]
fn regular_file_len() -> usize {
    use std::os::fd::AsFd;
    let Ok(file) = io::stdin().as_fd().try_clone_to_owned() else {
        return 0;
    };
    match std::fs::File::from(file).metadata() {
        Ok(meta) if meta.is_file() => {
            usize::try_from(meta.len()).map_or(0, |len| len.min(MAX_STDIN_BYTES) + 1)
        }
        _ => 0,
    }
}

#[cfg(not(unix))]
fn regular_file_len() -> usize {
    0
}

/// Reads `input` to its end as UTF-8, refusing (exit 2) more than [`MAX_STDIN_BYTES`].
fn read_capped(input: impl Read, capacity: usize) -> anyhow::Result<String> {
    let mut bytes = Vec::with_capacity(capacity);
    input
        .take(MAX_STDIN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .context("cannot read stdin")?;
    if bytes.len() > MAX_STDIN_BYTES {
        return Err(UsageError(format!(
            "stdin is larger than {MAX_STDIN_SHOWN}, the most a prompt may be (far more than a model's context holds)"
        ))
        .into());
    }
    String::from_utf8(bytes).map_err(|err| {
        UsageError(format!(
            "stdin is not valid UTF-8 (invalid byte at offset {}); convert it first, e.g. with iconv",
            err.utf8_error().valid_up_to()
        ))
        .into()
    })
}

/// The user message from the argument words and stdin's text; an error when both are empty.
/// stdin's text is moved, never copied: with arguments too, they are put in front of it in place.
pub(crate) fn user_message(words: &[String], stdin: Option<String>) -> Result<String, UsageError> {
    let from_args = words.join(" ");
    let from_stdin = stdin.filter(|text| !text.trim().is_empty());
    match (from_args.trim().is_empty(), from_stdin) {
        (true, None) => Err(UsageError(NO_PROMPT_HINT.into())),
        (true, Some(text)) => Ok(text),
        (false, None) => Ok(from_args),
        (false, Some(mut text)) => {
            text.insert_str(0, &format!("{from_args}\n\n"));
            Ok(text)
        }
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
            user_message(&[], Some("from stdin\n".into())).unwrap(),
            "from stdin\n"
        );
        assert_eq!(
            user_message(&words(&["summarize"]), Some("line 1\nline 2\n".into())).unwrap(),
            "summarize\n\nline 1\nline 2\n"
        );
    }

    #[test]
    fn blank_stdin_does_not_count() {
        assert_eq!(
            user_message(&words(&["hi"]), Some(" \n".into())).unwrap(),
            "hi"
        );
        assert!(user_message(&[], Some("\n\n".into())).is_err());
        assert!(user_message(&words(&[" "]), None).is_err());
    }

    #[test]
    fn stdin_up_to_the_cap_is_read_and_past_it_refused() {
        let at_cap = io::repeat(b'a').take(MAX_STDIN_BYTES as u64);
        assert_eq!(read_capped(at_cap, 0).unwrap().len(), MAX_STDIN_BYTES);
        let past = io::repeat(b'a').take(MAX_STDIN_BYTES as u64 + 1);
        let err = read_capped(past, 0).unwrap_err();
        assert!(err.is::<UsageError>());
        assert!(err.to_string().contains("larger than 64 MiB"), "{err}");
    }

    #[test]
    fn bad_utf8_names_its_offset() {
        let err = read_capped(&b"ok\xff"[..], 0).unwrap_err();
        assert!(err.to_string().contains("offset 2"), "{err}");
    }
}
