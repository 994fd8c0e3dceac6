//! `-a, --attach`: files (and image URLs) that go with the prompt, as parts of the user message.
//!
//! What a file is comes from its first bytes, not its name: PNG, JPEG, GIF and WebP images
//! become image parts, PDFs file parts, UTF-8 text a text part (its base name on a line of its
//! own, then the contents). Anything else, a file too large, unreadable or a directory is a
//! usage error naming the path, before any request. The parts are in Chat Completions' shape;
//! the Responses API's are made from them on sending (see [`crate::transport::request`]).

use std::io::Read;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::UsageError;

/// The largest attachment: providers refuse far smaller images, and the conversation holds
/// each one's base64 in memory.
pub(crate) const MAX_BYTES: u64 = 20 * 1024 * 1024;

/// One attachment as a content part of the user message; `-` reads stdin (once).
pub(crate) fn load(spec: &str, stdin: &mut Option<Box<dyn Read>>) -> Result<Value, UsageError> {
    if spec.starts_with("http://") || spec.starts_with("https://") {
        // Passed as a URL, for the server to fetch: never downloaded here.
        return Ok(json!({"type": "image_url", "image_url": {"url": spec}}));
    }
    if spec == "-" {
        let reader = stdin
            .take()
            .ok_or_else(|| UsageError("-a -: stdin is a terminal, or already attached".into()))?;
        return part("stdin", spec, reader, None);
    }
    let fail = |why: String| UsageError(format!("-a {spec}: {why}"));
    let file = std::fs::File::open(spec).map_err(|err| fail(err.to_string()))?;
    let metadata = file.metadata().map_err(|err| fail(err.to_string()))?;
    if metadata.is_dir() {
        return Err(fail("is a directory".into()));
    }
    part(&base_name(spec), spec, file, Some(metadata.len()))
}

fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// The content part for what `reader` holds, by what its first bytes say it is. Images and
/// PDFs are encoded as they are read, so only their base64 is ever held; `size` (a file's
/// length) reserves room for it at once.
fn part(
    name: &str,
    shown: &str,
    reader: impl Read,
    size: Option<u64>,
) -> Result<Value, UsageError> {
    let fail = |why: String| UsageError(format!("-a {shown}: {why}"));
    let too_large = || fail(format!("larger than {} MiB", MAX_BYTES >> 20));
    if size.is_some_and(|size| size > MAX_BYTES) {
        return Err(too_large());
    }
    let mut reader = reader.take(MAX_BYTES + 1);
    let mut head = [0u8; 12];
    let head_len = fill(&mut reader, &mut head).map_err(|err| fail(err.to_string()))?;
    let head = &head[..head_len];
    if head.is_empty() && shown == "-" {
        return Err(fail("stdin is empty".into()));
    }
    let kind = image_type(head).or_else(|| head.starts_with(b"%PDF-").then_some("application/pdf"));
    if let Some(mime) = kind {
        let url = data_url(mime, head, &mut reader, size)
            .map_err(|err| fail(err.to_string()))?
            .ok_or_else(too_large)?;
        let url = Value::String(url);
        return Ok(if mime == "application/pdf" {
            let file = object([("filename", name.into()), ("file_data", url)]);
            object([("type", "file".into()), ("file", file)])
        } else {
            object([
                ("type", "image_url".into()),
                ("image_url", object([("url", url)])),
            ])
        });
    }
    // The part's text is the name, a newline, then the contents: read into place, one copy.
    let expected = usize::try_from(size.unwrap_or(0).min(MAX_BYTES)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(name.len() + 1 + expected.max(head.len()));
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(b'\n');
    let start = bytes.len();
    bytes.extend_from_slice(head);
    reader
        .read_to_end(&mut bytes)
        .map_err(|err| fail(err.to_string()))?;
    if (bytes.len() - start) as u64 > MAX_BYTES {
        return Err(too_large());
    }
    // Text has no NUL bytes, whatever UTF-8 allows.
    match String::from_utf8(bytes)
        .ok()
        .filter(|text| !text[start..].contains('\0'))
    {
        Some(text) => Ok(object([("type", "text".into()), ("text", text.into())])),
        None => Err(fail(
            "not an image (PNG, JPEG, GIF, WebP), a PDF or UTF-8 text".into(),
        )),
    }
}

/// A JSON object of these fields, moved in: `json!` copies a value it is given by name, and
/// these can be megabytes.
pub(crate) fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Reads until `buf` is full or the input ends; how many bytes it holds.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The image type its magic bytes say, if any.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// `data:MIME;base64,...` of `head` and the rest of `reader`, encoded as it is read; `None`
/// when the whole is larger than [`MAX_BYTES`].
fn data_url(
    mime: &str,
    head: &[u8],
    reader: &mut impl Read,
    size: Option<u64>,
) -> std::io::Result<Option<String>> {
    let prefix = format!("data:{mime};base64,");
    let expected = usize::try_from(size.unwrap_or(0).min(MAX_BYTES)).unwrap_or(0);
    let mut url = String::with_capacity(prefix.len() + expected.div_ceil(3) * 4);
    url.push_str(&prefix);
    // A multiple of 3 bytes is encoded whole; the rest waits for the next read.
    let mut buf = vec![0u8; 48 * 1024];
    buf[..head.len()].copy_from_slice(head);
    let (mut filled, mut total) = (head.len(), head.len() as u64);
    loop {
        let n = fill(reader, &mut buf[filled..])?;
        filled += n;
        total += n as u64;
        if total > MAX_BYTES {
            return Ok(None);
        }
        if n == 0 {
            crate::transport::base64::encode(&buf[..filled], &mut url);
            return Ok(Some(url));
        }
        let whole = filled / 3 * 3;
        crate::transport::base64::encode(&buf[..whole], &mut url);
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_file_is_comes_from_its_bytes() {
        let png = part(
            "notes.txt",
            "notes.txt",
            &b"\x89PNG\r\n\x1a\nrest"[..],
            None,
        )
        .unwrap();
        assert_eq!(
            png["image_url"]["url"],
            "data:image/png;base64,iVBORw0KGgpyZXN0"
        );
        for (bytes, mime) in [
            (&b"\xff\xd8\xff\xe0"[..], "image/jpeg"),
            (b"GIF89a..", "image/gif"),
            (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        ] {
            let url = part("x", "x", bytes, None).unwrap()["image_url"]["url"].clone();
            assert!(
                url.as_str()
                    .unwrap()
                    .starts_with(&format!("data:{mime};base64,")),
                "{mime}"
            );
        }
        let pdf = part("a.pdf", "dir/a.pdf", &b"%PDF-1.7"[..], None).unwrap();
        assert_eq!(
            pdf,
            json!({"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0xLjc="}})
        );
        let text = part("notes.txt", "notes.txt", "héllo\n".as_bytes(), None).unwrap();
        assert_eq!(text, json!({"type":"text","text":"notes.txt\nhéllo\n"}));
        let err = part("blob", "dir/blob", &[0u8, 159, 146, 150][..], None).unwrap_err();
        assert_eq!(
            err.0,
            "-a dir/blob: not an image (PNG, JPEG, GIF, WebP), a PDF or UTF-8 text"
        );
    }

    #[test]
    fn encoding_as_read_matches_encoding_whole_at_every_buffer_edge() {
        for len in [0, 1, 2, 3, 49_150, 49_151, 49_152, 49_153, 49_155, 100_000] {
            let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
            bytes.extend((0..len).map(|i| (i * 7 % 251) as u8));
            // One byte per read: the encoder must not depend on how the input is split.
            struct Trickle<'a>(&'a [u8]);
            impl Read for Trickle<'_> {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    let n = self.0.len().min(buf.len()).min(1);
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let mut whole = "data:image/png;base64,".to_owned();
            crate::transport::base64::encode(&bytes, &mut whole);
            for part in [
                part("x", "x", &bytes[..], Some(bytes.len() as u64)).unwrap(),
                part("x", "x", Trickle(&bytes), None).unwrap(),
            ] {
                assert_eq!(part["image_url"]["url"], whole.as_str(), "{len}");
            }
        }
    }

    #[test]
    fn the_limit_holds_whatever_the_file_says_its_size_is() {
        let max = MAX_BYTES as usize;
        let pdf = |len: usize| {
            let mut bytes = b"%PDF-".to_vec();
            bytes.resize(len, b'x');
            bytes
        };
        let text = vec![b'x'; max + 1];
        let limit = "-a -: larger than 20 MiB";
        // From stdin (no size known), as a PDF and as text.
        assert_eq!(
            part("stdin", "-", &pdf(max + 1)[..], None).unwrap_err().0,
            limit
        );
        assert_eq!(part("stdin", "-", &text[..], None).unwrap_err().0, limit);
        assert!(part("stdin", "-", &pdf(max)[..], None).is_ok());
        assert!(part("stdin", "-", &text[..max], None).is_ok());
        // A file whose length says so is refused before reading.
        assert_eq!(
            part("f", "f", &b""[..], Some(MAX_BYTES + 1)).unwrap_err().0,
            "-a f: larger than 20 MiB"
        );
        assert_eq!(
            part("stdin", "-", &b""[..], None).unwrap_err().0,
            "-a -: stdin is empty"
        );
    }

    #[test]
    fn urls_pass_as_urls() {
        assert_eq!(
            load("https://x/cat.png", &mut None).unwrap(),
            json!({"type":"image_url","image_url":{"url":"https://x/cat.png"}})
        );
    }
}
