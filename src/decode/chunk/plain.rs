//! The chunk almost every server sends for almost every delta: text (or reasoning, or a
//! refusal) for some choices, perhaps a finish reason, and nothing else we act on.
//!
//! Read straight from the data line into borrowed strings, with no allocation for a stream of
//! one choice, it costs a fraction of a `serde_json::Value` tree, which the profile showed as
//! half of gptstream's CPU time on a long stream (README, "Performance"). Anything this reader
//! does not cover (usage, tool calls, errors, content parts, a field of an unexpected type or
//! shape) makes [`PlainChunk::parse`] return `None`, and the interpreter takes the general
//! `Value` path, which then decides alone; `chunk::tests` drives random streams through both
//! paths to check that they emit the same events.
//!
//! The visitors are written by hand, not derived: a derived struct would also accept a JSON
//! array in place of an object, which the general path does not.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

pub(crate) struct PlainChunk<'a> {
    id: Option<Text<'a>>,
    model: Option<Text<'a>>,
    pub(crate) created: Option<i64>,
    /// The first choice inline and the rest in a vector, so one choice costs no allocation.
    first: Option<PlainChoice<'a>>,
    rest: Vec<PlainChoice<'a>>,
}

pub(crate) struct PlainChoice<'a> {
    pub(crate) index: u64,
    content: Option<Text<'a>>,
    reasoning_content: Option<Text<'a>>,
    reasoning: Option<Text<'a>>,
    refusal: Option<Text<'a>>,
    finish_reason: Option<Text<'a>>,
}

impl<'a> PlainChunk<'a> {
    /// The chunk, if it is a plain one.
    pub(crate) fn parse(data: &'a str) -> Option<Self> {
        serde_json::from_str(data).ok()
    }

    pub(crate) fn id(&self) -> Option<&str> {
        non_empty(&self.id)
    }

    pub(crate) fn model(&self) -> Option<&str> {
        non_empty(&self.model)
    }

    pub(crate) fn choices(&self) -> impl Iterator<Item = &PlainChoice<'a>> {
        self.first.iter().chain(&self.rest)
    }
}

impl PlainChoice<'_> {
    pub(crate) fn content(&self) -> Option<&str> {
        non_empty(&self.content)
    }

    /// `reasoning_content` (DeepSeek, vLLM) or else `reasoning` (OpenRouter, Ollama).
    pub(crate) fn reasoning(&self) -> Option<&str> {
        non_empty(&self.reasoning_content).or_else(|| non_empty(&self.reasoning))
    }

    pub(crate) fn refusal(&self) -> Option<&str> {
        non_empty(&self.refusal)
    }

    pub(crate) fn finish_reason(&self) -> Option<&str> {
        non_empty(&self.finish_reason)
    }
}

fn non_empty<'s>(text: &'s Option<Text<'_>>) -> Option<&'s str> {
    text.as_ref().map(|t| &*t.0).filter(|s| !s.is_empty())
}

/// Why a chunk is not plain; never shown, the general path takes over.
const NOT_PLAIN: &str = "not a plain chunk";

/// A JSON string, borrowed from the data line unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for PlainChunk<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChunkVisitor;
        impl<'de> Visitor<'de> for ChunkVisitor {
            type Value = PlainChunk<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chunk object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut chunk = PlainChunk {
                    id: None,
                    model: None,
                    created: None,
                    first: None,
                    rest: Vec::new(),
                };
                // A repeated key replaces the earlier value, as in a `Value` map.
                while let Some(key) = map.next_key::<Text>()? {
                    match &*key.0 {
                        "id" => chunk.id = map.next_value()?,
                        "model" => chunk.model = map.next_value()?,
                        "created" => chunk.created = map.next_value()?,
                        "object" => {
                            let object: Option<Text> = map.next_value()?;
                            if object.is_some_and(|o| o.0 == "error") {
                                return Err(Error::custom(NOT_PLAIN));
                            }
                        }
                        "choices" => {
                            let choices: Option<Choices> = map.next_value()?;
                            let Choices(first, rest) = choices.unwrap_or_default();
                            (chunk.first, chunk.rest) = (first, rest);
                        }
                        "usage" => {
                            if map.next_value::<Option<IgnoredAny>>()?.is_some() {
                                return Err(Error::custom(NOT_PLAIN));
                            }
                        }
                        "error" | "detail" => return Err(Error::custom(NOT_PLAIN)),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(chunk)
            }
        }
        deserializer.deserialize_map(ChunkVisitor)
    }
}

#[derive(Default)]
struct Choices<'a>(Option<PlainChoice<'a>>, Vec<PlainChoice<'a>>);

impl<'de> Deserialize<'de> for Choices<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoicesVisitor;
        impl<'de> Visitor<'de> for ChoicesVisitor {
            type Value = Choices<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut choices = Choices::default();
                while let Some(choice) = seq.next_element()? {
                    match choices.0 {
                        None => choices.0 = Some(choice),
                        Some(_) => choices.1.push(choice),
                    }
                }
                Ok(choices)
            }
        }
        deserializer.deserialize_seq(ChoicesVisitor)
    }
}

impl<'de> Deserialize<'de> for PlainChoice<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;
        impl<'de> Visitor<'de> for ChoiceVisitor {
            type Value = PlainChoice<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a choice object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut choice = PlainChoice {
                    index: 0,
                    content: None,
                    reasoning_content: None,
                    reasoning: None,
                    refusal: None,
                    finish_reason: None,
                };
                while let Some(key) = map.next_key::<Text>()? {
                    match &*key.0 {
                        "index" => choice.index = map.next_value::<Option<u64>>()?.unwrap_or(0),
                        "finish_reason" => choice.finish_reason = map.next_value()?,
                        "delta" => {
                            let delta: Option<Delta> = map.next_value()?;
                            let delta = delta.unwrap_or_default();
                            choice.content = delta.content;
                            choice.reasoning_content = delta.reasoning_content;
                            choice.reasoning = delta.reasoning;
                            choice.refusal = delta.refusal;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(choice)
            }
        }
        deserializer.deserialize_map(ChoiceVisitor)
    }
}

#[derive(Default)]
struct Delta<'a> {
    content: Option<Text<'a>>,
    reasoning_content: Option<Text<'a>>,
    reasoning: Option<Text<'a>>,
    refusal: Option<Text<'a>>,
}

impl<'de> Deserialize<'de> for Delta<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DeltaVisitor;
        impl<'de> Visitor<'de> for DeltaVisitor {
            type Value = Delta<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a delta object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut delta = Delta::default();
                while let Some(key) = map.next_key::<Text>()? {
                    match &*key.0 {
                        "content" => delta.content = map.next_value()?,
                        "reasoning_content" => delta.reasoning_content = map.next_value()?,
                        "reasoning" => delta.reasoning = map.next_value()?,
                        "refusal" => delta.refusal = map.next_value()?,
                        "tool_calls" => {
                            if map.next_value::<Option<IgnoredAny>>()?.is_some() {
                                return Err(Error::custom(NOT_PLAIN));
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(delta)
            }
        }
        deserializer.deserialize_map(DeltaVisitor)
    }
}
