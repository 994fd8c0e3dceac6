//! The sinks: where events end up. `text` writes the answer for people and pipes, `json` writes
//! one JSON object per event for scripts. Both write and flush each event as it comes; neither
//! holds anything back.

pub mod json;
pub mod text;
