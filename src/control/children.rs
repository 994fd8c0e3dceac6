//! The tools' process groups while they run: listed here, so that a stop (Ctrl-C, SIGTERM, the
//! last-resort exit) can kill every one of them, wherever the tool runs. MCP servers, which
//! live for the whole run, are listed apart ([`crate::control::reaper::spawn_kept`]): a stop
//! leaves them be, the last-resort exit kills them too.

use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The process groups of the tools running now, so that an interruption can stop them too: they
/// run in groups of their own, out of reach of the terminal's Ctrl-C. A group's id is its sh's
/// pid, and a tool leaves this list before its sh is reaped, never after: until then the id
/// cannot be given to another process, so a kill sent to it reaches only the tool.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub(crate) fn running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills every tool still running (on Ctrl-C or SIGTERM).
pub(crate) fn kill_running_tools() {
    // Killing under the lock: a tool's own thread waits for it before reaping (see RUNNING),
    // and notices, by its absence from the list, that it was stopped.
    let mut running = running();
    for id in running.drain(..) {
        kill_group(id);
    }
}

/// SIGKILL to the whole group: a pipeline's or a background job's processes hold the output pipes
/// too. A system call, not the `kill` command, which slim images lack.
#[cfg(unix)]
pub(crate) fn kill_group(id: u32) {
    use rustix::process::{Pid, Signal, kill_process_group};
    if let Some(pid) = i32::try_from(id).ok().and_then(Pid::from_raw) {
        // It fails only when the group is already gone, which is what we want.
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

#[cfg(not(unix))]
pub(crate) fn kill_group(_id: u32) {}

/// SIGTERM (or, with `kill`, SIGKILL) to the whole group `id`.
#[cfg(unix)]
pub(crate) fn signal_group(id: u32, kill: bool) {
    use rustix::process::{Pid, Signal, kill_process_group};
    if let Some(pid) = i32::try_from(id).ok().and_then(Pid::from_raw) {
        let signal = if kill { Signal::KILL } else { Signal::TERM };
        let _ = kill_process_group(pid, signal);
    }
}

#[cfg(not(unix))]
pub(crate) fn signal_group(_id: u32, _kill: bool) {}

/// `sh -c COMMAND` in a process group of its own: the terminal's Ctrl-C is ours to handle, and a
/// timeout or the end can kill all it started (a tool's children, an MCP server's).
#[cfg(unix)]
pub(crate) fn shell(command: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(command).process_group(0);
    shell
}

#[cfg(not(unix))]
pub(crate) fn shell(command: &str) -> Command {
    let mut shell = Command::new("cmd");
    shell.arg("/C").arg(command);
    shell
}
