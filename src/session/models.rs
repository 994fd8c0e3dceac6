//! `--list-models`: the models a server lists, from the shapes servers answer `GET /models` with.
//!
//! OpenAI and most servers send `{"object":"list","data":[{"id":...},...]}`; some send a bare
//! array, and Ollama's native listing uses `models` and `name`. Each model is kept as the server
//! sent it, with the id it goes by.

use std::io::{self, Write};

use serde_json::Value;

use crate::session::answer::{Session, Settings};

use crate::error::StreamError;

/// Each model's id and object, in the server's order.
pub(crate) fn from_listing(listing: &Value) -> Result<Vec<(String, Value)>, StreamError> {
    let entries = match listing {
        Value::Array(entries) => entries,
        Value::Object(fields) => match fields.get("data").or_else(|| fields.get("models")) {
            Some(Value::Array(entries)) => entries,
            _ => {
                return Err(StreamError(
                    "the model listing has no \"data\" array".into(),
                ));
            }
        },
        _ => return Err(StreamError("the model listing is not a JSON object".into())),
    };
    entries
        .iter()
        .map(|entry| {
            let id = match entry {
                Value::String(id) => Some(id.as_str()),
                _ => ["id", "name", "model"]
                    .iter()
                    .find_map(|key| entry.get(key)?.as_str()),
            };
            id.map(|id| (id.to_owned(), entry.clone()))
                .ok_or_else(|| StreamError(format!("a listed model has no \"id\": {entry}")))
        })
        .collect()
}

/// `--list-models`: the ids the server lists, sorted, one per line; with `--json` each model's
/// object as the server sent it, in the same order.
pub(crate) fn list(settings: Settings, json: bool) -> anyhow::Result<()> {
    let mut session = Session::new(settings)?;
    let listing = session.get_json()?;
    let mut models = crate::session::models::from_listing(&listing)?;
    models.sort_by(|a, b| a.0.cmp(&b.0));
    if models.is_empty() {
        // Not silence: a script's empty stdout and a person's empty screen both need a reason.
        eprintln!("gptstream: the server listed no models");
    }
    let mut out = io::stdout().lock();
    for (id, model) in &models {
        if json {
            writeln!(out, "{model}")?;
        } else {
            writeln!(out, "{}", crate::error::scrub(id))?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shapes_servers_list_models_in() {
        let ids = |listing: Value| -> Vec<String> {
            from_listing(&listing)
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        assert_eq!(
            ids(json!({"object":"list","data":[{"id":"b","object":"model"},{"id":"a"}]})),
            ["b", "a"]
        );
        assert_eq!(ids(json!([{"id":"x"}, "y"])), ["x", "y"]);
        assert_eq!(ids(json!({"models":[{"name":"llama3:8b"}]})), ["llama3:8b"]);
        assert!(from_listing(&json!({"error":"no"})).is_err());
        assert!(from_listing(&json!({"data":[{"owned_by":"me"}]})).is_err());
        assert!(from_listing(&json!("text")).is_err());
    }
}
