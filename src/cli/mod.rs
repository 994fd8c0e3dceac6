//! The flags stage: what the user typed (clap's [`args::Args`]), the config file and the
//! environment, resolved once into a [`plan::Plan`]. Nothing below this stage sees a flag.

pub mod args;
pub(crate) mod config;
pub(crate) mod manual;
pub(crate) mod plan;
pub(crate) mod prompt;
