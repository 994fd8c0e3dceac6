//! The user's tools: their definitions and the runner of `--tool-exec` commands.

pub(crate) mod exec;
pub(crate) mod toolbox;
