//! The request body on its way to the socket: written piece by piece, with the conversation's
//! big strings (attachments' base64, attached texts) borrowed rather than copied.
//!
//! A request is built as a [`Json`] tree that borrows from the conversation, then laid out by
//! [`Wire`] as a list of pieces: small runs of serialized JSON, and the big strings themselves,
//! in place. The pieces are read into the socket with an exact `Content-Length`, so a 20 MiB
//! image is held once, in the conversation, however many requests send it.

use std::io::{self, Read};

use serde_json::Value;

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
        self.map_refs(&Value::clone)
    }

    /// The value with every borrowed part passed through `show` (`--dry-run` shortens
    /// attachments this way without copying them first).
    pub(crate) fn map_refs(&self, show: &dyn Fn(&Value) -> Value) -> Value {
        match self {
            Json::Ref(value) => show(value),
            Json::Owned(value) => show(value),
            Json::List(items) => items.iter().map(|item| item.map_refs(show)).collect(),
            Json::Object(fields) => fields
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.map_refs(show)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
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
}

impl<'a> Wire<'a> {
    pub(crate) fn new(json: &'a Json<'a>) -> io::Result<Self> {
        let mut wire = Wire {
            pieces: vec![Piece::Bytes(Vec::new())],
            len: 0,
        };
        wire.json(json)?;
        wire.len = wire
            .pieces
            .iter()
            .map(|piece| match piece {
                Piece::Bytes(bytes) => bytes.len() as u64,
                Piece::Borrowed(bytes) => bytes.len() as u64,
            })
            .sum();
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
            Json::List(items) => {
                self.out().push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out().push(b',');
                    }
                    self.json(item)?;
                }
                self.out().push(b']');
                Ok(())
            }
            Json::Object(fields) => {
                self.out().push(b'{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.out().push(b',');
                    }
                    serde_json::to_writer(self.out(), key)?;
                    self.out().push(b':');
                    self.json(value)?;
                }
                self.out().push(b'}');
                Ok(())
            }
        }
    }

    fn value(&mut self, value: &'a Value) -> io::Result<()> {
        match value {
            Value::String(text) if text.len() >= BORROW_FROM && needs_no_escape(text) => {
                self.out().push(b'"');
                self.pieces.push(Piece::Borrowed(text.as_bytes()));
                self.out().push(b'"');
            }
            Value::Array(items) => {
                self.out().push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out().push(b',');
                    }
                    self.value(item)?;
                }
                self.out().push(b']');
            }
            Value::Object(fields) => {
                self.out().push(b'{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.out().push(b',');
                    }
                    serde_json::to_writer(self.out(), key)?;
                    self.out().push(b':');
                    self.value(value)?;
                }
                self.out().push(b'}');
            }
            scalar => serde_json::to_writer(self.out(), scalar)?,
        }
        Ok(())
    }
}

/// Whether serde_json writes this string as it is between quotes: no quote, backslash or
/// control character (base64 and most text).
fn needs_no_escape(text: &str) -> bool {
    !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// The body's bytes, piece after piece.
pub(crate) struct WireReader<'a> {
    pieces: &'a [Piece<'a>],
    at: usize,
    offset: usize,
}

impl Read for WireReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(piece) = self.pieces.get(self.at) {
            let bytes = match piece {
                Piece::Bytes(bytes) => bytes.as_slice(),
                Piece::Borrowed(bytes) => bytes,
            };
            let rest = &bytes[self.offset..];
            if rest.is_empty() {
                self.at += 1;
                self.offset = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.offset += n;
            return Ok(n);
        }
        Ok(0)
    }
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
        let borrowed: Vec<usize> = wire
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Borrowed(b) => Some(b.len()),
                Piece::Bytes(_) => None,
            })
            .collect();
        // The image's URL is borrowed; the text that needs escaping is written as a copy.
        assert_eq!(borrowed, [big.len() + "data:image/png;base64,".len()]);
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
}
