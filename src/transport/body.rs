//! The request body on its way to the socket: written piece by piece, with the conversation's
//! big strings (attachments' base64, attached texts) borrowed rather than copied.
//!
//! A request is built as a [`Json`] tree that borrows from the conversation, then laid out by
//! [`Wire`] as a list of pieces: small runs of serialized JSON, and the big strings themselves,
//! in place. The pieces are read into the socket with an exact `Content-Length`, so a 20 MiB
//! image is held once, in the conversation, however many requests send it.

use std::io::{self, Read};

use serde_json::{Map, Value};

/// Strings at least this long that need no escaping are written from where they are.
const BORROW_FROM: usize = 4096;

/// A JSON value to be written, borrowing what it can.
#[derive(Debug)]
pub(crate) enum Json<'a> {
    /// Written as it is, from where it is (the conversation, the request's template).
    Ref(&'a Value),
    /// Made for this request: small things only.
    Owned(Value),
    List(Vec<Json<'a>>),
    Object(Vec<(&'a str, Json<'a>)>),
}

impl Json<'_> {
    /// The value this writes, as a `Value` (a copy, for tests).
    #[cfg(test)]
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Json::Ref(value) => (*value).clone(),
            Json::Owned(value) => value.clone(),
            Json::List(items) => items.iter().map(Json::to_value).collect(),
            Json::Object(fields) => fields
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.to_value()))
                .collect::<Map<_, _>>()
                .into(),
        }
    }

    /// The value as `--dry-run` shows it: attachments shortened (see
    /// [`shortened`]), and not copied whole first.
    pub(crate) fn shown(&self) -> Value {
        match self {
            Json::Ref(value) => shortened(value),
            Json::Owned(value) => shortened(value),
            Json::List(items) => items.iter().map(Json::shown).collect(),
            Json::Object(fields) => {
                // A text part made for this request (the Responses API's `input_text`).
                let text_part = fields.iter().any(|(key, value)| {
                    *key == "type" && matches!(value.as_str(), Some("text" | "input_text"))
                });
                fields
                    .iter()
                    .map(|(key, value)| {
                        let shown = match value.as_str() {
                            Some(text) if text_part && *key == "text" => {
                                Value::String(shortened_text(text))
                            }
                            _ => value.shown(),
                        };
                        ((*key).to_owned(), shown)
                    })
                    .collect::<Map<_, _>>()
                    .into()
            }
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Ref(Value::String(text)) | Json::Owned(Value::String(text)) => Some(text),
            _ => None,
        }
    }
}

/// A body laid out for sending: the bytes serde_json's compact form would give, in pieces.
pub(crate) struct Wire<'a> {
    pieces: Vec<Piece<'a>>,
    len: u64,
}

enum Piece<'a> {
    Bytes(Vec<u8>),
    Borrowed(&'a [u8]),
    /// A string that needs escaping (an attached text has newlines), escaped as it is read;
    /// `len` is its escaped length.
    Escaped {
        text: &'a [u8],
        len: u64,
    },
}

impl Piece<'_> {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(bytes) => bytes.len() as u64,
            Piece::Borrowed(bytes) => bytes.len() as u64,
            Piece::Escaped { len, .. } => *len,
        }
    }
}

impl<'a> Wire<'a> {
    pub(crate) fn new(json: &'a Json<'a>) -> io::Result<Self> {
        let mut wire = Wire {
            pieces: vec![Piece::Bytes(Vec::new())],
            len: 0,
        };
        wire.json(json)?;
        wire.len = wire.pieces.iter().map(Piece::len).sum();
        Ok(wire)
    }

    /// The body's length in bytes, for `Content-Length`.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads the body from the start.
    pub(crate) fn reader(&self) -> WireReader<'_> {
        WireReader {
            pieces: &self.pieces,
            at: 0,
            offset: 0,
            escaped: Vec::new(),
            escaped_at: 0,
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        if !matches!(self.pieces.last(), Some(Piece::Bytes(_))) {
            self.pieces.push(Piece::Bytes(Vec::new()));
        }
        match self.pieces.last_mut() {
            Some(Piece::Bytes(bytes)) => bytes,
            _ => unreachable!("a bytes piece was just pushed"),
        }
    }

    fn json(&mut self, json: &'a Json<'a>) -> io::Result<()> {
        match json {
            Json::Ref(value) => self.value(value),
            Json::Owned(value) => self.value(value),
            Json::List(items) => self.list(items, Self::json),
            Json::Object(fields) => self.object(fields.iter().map(|(k, v)| (*k, v)), Self::json),
        }
    }

    fn value(&mut self, value: &'a Value) -> io::Result<()> {
        match value {
            Value::String(text) if text.len() >= BORROW_FROM => {
                let text = text.as_bytes();
                self.out().push(b'"');
                let len: u64 = text.iter().map(|&b| escaped_len(b)).sum();
                self.pieces.push(if len == text.len() as u64 {
                    Piece::Borrowed(text)
                } else {
                    Piece::Escaped { text, len }
                });
                self.out().push(b'"');
                Ok(())
            }
            Value::Array(items) => self.list(items, Self::value),
            Value::Object(fields) => {
                self.object(fields.iter().map(|(k, v)| (k.as_str(), v)), Self::value)
            }
            scalar => Ok(serde_json::to_writer(self.out(), scalar)?),
        }
    }

    /// `[a,b]`, each item written by `each`.
    fn list<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Self, T) -> io::Result<()>,
    ) -> io::Result<()> {
        self.out().push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.out().push(b',');
            }
            each(self, item)?;
        }
        self.out().push(b']');
        Ok(())
    }

    /// `{"k":v,...}`, each value written by `each`.
    fn object<'k, T>(
        &mut self,
        fields: impl IntoIterator<Item = (&'k str, T)>,
        mut each: impl FnMut(&mut Self, T) -> io::Result<()>,
    ) -> io::Result<()> {
        self.out().push(b'{');
        for (i, (key, value)) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out().push(b',');
            }
            serde_json::to_writer(self.out(), key)?;
            self.out().push(b':');
            each(self, value)?;
        }
        self.out().push(b'}');
        Ok(())
    }
}

/// How many bytes serde_json writes for this byte of a string: a quote, a backslash and the
/// control characters are escaped (`\n`, `\u001f`...), everything else (UTF-8 included) is
/// written as it is.
fn escaped_len(byte: u8) -> u64 {
    match byte {
        b'"' | b'\\' | 0x08 | b'\t' | b'\n' | 0x0c | b'\r' => 2,
        0..0x20 => 6,
        _ => 1,
    }
}

/// Appends `bytes` escaped as serde_json escapes a string's bytes.
fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0..0x20 => {
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
                continue;
            }
            _ => {
                out.push(byte);
                continue;
            }
        };
        out.extend_from_slice(&[b'\\', short]);
    }
}

/// The body's bytes, piece after piece.
pub(crate) struct WireReader<'a> {
    pieces: &'a [Piece<'a>],
    at: usize,
    /// Where in the piece (in an escaped piece: in its unescaped text) reading is.
    offset: usize,
    /// An escaped piece's next stretch, escaped, and how much of it has been read.
    escaped: Vec<u8>,
    escaped_at: usize,
}

/// How much of an escaped string is escaped at a time.
const ESCAPE_STRETCH: usize = 16 * 1024;

impl Read for WireReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(piece) = self.pieces.get(self.at) {
            let escaped = matches!(piece, Piece::Escaped { .. });
            let rest = match piece {
                Piece::Bytes(bytes) => &bytes[self.offset..],
                Piece::Borrowed(bytes) => &bytes[self.offset..],
                Piece::Escaped { text, .. } => {
                    if self.escaped_at == self.escaped.len() {
                        let end = text.len().min(self.offset + ESCAPE_STRETCH);
                        let stretch = &text[self.offset..end];
                        self.offset = end;
                        self.escaped.clear();
                        self.escaped_at = 0;
                        escape(stretch, &mut self.escaped);
                    }
                    &self.escaped[self.escaped_at..]
                }
            };
            if rest.is_empty() {
                self.at += 1;
                self.offset = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            if escaped {
                self.escaped_at += n;
            } else {
                self.offset += n;
            }
            return Ok(n);
        }
        Ok(0)
    }
}

/// A copy of a request body for showing (`--dry-run`): every base64 `data:` URL is cut to its
/// type and the size of what it carries, `data:image/png;base64,…(123456 bytes)`, and an
/// attached text longer than a screen to its start and size. Other text is shown as it is.
pub(crate) fn shortened(value: &Value) -> Value {
    match value {
        Value::Object(part)
            if matches!(
                part.get("type").and_then(Value::as_str),
                Some("text" | "input_text")
            ) =>
        {
            part.iter()
                .map(|(key, value)| {
                    let shown = match value {
                        Value::String(text) if key == "text" => Value::String(shortened_text(text)),
                        other => shortened(other),
                    };
                    (key.clone(), shown)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        }
        Value::String(text) if is_base64_data_url(text) => {
            let (head, payload) = text.split_once(',').unwrap_or((text.as_str(), ""));
            let padding = payload.bytes().rev().take_while(|&b| b == b'=').count();
            let bytes = (payload.len() / 4 * 3).saturating_sub(padding);
            Value::String(format!("{head},…({bytes} bytes)"))
        }
        Value::Array(items) => items.iter().map(shortened).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), shortened(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other.clone(),
    }
}

/// An attached text as `--dry-run` shows it: longer than a screen, its start and its size.
pub(crate) fn shortened_text(text: &str) -> String {
    const TEXT_SHOWN: usize = 2000;
    if text.len() <= TEXT_SHOWN {
        return text.to_owned();
    }
    let mut cut = TEXT_SHOWN;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…({} bytes)", &text[..cut], text.len())
}

/// `data:TYPE;base64,...`, as attachments are sent (see [`crate::session::attach`]).
fn is_base64_data_url(text: &str) -> bool {
    text.strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .is_some_and(|(head, _)| head.ends_with(";base64") && !head.contains(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire_bytes(json: &Json<'_>) -> Vec<u8> {
        let wire = Wire::new(json).unwrap();
        let mut bytes = Vec::new();
        // A small buffer, so reads cross every piece boundary.
        let mut reader = wire.reader();
        let mut buf = [0u8; 7];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        assert_eq!(bytes.len() as u64, wire.len(), "Content-Length matches");
        bytes
    }

    #[test]
    fn writes_what_serde_json_writes_borrowing_big_strings() {
        let big = "QUJD".repeat(2000);
        let escaped = format!("{}\"quoted\"\n", "é".repeat(3000));
        let template = json!({"model": "m", "n": 2, "t": 0.5, "stream": true, "x": null});
        let message = json!({"role": "user", "content": [
            {"type": "text", "text": escaped},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{big}")}},
        ]});
        let tree = Json::Object(vec![
            ("model", Json::Ref(&template["model"])),
            ("messages", Json::List(vec![Json::Ref(&message)])),
            ("extra", Json::Owned(json!({"a": [1, "two", false]}))),
            ("all", Json::Ref(&template)),
            ("empty", Json::List(vec![])),
            ("none", Json::Object(vec![])),
        ]);
        let expected = serde_json::to_vec(&tree.to_value()).unwrap();
        assert_eq!(wire_bytes(&tree), expected);

        let wire = Wire::new(&tree).unwrap();
        let borrowed: Vec<(&str, usize)> = wire
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Borrowed(b) => Some(("as is", b.len())),
                Piece::Escaped { text, .. } => Some(("escaped", text.len())),
                Piece::Bytes(_) => None,
            })
            .collect();
        // Both big strings are written from where they are: the image's URL as it is, the
        // text escaped as it is read.
        assert_eq!(
            borrowed,
            [
                ("escaped", escaped.len()),
                ("as is", big.len() + "data:image/png;base64,".len())
            ]
        );
    }

    #[test]
    fn escaping_as_read_is_serde_json_s_escaping_for_every_byte() {
        // Every ASCII byte, UTF-8 (two, three and four bytes, U+2028), DEL, long enough to
        // be escaped in several stretches.
        let every: String = (0u8..0x80).map(char::from).collect();
        let text = format!("{every}é€😀\u{2028}\u{7f}").repeat(ESCAPE_STRETCH / 100);
        let value = Value::String(text);
        assert_eq!(
            wire_bytes(&Json::Ref(&value)),
            serde_json::to_vec(&value).unwrap()
        );
    }

    #[test]
    fn a_lone_value_and_nothing_else() {
        for value in [
            json!(null),
            json!("x"),
            json!([]),
            json!({"k": "QUJD".repeat(1500)}),
        ] {
            let tree = Json::Ref(&value);
            assert_eq!(wire_bytes(&tree), serde_json::to_vec(&value).unwrap());
        }
    }

    #[test]
    fn payloads_show_short() {
        let long = format!("data:image/png;base64,{}", "A".repeat(200));
        assert_eq!(
            shortened(&json!({"a":[{"url": long}], "b": "data:short"})),
            json!({"a":[{"url":"data:image/png;base64,…(150 bytes)"}], "b": "data:short"})
        );
    }
}
