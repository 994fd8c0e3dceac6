//! Server text made safe to show on a terminal. A server (or a prompt-injected model) can send
//! escape sequences that set the window title, clear the screen, rewrite what was shown or, on
//! some terminals, answer back into the input. Text from the server that is not the answer
//! (reasoning, refusals, text said before tools ran) always passes through here on its way to
//! stderr, and so does the answer when stdout is a terminal; a pipe gets the answer's exact bytes.

use std::borrow::Cow;

/// `text` with every control character but `\n` and `\t` made visible as `cat -v` shows it
/// (ESC as `^[`, BEL as `^G`, DEL as `^?`, the C1 control U+009B as `M-^[`), and carriage
/// returns dropped, so a `\r\n` line end still shows as one and a lone `\r` cannot overwrite
/// the line before it.
pub(crate) fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_care) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        if !needs_care(ch) {
            out.push(ch);
            continue;
        }
        let code = u32::from(ch);
        match code {
            0x0d => {}
            0x7f => out.push_str("^?"),
            0x80..=0x9f => {
                out.push_str("M-^");
                out.push(char::from(u8::try_from(code - 0x80 + 0x40).unwrap_or(b'?')));
            }
            _ => {
                out.push('^');
                out.push(char::from(u8::try_from(code + 0x40).unwrap_or(b'?')));
            }
        }
    }
    Cow::Owned(out)
}

fn needs_care(ch: char) -> bool {
    ch.is_control() && ch != '\n' && ch != '\t'
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            visible("\x1b]0;pwned\x07\x1b[2Jok\r\nnext\rover\x7f\u{9b}31m\tend\n"),
            "^[]0;pwned^G^[[2Jok\nnextover^?M-^[31m\tend\n"
        );
        assert_eq!(visible("\0\x01\x1f"), "^@^A^_");
    }

    #[test]
    fn plain_text_is_borrowed_as_it_is() {
        for text in ["", "héllo, 世界 🦀\n\ttab", "\u{a0}non-breaking"] {
            assert!(matches!(visible(text), std::borrow::Cow::Borrowed(t) if t == text));
        }
    }
}
