//! `--schema`: the JSON Schema an answer must match, from a file, inline JSON, or a concise list
//! of fields for the shell; and the check of the answer against it once the stream has ended.
//!
//! The concise form, `'name, age int, score float, tags [str], bio: one sentence about them'`,
//! becomes a schema that OpenAI's strict mode accepts: an object, every property required, no
//! others. The check covers what that form and OpenAI's strict subset express: `type`,
//! `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`, `anyOf`, and
//! `$ref` to `#/$defs/...` (or `#/definitions/...`); other keywords are not checked.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{SchemaError, UsageError, scrub};
use crate::event::Turn;

/// Reads `--schema SPEC`: a path to a JSON Schema file, an inline JSON object, or the concise
/// form. A file or inline schema that is not JSON, or a concise type we do not know, is a usage
/// error naming the position.
pub(crate) fn parse(spec: &str) -> Result<Value, UsageError> {
    let trimmed = spec.trim();
    if trimmed.starts_with('{') {
        return json_schema(trimmed, "--schema");
    }
    let path = Path::new(trimmed);
    if !trimmed.is_empty() && path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|err| UsageError(format!("cannot read --schema {trimmed}: {err}")))?;
        return json_schema(&text, &format!("--schema {trimmed}"));
    }
    concise(spec)
}

fn json_schema(text: &str, source: &str) -> Result<Value, UsageError> {
    let schema: Value = serde_json::from_str(text).map_err(|err| {
        UsageError(format!(
            "{source} is not valid JSON (line {}, column {}): {err}",
            err.line(),
            err.column()
        ))
    })?;
    if !schema.is_object() {
        return Err(UsageError(format!(
            "{source} must be a JSON object (a schema)"
        )));
    }
    if let Some(reference) = unresolved_ref(&schema, &schema) {
        // The schema's own fault, not the answer's: found before any request.
        return Err(UsageError(format!(
            "{source}: $ref {reference} is not found in the schema (only #/... references are followed)"
        )));
    }
    Ok(schema)
}

/// The first `$ref` of `schema` (and the schemas inside it) that does not point into `root`.
/// Only places that hold schemas are searched: a `const`, an `enum` or an example may hold an
/// object with a `$ref` key that is data, not a reference.
fn unresolved_ref<'a>(root: &Value, schema: &'a Value) -> Option<&'a str> {
    let Value::Object(fields) = schema else {
        return None;
    };
    if let Some(Value::String(reference)) = fields.get("$ref")
        && reference
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .is_none()
    {
        return Some(reference);
    }
    fields
        .iter()
        .find_map(|(keyword, value)| match (keyword.as_str(), value) {
            // Maps of names to schemas.
            (
                "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas"
                | "dependencies",
                Value::Object(named),
            ) => named
                .values()
                .find_map(|schema| unresolved_ref(root, schema)),
            // Lists of schemas.
            ("anyOf" | "allOf" | "oneOf" | "prefixItems" | "items", Value::Array(schemas)) => {
                schemas
                    .iter()
                    .find_map(|schema| unresolved_ref(root, schema))
            }
            // One schema.
            (
                "items"
                | "additionalProperties"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contains"
                | "propertyNames"
                | "additionalItems"
                | "unevaluatedProperties"
                | "unevaluatedItems",
                schema,
            ) => unresolved_ref(root, schema),
            _ => None,
        })
}

/// Equality as JSON Schema has it for `enum` and `const`: numbers by their value (`1` is
/// `1.0`), everything else as written.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), ..) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// `name, age int, tags [str], bio: a description` → an object schema for strict mode.
fn concise(spec: &str) -> Result<Value, UsageError> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    // One field per line when there are lines: then a description may hold commas.
    let separators: &[char] = if spec.trim().contains('\n') {
        &['\n']
    } else {
        &[',', '\n']
    };
    let mut offset = 0;
    for field in spec.split(separators) {
        // Positions are counted in characters, from 1, as a person counts them.
        let at = offset;
        offset += field.chars().count() + 1;
        if field.trim().is_empty() {
            continue;
        }
        let (head, description) = match field.split_once(':') {
            Some((head, description)) => (head, Some(description.trim())),
            None => (field, None),
        };
        let mut words = head.split_whitespace();
        let Some(name) = words.next() else {
            return Err(UsageError(format!(
                "--schema: a field without a name at character {}",
                at + 1
            )));
        };
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return Err(UsageError(format!(
                "--schema: field name {name:?} at character {} should be letters, digits, _ or - \
                 (a path to a schema file must exist)",
                at + 1
            )));
        }
        let type_words: Vec<&str> = words.collect();
        let kind = type_words.join("");
        let mut property =
            concise_type(if kind.is_empty() { "str" } else { &kind }).ok_or_else(|| {
                // Where the type starts in the field: the first type word's own place.
                let start = type_words.first().map_or(0, |word| {
                    let bytes = word.as_ptr() as usize - field.as_ptr() as usize;
                    field[..bytes].chars().count()
                });
                UsageError(format!(
                    "--schema: unknown type {kind:?} for field {name:?} at character {} \
                     (types: str, int, float, bool, [TYPE])",
                    at + start + 1
                ))
            })?;
        if let Some(description) = description.filter(|d| !d.is_empty()) {
            property["description"] = description.into();
        }
        if properties.insert(name.to_owned(), property).is_some() {
            return Err(UsageError(format!(
                "--schema: field {name:?} is given twice"
            )));
        }
        required.push(Value::from(name));
    }
    if properties.is_empty() {
        return Err(UsageError(
            "--schema: no fields; expected e.g. 'name, age int, tags [str]'".into(),
        ));
    }
    Ok(json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    }))
}

fn concise_type(kind: &str) -> Option<Value> {
    if let Some(inner) = kind.strip_prefix('[').and_then(|k| k.strip_suffix(']')) {
        return Some(json!({"type": "array", "items": concise_type(inner)?}));
    }
    let name = match kind {
        "str" | "string" => "string",
        "int" | "integer" => "integer",
        "float" | "number" => "number",
        "bool" | "boolean" => "boolean",
        _ => return None,
    };
    Some(json!({"type": name}))
}

/// The verdict on an answer's last turn: a refusal, or the first mismatch.
pub(crate) fn verdict(schema: &Value, turn: Option<&Turn>) -> Result<(), String> {
    let Some(turn) = turn else {
        return Err("there is no answer".into());
    };
    if !turn.refusal.is_empty() {
        // Its words were already shown as they streamed (stderr, or `refusal` events).
        return Err("the model refused".into());
    }
    check(schema, &turn.content)
}

/// The error of a verdict that failed: exit 7.
pub(crate) fn mismatch(why: &str) -> anyhow::Error {
    SchemaError(format!("the answer does not match --schema: {why}")).into()
}

/// The request field that asks for the schema: `response_format` (chat) or `text.format`
/// (the Responses API), strict.
pub(crate) fn request_field(schema: &Value, name: &str, responses: bool) -> (&'static str, Value) {
    if responses {
        (
            "text",
            json!({"format": {"type": "json_schema", "name": name, "schema": schema, "strict": true}}),
        )
    } else {
        (
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": true}}),
        )
    }
}

/// Checks the whole answer against the schema: the first mismatch, as `JSON pointer: what was
/// expected`, or `Ok`.
pub(crate) fn check(schema: &Value, answer: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(answer.trim()).map_err(|err| {
        format!(
            "the answer is not valid JSON (line {}, column {}): {err}",
            err.line(),
            err.column()
        )
    })?;
    Checker {
        root: schema,
        depth: 0,
        steps: 0,
    }
    .check(schema, &value, &mut String::new())
    // Keys and values come from the model: one safe line, not a flood.
    .map_err(|why| scrub(&why))
}

/// Deeper than this, a schema (or a `$ref` loop) is not followed, and the answer is not valid.
const MAX_DEPTH: usize = 64;
/// A schema that branches (`anyOf` of `$ref`s) could take forever: this many steps at most.
const MAX_STEPS: usize = 100_000;

struct Checker<'a> {
    root: &'a Value,
    depth: usize,
    steps: usize,
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    let actual = type_of(value);
    actual == name
        || (name == "number" && actual == "integer")
        // 3.0 is an integer to JSON Schema.
        || (name == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
}

/// `/a/0/b`, with `~` and `/` escaped as RFC 6901 says.
fn pointer_push(pointer: &mut String, token: &str) {
    pointer.push('/');
    pointer.push_str(&token.replace('~', "~0").replace('/', "~1"));
}

fn at(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

impl Checker<'_> {
    fn check(&mut self, schema: &Value, value: &Value, pointer: &mut String) -> Result<(), String> {
        if self.depth > MAX_DEPTH {
            return Err(format!("{}: too deep to check", at(pointer)));
        }
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!(
                "{}: the schema is too costly to check here",
                at(pointer)
            ));
        }
        self.depth += 1;
        let result = self.check_inner(schema, value, pointer);
        self.depth -= 1;
        result
    }

    fn check_inner(
        &mut self,
        schema: &Value,
        value: &Value,
        pointer: &mut String,
    ) -> Result<(), String> {
        let Some(schema) = schema.as_object() else {
            // `true` accepts anything; `false` nothing.
            return match schema {
                Value::Bool(false) => Err(format!("{}: nothing is allowed here", at(pointer))),
                _ => Ok(()),
            };
        };
        if let Some(Value::String(reference)) = schema.get("$ref") {
            let target = reference
                .strip_prefix('#')
                .and_then(|p| self.root.pointer(p))
                .ok_or_else(|| {
                    format!(
                        "{}: the schema's $ref {reference} is not found",
                        at(pointer)
                    )
                })?;
            return self.check(target, value, pointer);
        }
        match schema.get("type") {
            Some(Value::String(name)) if !is_type(value, name) => {
                return Err(format!(
                    "{}: expected {name}, got {}",
                    at(pointer),
                    type_of(value)
                ));
            }
            Some(Value::Array(names)) => {
                let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
                if !names.iter().any(|name| is_type(value, name)) {
                    return Err(format!(
                        "{}: expected {}, got {}",
                        at(pointer),
                        names.join(" or "),
                        type_of(value)
                    ));
                }
            }
            _ => {}
        }
        if let Some(Value::Array(allowed)) = schema.get("enum")
            && !allowed.iter().any(|allowed| same(allowed, value))
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!(
                "{}: expected one of {}, got {value}",
                at(pointer),
                list.join(", ")
            ));
        }
        if let Some(constant) = schema.get("const")
            && !same(constant, value)
        {
            return Err(format!("{}: expected {constant}, got {value}", at(pointer)));
        }
        if let Some(Value::Array(options)) = schema.get("anyOf") {
            let mut first = None;
            let len = pointer.len();
            for option in options {
                let checked = self.check(option, value, pointer);
                // An option that failed inside the value left its place behind.
                pointer.truncate(len);
                match checked {
                    Ok(()) => {
                        first = None;
                        break;
                    }
                    // Out of depth or budget is no mismatch of this option: it ends the check.
                    Err(err) if self.depth > MAX_DEPTH || self.steps > MAX_STEPS => {
                        return Err(err);
                    }
                    Err(err) => {
                        first.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = first {
                return Err(format!(
                    "{}: matches none of anyOf (first: {err})",
                    at(pointer)
                ));
            }
        }
        if let Value::Object(object) = value {
            self.check_object(schema, object, pointer)?;
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer_push(pointer, &i.to_string());
                self.check(item_schema, item, pointer)?;
                pointer.truncate(len);
            }
        }
        Ok(())
    }

    fn check_object(
        &mut self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        pointer: &mut String,
    ) -> Result<(), String> {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(format!(
                        "{}: missing required property {name:?}",
                        at(pointer)
                    ));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, property) in object {
            let len = pointer.len();
            pointer_push(pointer, name);
            match properties.and_then(|p| p.get(name)) {
                Some(property_schema) => self.check(property_schema, property, pointer)?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{pointer}: no such property is allowed"));
                    }
                    Some(extra @ Value::Object(_)) => self.check(extra, property, pointer)?,
                    _ => {}
                },
            }
            pointer.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concise_form_makes_a_strict_schema() {
        let schema = parse("name, age int, score float, ok bool, tags [str], grid [[int]], bio: one sentence about them").unwrap();
        assert_eq!(
            schema,
            json!({"type":"object","additionalProperties":false,
                "required":["name","age","score","ok","tags","grid","bio"],
                "properties":{
                    "name":{"type":"string"},"age":{"type":"integer"},"score":{"type":"number"},
                    "ok":{"type":"boolean"},"tags":{"type":"array","items":{"type":"string"}},
                    "grid":{"type":"array","items":{"type":"array","items":{"type":"integer"}}},
                    "bio":{"type":"string","description":"one sentence about them"}}})
        );
        let lines = parse("name\nemail str: where to write\n").unwrap();
        assert_eq!(lines["required"], json!(["name", "email"]));
        assert_eq!(
            lines["properties"]["email"]["description"],
            "where to write"
        );
    }

    #[test]
    fn bad_specs_name_the_place() {
        assert_eq!(
            parse("name, age integr").unwrap_err().0,
            "--schema: unknown type \"integr\" for field \"age\" at character 11 (types: str, int, float, bool, [TYPE])"
        );
        assert!(parse("a, a").unwrap_err().0.contains("given twice"));
        assert!(parse(" , ").unwrap_err().0.contains("no fields"));
        let err = parse("{\"type\": }").unwrap_err().0;
        assert!(
            err.starts_with("--schema is not valid JSON (line 1, column 10)"),
            "{err}"
        );
        assert!(parse("{}").is_ok());
    }

    #[test]
    fn a_schema_file_is_read() {
        let path =
            std::env::temp_dir().join(format!("gptstream-schema-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"type":"object","properties":{"x":{"type":"integer"}}}"#,
        )
        .unwrap();
        let schema = parse(path.to_str().unwrap()).unwrap();
        assert_eq!(schema["properties"]["x"]["type"], "integer");
        std::fs::write(&path, "{oops").unwrap();
        let err = parse(path.to_str().unwrap()).unwrap_err().0;
        assert!(
            err.contains("is not valid JSON (line 1, column 2)"),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn answers_are_checked_with_a_pointer_to_the_first_mismatch() {
        let schema = parse("name, age int, tags [str]").unwrap();
        assert_eq!(
            check(&schema, r#"{"name":"Ada","age":36,"tags":["math"]}"#),
            Ok(())
        );
        assert_eq!(
            check(&schema, r#"{"name":"Ada","age":36.0,"tags":[]}"#),
            Ok(())
        );
        let cases = [
            (
                r#"{"name":"Ada","age":"36","tags":[]}"#,
                "/age: expected integer, got string",
            ),
            (
                r#"{"name":"Ada","tags":[]}"#,
                "/: missing required property \"age\"",
            ),
            (
                r#"{"name":"Ada","age":1,"tags":[],"x":1}"#,
                "/x: no such property is allowed",
            ),
            (
                r#"{"name":"Ada","age":1,"tags":["a",2]}"#,
                "/tags/1: expected string, got integer",
            ),
            ("[1]", "/: expected object, got array"),
        ];
        for (answer, error) in cases {
            assert_eq!(check(&schema, answer), Err(error.to_owned()), "{answer}");
        }
        let not_json = check(&schema, "Sure! Here is the JSON").unwrap_err();
        assert!(
            not_json.starts_with("the answer is not valid JSON (line 1, column 1)"),
            "{not_json}"
        );
    }

    #[test]
    fn enums_nested_objects_any_of_and_refs() {
        let schema = json!({"type":"object","$defs":{"point":{"type":"object","properties":{"x":{"type":"number"}},"required":["x"]}},
            "properties":{
                "color":{"enum":["red","green"]},
                "at":{"$ref":"#/$defs/point"},
                "id":{"anyOf":[{"type":"string"},{"type":"integer"}]},
                "maybe":{"type":["string","null"]},
                "a/b":{"type":"boolean"}}});
        assert_eq!(
            check(
                &schema,
                r#"{"color":"red","at":{"x":1.5},"id":3,"maybe":null}"#
            ),
            Ok(())
        );
        let cases = [
            (
                r#"{"color":"blue"}"#,
                "/color: expected one of \"red\", \"green\", got \"blue\"",
            ),
            (r#"{"at":{}}"#, "/at: missing required property \"x\""),
            (
                r#"{"id":true}"#,
                "/id: matches none of anyOf (first: /id: expected string, got boolean)",
            ),
            (
                r#"{"maybe":1}"#,
                "/maybe: expected string or null, got integer",
            ),
            (r#"{"a/b":1}"#, "/a~1b: expected boolean, got integer"),
        ];
        for (answer, error) in cases {
            assert_eq!(check(&schema, answer), Err(error.to_owned()), "{answer}");
        }
    }

    #[test]
    fn numbers_in_enum_and_const_compare_by_value() {
        let schema = json!({"type":"object","properties":{
            "n":{"enum":[1, 2.5, [1], {"k": 3}]},
            "c":{"const":{"a":[0]}}}});
        for answer in [
            r#"{"n":1.0,"c":{"a":[0.0]}}"#,
            r#"{"n":2.5}"#,
            r#"{"n":[1.0]}"#,
            r#"{"n":{"k":3.0}}"#,
        ] {
            assert_eq!(check(&schema, answer), Ok(()), "{answer}");
        }
        assert!(check(&schema, r#"{"n":1.5}"#).is_err());
        assert!(check(&schema, r#"{"c":{"a":[0],"b":1}}"#).is_err());
        assert!(check(&schema, r#"{"n":"1"}"#).is_err());
    }

    #[test]
    fn a_ref_that_points_nowhere_is_the_schema_s_fault_exit_2() {
        let err = parse(r##"{"properties":{"a":{"$ref":"#/$defs/missing"}}}"##).unwrap_err();
        assert_eq!(
            err.0,
            "--schema: $ref #/$defs/missing is not found in the schema (only #/... references are followed)"
        );
        assert!(parse(r##"{"properties":{"a":{"$ref":"https://x/s.json"}}}"##).is_err());
        // A property named $ref is a name, not a reference.
        assert!(
            parse(r##"{"$defs":{"p":{}},"properties":{"$ref":{"$ref":"#/$defs/p"}}}"##).is_ok()
        );
    }

    #[test]
    fn a_ref_loop_or_a_branching_schema_is_bounded_and_not_valid() {
        let schema = json!({"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"});
        assert_eq!(check(&schema, "1"), Err("/: too deep to check".into()));
        let branching = json!({"anyOf":[{"$ref":"#"},{"$ref":"#"}],"required":["y"]});
        let err = check(&branching, "{}").unwrap_err();
        assert!(
            err.contains("too costly to check") || err.contains("too deep"),
            "{err}"
        );
    }

    #[test]
    fn review_of_the_concise_parser() {
        // A type word that is not ASCII: a usage error at the right place, not a panic.
        assert_eq!(
            parse("name, age ünt").unwrap_err().0,
            "--schema: unknown type \"ünt\" for field \"age\" at character 11 (types: str, int, float, bool, [TYPE])"
        );
        // The place of the type, not of a letter of the name; counted in characters.
        assert!(parse("tint tnt").unwrap_err().0.contains("at character 6"));
        assert!(
            parse("héllo, age integr")
                .unwrap_err()
                .0
                .contains("at character 12")
        );
        // One field per line: a description may hold commas.
        let lines = parse("name\nbio: one sentence, about them\n").unwrap();
        assert_eq!(
            lines["properties"]["bio"]["description"],
            "one sentence, about them"
        );
        // A mistyped file name is not a field.
        assert!(
            parse("schema.json")
                .unwrap_err()
                .0
                .contains("should be letters, digits")
        );
        assert!(
            parse("tags[str]")
                .unwrap_err()
                .0
                .contains("should be letters, digits")
        );
    }

    #[test]
    fn review_of_the_checker() {
        let schema = json!({"properties":{"v":{"anyOf":[{"properties":{"a":{"type":"string"}}},{"type":"object"}],"required":["b"]}}});
        assert_eq!(
            check(&schema, r#"{"v":{"a":1}}"#),
            Err("/v: missing required property \"b\"".into())
        );
        let strict = parse("name").unwrap();
        let err = check(&strict, "{\"name\":\"x\",\"bad\\nkey\\u001b[31m\":1}").unwrap_err();
        assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err:?}");
    }
}
