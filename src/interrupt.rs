//! Ctrl-C and SIGTERM: what to do when the user (or a supervisor) stops us mid-stream.
//!
//! The stream runs on its own thread; a signal is only reported here, on a thread of its own,
//! and the main thread decides: end a single run with an `interrupted` summary and exit code
//! 130/143, or, in chat, cancel the answer in flight and return to the prompt. The stream thread
//! is never interrupted in the middle of a write: it shares the sink through a lock (see
//! [`crate::shared`]).

use std::io;

/// A signal that stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C at a terminal.
    Interrupt,
    /// SIGTERM: `kill`, a supervisor, a CI job's cancel button.
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, as shells report a process killed by it.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => crate::error::exit::INTERRUPTED,
            Signal::Terminate => crate::error::exit::TERMINATED,
        }
    }
}

/// Calls `handler` on a thread of its own for every SIGINT and SIGTERM from now on, instead of
/// the default of dying on the spot (which would lose the summary and any partial save).
#[cfg(unix)]
pub fn on_signal(mut handler: impl FnMut(Signal) + Send + 'static) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                handler(if signal == SIGTERM {
                    Signal::Terminate
                } else {
                    Signal::Interrupt
                });
            }
        })?;
    Ok(())
}

/// Elsewhere the platform's default stays: Ctrl-C ends the process at once.
#[cfg(not(unix))]
pub fn on_signal(_handler: impl FnMut(Signal) + Send + 'static) -> io::Result<()> {
    Ok(())
}
