//! An incremental Server-Sent Events decoder: bytes in, events out, following the WHATWG
//! "event stream interpretation" rules.
//!
//! It knows nothing of OpenAI and does no I/O, so it is tested on byte slices split at every
//! offset. Bytes may arrive split anywhere: inside a line, inside a CRLF pair, inside a UTF-8
//! character, inside the BOM. Lines are decoded as UTF-8 (invalid sequences become U+FFFD, as the
//! spec says) only once they are whole, so a split character is never mangled. A line that fits
//! in one read is parsed in place without being copied; only a line that spans reads is carried
//! over in a buffer, and that buffer (and the event's data) is capped so a hostile server cannot
//! take unbounded memory.

use std::ops::ControlFlow;

use crate::error::StreamError;

/// The default cap on one line, and on one event's joined data.
pub(crate) const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One dispatched event. It borrows the decoder's buffers, so a consumer that keeps it must copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field, or `message` when the event had none.
    pub(crate) kind: &'a str,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: &'a str,
    /// The last event ID seen on the stream so far (it persists across events).
    pub(crate) id: &'a str,
}

/// The decoder's state between reads.
#[derive(Debug)]
pub struct Decoder {
    /// The start of a line whose end has not arrived yet.
    partial_line: Vec<u8>,
    data: String,
    kind: String,
    last_event_id: String,
    max_line: usize,
    /// The previous read ended in CR: a LF at the start of the next read belongs to it.
    after_cr: bool,
    /// How many bytes of a leading BOM have matched so far, until the question is settled.
    bom_matched: usize,
    bom_settled: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_LINE)
    }
}

impl Decoder {
    /// A decoder that refuses lines (and events' data) longer than `max_line` bytes.
    pub(crate) fn new(max_line: usize) -> Self {
        Decoder {
            partial_line: Vec::new(),
            data: String::new(),
            kind: String::new(),
            last_event_id: String::new(),
            max_line,
            after_cr: false,
            bom_matched: 0,
            bom_settled: false,
        }
    }

    /// Feeds the next bytes of the stream, calling `on_event` for each event they complete.
    ///
    /// Stops early, and returns `Break`, when `on_event` does; the rest of `bytes` is dropped.
    /// An incomplete line or event waits for the next call; at the end of the stream it is
    /// simply never dispatched, which is what the spec asks for.
    pub fn feed<F>(&mut self, bytes: &[u8], mut on_event: F) -> anyhow::Result<ControlFlow<()>>
    where
        F: FnMut(Event<'_>) -> anyhow::Result<ControlFlow<()>>,
    {
        let mut rest = bytes;
        if !self.bom_settled {
            while self.bom_matched < BOM.len() {
                match rest.first() {
                    None => return Ok(ControlFlow::Continue(())),
                    Some(&b) if b == BOM[self.bom_matched] => {
                        self.bom_matched += 1;
                        rest = &rest[1..];
                    }
                    Some(_) => break,
                }
            }
            self.bom_settled = true;
            if self.bom_matched < BOM.len() {
                // It looked like a BOM but was not: those bytes are content after all.
                let start = &BOM[..self.bom_matched];
                if self.feed_lines(start, &mut on_event)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        self.feed_lines(rest, &mut on_event)
    }

    fn feed_lines<F>(&mut self, bytes: &[u8], on_event: &mut F) -> anyhow::Result<ControlFlow<()>>
    where
        F: FnMut(Event<'_>) -> anyhow::Result<ControlFlow<()>>,
    {
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.carry_over(rest)?;
                break;
            };
            let flow = if self.partial_line.is_empty() {
                self.process_line(&rest[..end], on_event)?
            } else {
                self.carry_over(&rest[..end])?;
                let line = std::mem::take(&mut self.partial_line);
                let flow = self.process_line(&line, on_event);
                // Hand the buffer back so its capacity is reused by the next long line.
                self.partial_line = line;
                self.partial_line.clear();
                flow?
            };
            let terminator = rest[end];
            rest = &rest[end + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if flow.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn carry_over(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if self.partial_line.len() + bytes.len() > self.max_line {
            return Err(StreamError(format!(
                "an event-stream line is longer than {} bytes; refusing to buffer it",
                self.max_line
            ))
            .into());
        }
        self.partial_line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line<F>(&mut self, line: &[u8], on_event: &mut F) -> anyhow::Result<ControlFlow<()>>
    where
        F: FnMut(Event<'_>) -> anyhow::Result<ControlFlow<()>>,
    {
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line.len() > self.max_line {
            return Err(StreamError(format!(
                "an event-stream line is longer than {} bytes; refusing to buffer it",
                self.max_line
            ))
            .into());
        }
        if line[0] == b':' {
            return Ok(ControlFlow::Continue(()));
        }
        // Valid UTF-8 (the usual case) is checked by the fast validator and borrowed; only a
        // line with invalid bytes pays for the replacement.
        let text = match std::str::from_utf8(line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(line),
        };
        let (field, value) = match text.find(':') {
            Some(colon) => {
                let value = &text[colon + 1..];
                (&text[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&*text, ""),
        };
        match field {
            "event" => {
                self.kind.clear();
                self.kind.push_str(value);
            }
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_line {
                    return Err(StreamError(format!(
                        "an event's data is longer than {} bytes; refusing to buffer it",
                        self.max_line
                    ))
                    .into());
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => {
                self.last_event_id.clear();
                self.last_event_id.push_str(value);
            }
            // `retry` (the reconnection time) too: we make one request and never reconnect.
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    }

    fn dispatch<F>(&mut self, on_event: &mut F) -> anyhow::Result<ControlFlow<()>>
    where
        F: FnMut(Event<'_>) -> anyhow::Result<ControlFlow<()>>,
    {
        if self.data.is_empty() {
            self.kind.clear();
            return Ok(ControlFlow::Continue(()));
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let kind = if self.kind.is_empty() {
            "message"
        } else {
            &self.kind
        };
        let flow = on_event(Event {
            kind,
            data: &self.data,
            id: &self.last_event_id,
        });
        self.data.clear();
        self.kind.clear();
        flow
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An owned copy of an event, for comparing.
    type Owned = (String, String, String);

    fn decode_in_pieces(pieces: &[&[u8]]) -> anyhow::Result<Vec<Owned>> {
        let mut decoder = Decoder::default();
        let mut events = Vec::new();
        for piece in pieces {
            let _ = decoder.feed(piece, |e| {
                events.push((e.kind.to_owned(), e.data.to_owned(), e.id.to_owned()));
                Ok(ControlFlow::Continue(()))
            })?;
        }
        Ok(events)
    }

    fn ev(kind: &str, data: &str, id: &str) -> Owned {
        (kind.to_owned(), data.to_owned(), id.to_owned())
    }

    fn msg(data: &str) -> Owned {
        ev("message", data, "")
    }

    /// Decodes `input` whole, split in two at every offset, split in three at every pair of
    /// offsets for short inputs, and one byte at a time; every way must give `expected`.
    fn check(input: &[u8], expected: &[Owned]) {
        let name = String::from_utf8_lossy(input);
        assert_eq!(
            decode_in_pieces(&[input]).unwrap(),
            expected,
            "whole: {name:?}"
        );
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(
                decode_in_pieces(&[a, b]).unwrap(),
                expected,
                "split at {i}: {name:?}"
            );
        }
        if input.len() <= 64 {
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let pieces = [&input[..i], &input[i..j], &input[j..]];
                    assert_eq!(
                        decode_in_pieces(&pieces).unwrap(),
                        expected,
                        "split at {i},{j}"
                    );
                }
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            decode_in_pieces(&bytes).unwrap(),
            expected,
            "bytewise: {name:?}"
        );
    }

    #[test]
    fn lf_cr_and_crlf_all_end_lines() {
        let expected = [msg("a"), msg("b")];
        check(b"data: a\n\ndata: b\n\n", &expected);
        check(b"data: a\r\rdata: b\r\r", &expected);
        check(b"data: a\r\n\r\ndata: b\r\n\r\n", &expected);
        check(b"data: a\r\n\ndata: b\n\r\n", &expected);
    }

    #[test]
    fn a_lone_cr_then_lf_later_is_two_line_ends() {
        // "\r" ends a line, and a following "\n" only pairs with it when it comes next.
        check(b"data: a\r\n\rdata: b\n\n", &[msg("a"), msg("b")]);
    }

    #[test]
    fn leading_bom_is_stripped_once() {
        check(b"\xEF\xBB\xBFdata: a\n\n", &[msg("a")]);
        // A second BOM is not stripped: it becomes part of the field name, which is unknown.
        check(
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
            &[msg("b")],
        );
    }

    #[test]
    fn bytes_that_only_start_like_a_bom_are_content() {
        // U+FEC0 is EF BB 80: it shares two bytes with the BOM and must survive intact.
        check(
            "data: x\n\n\u{FEC0}: c\ndata: y\n\n".as_bytes(),
            &[msg("x"), msg("y")],
        );
        check("\u{FEC0}\ndata: y\n\n".as_bytes(), &[msg("y")]);
        check(b"\xEF\xBBdata: a\n\ndata: b\n\n", &[msg("b")]);
    }

    #[test]
    fn comments_are_ignored() {
        check(b": keep-alive\n\n:\ndata: a\n: inside\n\n", &[msg("a")]);
    }

    #[test]
    fn one_optional_space_after_the_colon_is_removed() {
        check(b"data:a\n\n", &[msg("a")]);
        check(b"data: a\n\n", &[msg("a")]);
        check(b"data:  a\n\n", &[msg(" a")]);
        check(b"data: a \n\n", &[msg("a ")]);
    }

    #[test]
    fn a_line_without_colon_is_a_field_with_empty_value() {
        check(b"data\n\n", &[msg("")]);
        check(b"data\ndata\n\n", &[msg("\n")]);
    }

    #[test]
    fn multiple_data_lines_are_joined_with_lf() {
        check(b"data: a\ndata: b\ndata:\ndata: c\n\n", &[msg("a\nb\n\nc")]);
    }

    #[test]
    fn event_type_applies_to_one_event_only() {
        check(
            b"event: error\ndata: x\n\ndata: y\n\n",
            &[ev("error", "x", ""), msg("y")],
        );
    }

    #[test]
    fn id_persists_and_ignores_nul() {
        check(
            b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\n",
            &[
                ev("message", "a", "1"),
                ev("message", "b", "1"),
                ev("message", "c", "1"),
                msg("d"),
            ],
        );
    }

    #[test]
    fn retry_lines_are_no_part_of_any_event() {
        check(
            b"retry: 1500\ndata: a\n\nretry: 15x\n\ndata: b\nretry:\n\n",
            &[msg("a"), msg("b")],
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        check(b"foo: bar\ndata: a\nDATA: b\n\n", &[msg("a")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_resets_the_type() {
        check(b"event: ping\n\ndata: a\n\n", &[msg("a")]);
        check(b"id: 7\n\n\n\n", &[]);
    }

    #[test]
    fn an_unterminated_event_at_end_of_body_is_discarded() {
        check(b"data: a\n\ndata: b\n", &[msg("a")]);
        check(b"data: a\n\ndata: b", &[msg("a")]);
    }

    #[test]
    fn multibyte_characters_survive_any_split() {
        check("data: héllo 🌍 → ✓\n\n".as_bytes(), &[msg("héllo 🌍 → ✓")]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        check(b"data: a\xFFb\n\n", &[msg("a\u{FFFD}b")]);
        check(b"data: \xE2\x82\n\n", &[msg("\u{FFFD}")]);
    }

    #[test]
    fn break_from_the_consumer_stops_decoding() {
        let mut decoder = Decoder::default();
        let mut seen = Vec::new();
        let flow = decoder
            .feed(b"data: a\n\ndata: b\n\ndata: c\n\n", |e| {
                seen.push(e.data.to_owned());
                Ok(if e.data == "b" {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })
            .unwrap();
        assert!(flow.is_break());
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn consumer_errors_propagate() {
        let mut decoder = Decoder::default();
        let result = decoder.feed(b"data: a\n\n", |_| anyhow::bail!("nope"));
        assert_eq!(result.unwrap_err().to_string(), "nope");
    }

    #[test]
    fn a_line_over_the_cap_is_an_error_however_it_arrives() {
        let long = [b"data: ".as_slice(), &[b'x'; 100], b"\n\n"].concat();
        let mut whole = Decoder::new(64);
        let noop = |_: Event<'_>| Ok(ControlFlow::Continue(()));
        let err = whole.feed(&long, noop).unwrap_err();
        assert!(err.is::<StreamError>(), "{err}");

        let mut pieces = Decoder::new(64);
        let err = long
            .chunks(7)
            .try_for_each(|c| pieces.feed(c, noop).map(drop))
            .unwrap_err();
        assert!(err.to_string().contains("longer than 64 bytes"), "{err}");
        // Memory stayed bounded: nothing over the cap was kept.
        assert!(pieces.partial_line.len() <= 64);
    }

    #[test]
    fn joined_data_over_the_cap_is_an_error() {
        let mut decoder = Decoder::new(64);
        let many = b"data: 0123456789\n".repeat(10);
        let err = decoder
            .feed(&many, |_| Ok(ControlFlow::Continue(())))
            .unwrap_err();
        assert!(err.to_string().contains("data is longer than 64"), "{err}");
    }

    #[test]
    fn a_realistic_openai_stream() {
        let body =
            b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n: OPENROUTER PROCESSING\n\ndata: [DONE]\n\n";
        check(body, &[msg("{\"a\":1}"), msg("{\"b\":2}"), msg("[DONE]")]);
    }

    /// A small deterministic generator, so property tests need no crate and failures replay.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// A byte string built from pieces that matter to an event stream, in random order.
        pub(crate) fn stream(&mut self, pieces: &[&[u8]], count: usize) -> Vec<u8> {
            (0..count)
                .flat_map(|_| pieces[self.below(pieces.len())].to_vec())
                .collect()
        }

        /// The input cut at up to `cuts` random places.
        pub(crate) fn split<'a>(&mut self, input: &'a [u8], cuts: usize) -> Vec<&'a [u8]> {
            let mut offsets: Vec<usize> = (0..cuts).map(|_| self.below(input.len() + 1)).collect();
            offsets.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for offset in offsets {
                pieces.push(&input[start..offset]);
                start = offset;
            }
            pieces.push(&input[start..]);
            pieces
        }
    }

    pub(crate) const SSE_PIECES: &[&[u8]] = &[
        b"data:",
        b"data: ",
        b"event: error",
        b"event:",
        b"id: 7",
        b"id",
        b"retry: 10",
        b":",
        b": c",
        b"\n",
        b"\n",
        b"\r",
        b"\r\n",
        b" ",
        b"x",
        b"\xEF\xBB\xBF",
        b"\xFF",
        "\u{e9}\u{1F30D}".as_bytes(),
        b"\xF0\x9F",
        b"[DONE]",
        b"\0",
    ];

    #[test]
    fn arbitrary_bytes_never_panic_and_splits_never_change_the_events() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..3000 {
            let count = 1 + rng.below(60);
            let input = rng.stream(SSE_PIECES, count);
            let whole = decode_in_pieces(&[&input]).unwrap();
            for _ in 0..4 {
                let cuts = 1 + rng.below(6);
                let pieces = rng.split(&input, cuts);
                assert_eq!(
                    decode_in_pieces(&pieces).unwrap(),
                    whole,
                    "case {case}: {input:?} as {pieces:?}"
                );
            }
        }
    }
}
