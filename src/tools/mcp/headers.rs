//! The 2026-07-28 revision's header rules for Streamable HTTP: which tool arguments a tool's
//! `inputSchema` asks to be mirrored into `Mcp-Param-*` headers (`x-mcp-header`, and when such
//! an annotation is unlawful), and how a value is written into a header.

use serde_json::Value;

use crate::error::scrub;

/// A tool's `x-mcp-header` annotations: each header name, and the path of `properties` keys to
/// the argument it mirrors.
pub(crate) type Annotations = Vec<(String, Vec<String>)>;

/// The `x-mcp-header` annotations of a tool's `inputSchema` (2026-07-28): each header name and
/// the path of `properties` keys to its argument. An annotation the revision forbids (empty, not
/// a header token, twice, on a `number`, an array or an object, or where a chain of
/// `properties` alone does not lead) makes the tool one to leave out: the error says why.
pub(crate) fn header_annotations(schema: &Value) -> Result<Annotations, String> {
    /// Where a schema sits: the root, a property reached through `properties` alone, or
    /// anywhere else (under `items`, `oneOf`, `$defs`...).
    enum At<'p> {
        Root,
        Property(&'p [String]),
        Elsewhere,
    }
    fn walk(schema: &Value, at: &At<'_>, found: &mut Annotations) -> Result<(), String> {
        match schema {
            Value::Object(fields) => {
                if let Some(header) = fields.get("x-mcp-header") {
                    let At::Property(path) = at else {
                        return Err("an x-mcp-header off the chain of properties".into());
                    };
                    let name = header.as_str().unwrap_or("");
                    let token =
                        |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                    if name.is_empty() || !name.bytes().all(token) {
                        return Err(format!(
                            "x-mcp-header {:?} is not a header name",
                            scrub(name)
                        ));
                    }
                    let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
                    if !["string", "integer", "boolean"].contains(&kind) {
                        return Err(format!(
                            "x-mcp-header {name} is on a parameter that is not a string, integer or boolean"
                        ));
                    }
                    if found
                        .iter()
                        .any(|(other, _)| other.eq_ignore_ascii_case(name))
                    {
                        return Err(format!("x-mcp-header {name} is given twice"));
                    }
                    found.push((name.to_owned(), path.to_vec()));
                }
                for (key, value) in fields {
                    match (key.as_str(), at, value) {
                        ("x-mcp-header", _, _) => {}
                        ("properties", At::Root | At::Property(_), Value::Object(properties)) => {
                            let base: &[String] = match at {
                                At::Property(path) => path,
                                _ => &[],
                            };
                            for (name, property) in properties {
                                let mut path = base.to_vec();
                                path.push(name.clone());
                                walk(property, &At::Property(&path), found)?;
                            }
                        }
                        _ => walk(value, &At::Elsewhere, found)?,
                    }
                }
                Ok(())
            }
            Value::Array(items) => items
                .iter()
                .try_for_each(|item| walk(item, &At::Elsewhere, found)),
            _ => Ok(()),
        }
    }
    let mut found = Vec::new();
    walk(schema, &At::Root, &mut found)?;
    Ok(found)
}

/// A value as a header may carry it: as it is when it is plain visible ASCII (spaces inside),
/// else `=?base64?...?=` (2026-07-28), as also a plain value that looks like that.
pub(crate) fn header_value(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        && text.trim() == text
        && !(text.starts_with("=?base64?") && text.ends_with("?="));
    if plain {
        return text.to_owned();
    }
    let mut coded = "=?base64?".to_owned();
    crate::transport::base64::encode(text.as_bytes(), &mut coded);
    coded.push_str("?=");
    coded
}

/// An `x-mcp-header` argument as header text: a string as it is, an integer in JavaScript's
/// safe range in decimal, a boolean as `true`/`false`; anything else has no header.
pub(crate) fn param_text(value: &Value) -> Option<String> {
    const SAFE: i64 = (1 << 53) - 1;
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => n
            .as_i64()
            .filter(|n| (-SAFE..=SAFE).contains(n))
            .map(|n| n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn header_values_as_the_2026_07_28_revision_encodes_them() {
        // The revision's own examples.
        for (value, header) in [
            ("us-west1", "us-west1"),
            ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),
            (" padded ", "=?base64?IHBhZGRlZCA=?="),
            ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
            ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
        ] {
            assert_eq!(header_value(value), header, "{value:?}");
        }
        assert_eq!(param_text(&json!(-7)).as_deref(), Some("-7"));
        assert_eq!(param_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(
            param_text(&json!(9007199254740992_i64)),
            None,
            "past 2^53-1"
        );
        assert_eq!(param_text(&json!(1.5)), None);
    }

    #[test]
    fn annotations_on_the_chain_of_properties_only() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "where": {"type": "object", "properties": {
                "zone": {"type": "integer", "x-mcp-header": "Zone"}}},
            "plain": {"type": "string"}}});
        assert_eq!(
            header_annotations(&schema),
            Ok(vec![
                ("Region".to_owned(), vec!["region".to_owned()]),
                (
                    "Zone".to_owned(),
                    vec!["where".to_owned(), "zone".to_owned()]
                ),
            ])
        );
        let bad = |property: Value| {
            header_annotations(&json!({"type": "object", "properties": {"p": property}}))
                .unwrap_err()
        };
        assert_eq!(
            bad(json!({"type": "number", "x-mcp-header": "N"})),
            "x-mcp-header N is on a parameter that is not a string, integer or boolean"
        );
        assert_eq!(
            bad(json!({"type": "string", "x-mcp-header": "Bad Name"})),
            "x-mcp-header \"Bad Name\" is not a header name"
        );
        assert_eq!(
            bad(json!({"anyOf": [{"type": "string", "x-mcp-header": "A"}]})),
            "an x-mcp-header off the chain of properties"
        );
        assert_eq!(
            header_annotations(&json!({"properties": {
                "a": {"type": "string", "x-mcp-header": "Same"},
                "b": {"type": "string", "x-mcp-header": "same"}}})),
            Err("x-mcp-header same is given twice".to_owned())
        );
        assert_eq!(
            header_annotations(&json!({"type": "object", "x-mcp-header": "Root"})),
            Err("an x-mcp-header off the chain of properties".to_owned())
        );
    }
}
