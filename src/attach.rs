//! `-a, --attach`: files (and image URLs) that go with the prompt, as parts of the user message.
//!
//! What a file is comes from its first bytes, not its name: PNG, JPEG, GIF and WebP images
//! become image parts, PDFs file parts, UTF-8 text a text part (its base name on a line of its
//! own, then the contents). Anything else, a file too large, unreadable or a directory is a
//! usage error naming the path, before any request. The parts are in Chat Completions' shape;
//! the Responses API's are made from them on sending (see [`crate::request`]).

use std::io::Read;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::UsageError;

/// The largest attachment: providers refuse far smaller images, and a request body is held in
/// memory.
pub(crate) const MAX_BYTES: u64 = 20 * 1024 * 1024;

/// One attachment as a content part of the user message; `-` takes stdin's bytes (once).
pub(crate) fn load(spec: &str, stdin: &mut Option<Vec<u8>>) -> Result<Value, UsageError> {
    if spec.starts_with("http://") || spec.starts_with("https://") {
        // Passed as a URL, for the server to fetch: never downloaded here.
        return Ok(json!({"type": "image_url", "image_url": {"url": spec}}));
    }
    let (name, bytes) = if spec == "-" {
        let bytes = stdin
            .take()
            .ok_or_else(|| UsageError("-a -: stdin is a terminal, or already attached".into()))?;
        if bytes.is_empty() {
            return Err(UsageError("-a -: stdin is empty".into()));
        }
        ("stdin".to_owned(), bytes)
    } else {
        (base_name(spec), read(spec)?)
    };
    part(&name, spec, bytes)
}

fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
}

fn read(path: &str) -> Result<Vec<u8>, UsageError> {
    let fail = |why: String| UsageError(format!("-a {path}: {why}"));
    let file = std::fs::File::open(path).map_err(|err| fail(err.to_string()))?;
    let metadata = file.metadata().map_err(|err| fail(err.to_string()))?;
    if metadata.is_dir() {
        return Err(fail("is a directory".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| fail(err.to_string()))?;
    Ok(bytes)
}

/// The content part for these bytes, by what they are.
pub(crate) fn part(name: &str, shown: &str, bytes: Vec<u8>) -> Result<Value, UsageError> {
    if bytes.len() as u64 > MAX_BYTES {
        return Err(UsageError(format!(
            "-a {shown}: larger than {} MiB",
            MAX_BYTES >> 20
        )));
    }
    if let Some(mime) = image_type(&bytes) {
        let url = data_url(mime, &bytes);
        return Ok(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    if bytes.starts_with(b"%PDF-") {
        let data = data_url("application/pdf", &bytes);
        return Ok(json!({"type": "file", "file": {"filename": name, "file_data": data}}));
    }
    // Text has no NUL bytes, whatever UTF-8 allows.
    match String::from_utf8(bytes)
        .ok()
        .filter(|text| !text.contains('\0'))
    {
        Some(text) => Ok(json!({"type": "text", "text": format!("{name}\n{text}")})),
        None => Err(UsageError(format!(
            "-a {shown}: not an image (PNG, JPEG, GIF, WebP), a PDF or UTF-8 text"
        ))),
    }
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

/// `data:MIME;base64,...`, encoded straight from the bytes.
fn data_url(mime: &str, bytes: &[u8]) -> String {
    let prefix = format!("data:{mime};base64,");
    let mut url = String::with_capacity(prefix.len() + bytes.len().div_ceil(3) * 4);
    url.push_str(&prefix);
    base64(bytes, &mut url);
    url
}

/// `data:TYPE;base64,...`, as attachments are sent.
fn is_base64_data_url(text: &str) -> bool {
    text.strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .is_some_and(|(head, _)| head.ends_with(";base64") && !head.contains(' '))
}

/// Standard base64 with padding (RFC 4648), appended to `out`.
fn base64(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
}

/// A copy of a request body for showing (`--dry-run`): every base64 `data:` URL is cut to its
/// type and the size of what it carries, `data:image/png;base64,…(123456 bytes)`, and an
/// attached text longer than a screen to its start and size. Other text is shown as it is.
pub(crate) fn shortened(value: &Value) -> Value {
    const TEXT_SHOWN: usize = 2000;
    match value {
        Value::Object(part)
            if matches!(
                part.get("type").and_then(Value::as_str),
                Some("text" | "input_text")
            ) && part
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.len() > TEXT_SHOWN) =>
        {
            let mut part = part.clone();
            if let Some(Value::String(text)) = part.get_mut("text") {
                let mut cut = TEXT_SHOWN;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let size = text.len();
                text.truncate(cut);
                text.push_str(&format!("…({size} bytes)"));
            }
            Value::Object(part)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(bytes: &[u8]) -> String {
        let mut out = String::new();
        base64(bytes, &mut out);
        out
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encoded(plain.as_bytes()), coded, "{plain}");
        }
        assert_eq!(encoded(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn what_a_file_is_comes_from_its_bytes() {
        let png = part("notes.txt", "notes.txt", b"\x89PNG\r\n\x1a\nrest".to_vec()).unwrap();
        assert_eq!(
            png["image_url"]["url"],
            "data:image/png;base64,iVBORw0KGgpyZXN0"
        );
        for (bytes, mime) in [
            (&b"\xff\xd8\xff\xe0"[..], "image/jpeg"),
            (b"GIF89a..", "image/gif"),
            (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        ] {
            let url = part("x", "x", bytes.to_vec()).unwrap()["image_url"]["url"].clone();
            assert!(
                url.as_str()
                    .unwrap()
                    .starts_with(&format!("data:{mime};base64,")),
                "{mime}"
            );
        }
        let pdf = part("a.pdf", "dir/a.pdf", b"%PDF-1.7".to_vec()).unwrap();
        assert_eq!(
            pdf,
            json!({"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0xLjc="}})
        );
        let text = part("notes.txt", "notes.txt", "héllo\n".as_bytes().to_vec()).unwrap();
        assert_eq!(text, json!({"type":"text","text":"notes.txt\nhéllo\n"}));
        let err = part("blob", "dir/blob", vec![0, 159, 146, 150]).unwrap_err();
        assert_eq!(
            err.0,
            "-a dir/blob: not an image (PNG, JPEG, GIF, WebP), a PDF or UTF-8 text"
        );
    }

    #[test]
    fn urls_pass_as_urls_and_payloads_show_short() {
        assert_eq!(
            load("https://x/cat.png", &mut None).unwrap(),
            json!({"type":"image_url","image_url":{"url":"https://x/cat.png"}})
        );
        let long = format!("data:image/png;base64,{}", "A".repeat(200));
        assert_eq!(
            shortened(&json!({"a":[{"url": long}], "b": "data:short"})),
            json!({"a":[{"url":"data:image/png;base64,…(150 bytes)"}], "b": "data:short"})
        );
    }
}
