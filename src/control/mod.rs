//! The control path around a stream: the worker that runs an answer, the signals that stop it,
//! and the processes that must not outlive it.

pub(crate) mod children;
pub(crate) mod reaper;
pub(crate) mod signals;
pub(crate) mod supervisor;
