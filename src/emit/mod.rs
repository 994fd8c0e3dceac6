//! The sinks: where events end up. `text` writes the answer for people and pipes, `json` writes
//! one JSON object per event for scripts. Both write each event as it comes; deltas that arrived
//! in the same network read share one `write` (see [`crate::event::Sink::flush`]).

pub(crate) mod json;
pub(crate) mod redact;
pub(crate) mod terminal;
pub(crate) mod text;

use std::io::Write;

/// Standard output without Rust's line buffer: one `write` per flush, however many newlines it
/// holds (a `LineWriter` splits a delta at its last newline into two syscalls).
/// On Unix this is a duplicate of file descriptor 1; elsewhere the standard handle.
pub(crate) fn stdout() -> Box<dyn Write + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() {
            return Box::new(std::fs::File::from(fd));
        }
    }
    Box::new(std::io::stdout())
}

/// Standard error as a file of its own (a duplicate of file descriptor 2), for a last word that
/// must not wait for std's stderr lock, which a writer blocked on a full pipe may hold.
pub(crate) fn stderr_unlocked() -> std::io::Result<Box<dyn Write + Send>> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = std::io::stderr().as_fd().try_clone_to_owned()?;
        Ok(Box::new(std::fs::File::from(fd)))
    }
    #[cfg(not(unix))]
    Ok(Box::new(std::io::stderr()))
}
