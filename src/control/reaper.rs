//! What a tool leaves behind, wherever it went.
//!
//! A tool's process group holds what its `sh` starts, but not a child that calls `setsid` or
//! double-forks into a session of its own: killing the group misses it, and it would outlive the
//! run and gptstream. So on Linux gptstream makes itself the child subreaper of its tools
//! ([`adopt`]): a process whose parent dies becomes gptstream's child instead of init's, and
//! [`sweep`] kills and reaps every such orphan once the tool's run is over. Elsewhere nothing is
//! adopted and the sweep does nothing: the process group is the limit there (see README).

use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The children std owns: each tool's `sh`, from its spawn until its `Child` has reaped it. A
/// sweep never signals or reaps them (their `Child` would then wait on, or kill, a pid that is no
/// longer theirs), and does nothing while one is listed: its tool is still running, and whatever
/// was re-parented to us may be that tool's, still writing its output.
static OWNED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn owned() -> MutexGuard<'static, Vec<u32>> {
    OWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether we are our tools' subreaper: decided once, before the first tool runs.
static ADOPTING: OnceLock<bool> = OnceLock::new();

/// How long a sweep waits for the processes it killed to die: SIGKILL lands at once, unless a
/// process is stuck in the kernel (a dead NFS mount), which must not hang the run.
const PATIENCE: Duration = Duration::from_secs(2);

/// At an abrupt exit, how long to wait for a running tool's killed `sh` to die, so that what it
/// left comes to us and can be killed too.
const EXIT_PATIENCE: Duration = Duration::from_millis(500);

/// Makes gptstream the subreaper of whatever its tools start (Linux 3.4 and later), once. If the
/// kernel or a sandbox refuses, things stay as elsewhere: the process group is the limit.
pub(crate) fn adopt() {
    ADOPTING.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            use rustix::process::{getpid, set_child_subreaper};
            set_child_subreaper(Some(getpid())).is_ok()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    });
}

fn adopting() -> bool {
    ADOPTING.get().copied().unwrap_or(false)
}

/// Spawns a tool's `sh` and lists it as owned, under the lock a sweep holds: a sweep never finds
/// a child of ours that it cannot tell from an orphan. What was re-parented to us before (a
/// daemon an MCP server started) is not this tool's to sweep.
pub(crate) fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut owned = owned();
    if adopting() {
        let kept = kept().clone();
        let mut spared = spared();
        for pid in present_children() {
            if !owned.contains(&pid) && !kept.contains(&pid) && !spared.contains(&pid) {
                spared.push(pid);
            }
        }
    }
    let child = command.spawn()?;
    owned.push(child.id());
    Ok(child)
}

/// Orphans that were ours before the running tools started: their sweep leaves them (the end of
/// the MCP servers, [`sweep_all`], does not).
static SPARED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn spared() -> MutexGuard<'static, Vec<u32>> {
    SPARED.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(target_os = "linux")]
fn present_children() -> Vec<u32> {
    children(std::process::id())
}

#[cfg(not(target_os = "linux"))]
fn present_children() -> Vec<u32> {
    Vec::new()
}

/// The children that live for the whole run (MCP servers): a sweep neither kills them nor waits
/// for them, and the last-resort exit kills their groups. Listed from spawn until reaped.
static KEPT: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn kept() -> MutexGuard<'static, Vec<u32>> {
    KEPT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spawns a child that stays for the whole run, and lists it as kept.
pub(crate) fn spawn_kept(command: &mut Command) -> std::io::Result<Child> {
    let mut kept = kept();
    let child = command.spawn()?;
    kept.push(child.id());
    Ok(child)
}

/// Kept child `id` has been reaped.
pub(crate) fn release(id: u32) {
    kept().retain(|&listed| listed != id);
}

/// At the last-resort exit: SIGKILL to every kept child's group; what is left is then swept.
pub(crate) fn kill_kept() {
    for id in kept().drain(..) {
        crate::control::children::signal_group(id, true);
    }
}

/// `id`'s `Child` has reaped it.
pub(crate) fn disown(id: u32) {
    owned().retain(|&listed| listed != id);
}

/// After a tool's run: kills and reaps every process its tools left (re-parented to us), unless a
/// tool is still running.
pub(crate) fn sweep() {
    if !adopting() {
        return;
    }
    let owned = owned();
    if owned.is_empty() {
        let spared = std::mem::take(&mut *spared());
        reap_orphans(&owned, &spared, Instant::now() + PATIENCE);
        // Still alive, still not the next tool's.
        spared_again(spared);
    }
}

/// After the MCP servers stopped: kills and reaps every orphan, what they started outside their
/// groups included, unless a tool is still running.
pub(crate) fn sweep_all() {
    if !adopting() {
        return;
    }
    let owned = owned();
    if owned.is_empty() {
        spared().clear();
        reap_orphans(&owned, &[], Instant::now() + PATIENCE);
    }
}

fn spared_again(pids: Vec<u32>) {
    let present = present_children();
    spared().extend(pids.into_iter().filter(|pid| present.contains(pid)));
}

/// Before an abrupt exit (`process::exit` while a tool may still run, its group just killed by
/// `kill_running_tools`): waits a moment for the tools' `sh` to die, then kills and reaps what
/// they left. The lock stays held, so no tool starts after it.
pub(crate) fn sweep_at_exit() {
    if !adopting() {
        return;
    }
    let owned = owned();
    reap_orphans(&owned, &[], Instant::now() + EXIT_PATIENCE);
    std::mem::forget(owned);
}

/// Kills every child of ours that is not `owned`, reaps each by its pid (never a wait for any
/// child, which could take a status that a `Child` waits for), and goes on as long as the dead
/// leave children of their own to us, or an `owned` child has not exited yet (what it leaves
/// comes to us when it does), until `deadline`.
#[cfg(target_os = "linux")]
fn reap_orphans(owned: &[u32], spared: &[u32], deadline: Instant) {
    use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};
    // Killed and not reaped yet: still our children, so their pids are not reused meanwhile.
    let mut killed: Vec<u32> = Vec::new();
    loop {
        let kept = kept().clone();
        let found: Vec<u32> = children(std::process::id())
            .into_iter()
            .filter(|pid| !owned.contains(pid) && !kept.contains(pid) && !spared.contains(pid))
            .collect();
        for &pid in &found {
            if !killed.contains(&pid)
                && let Some(target) = raw_pid(pid)
            {
                // A zombie takes the signal without effect; it is reaped below all the same.
                let _ = kill_process(target, Signal::KILL);
                killed.push(pid);
            }
        }
        // Reaping returns once the process has exited, so once its children are ours: the next
        // scan finds them.
        killed.retain(|&pid| {
            let reaped = match raw_pid(pid) {
                Some(target) => waitpid(Some(target), WaitOptions::NOHANG),
                None => return false,
            };
            // Still running: keep it. Reaped, or not ours (ECHILD): done with it.
            matches!(reaped, Ok(None))
        });
        if found.is_empty() && killed.is_empty() && owned.iter().all(|&id| exited(id)) {
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        if !killed.is_empty() || found.is_empty() {
            // Waiting for a death: SIGKILL takes effect when the process is next scheduled.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn raw_pid(pid: u32) -> Option<Pid> {
        i32::try_from(pid).ok().and_then(Pid::from_raw)
    }

    /// Whether owned child `id` has exited (or been reaped by its `Child` already), without
    /// reaping it: that stays its `Child`'s to do.
    fn exited(id: u32) -> bool {
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        let Some(pid) = raw_pid(id) else {
            return true;
        };
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        !matches!(waitid(WaitId::Pid(pid), options), Ok(None))
    }
}

#[cfg(not(target_os = "linux"))]
fn reap_orphans(_owned: &[u32], _spared: &[u32], _deadline: Instant) {}

/// The pids of the processes whose parent is `parent`, from `/proc/*/stat`.
#[cfg(target_os = "linux")]
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            // Gone already, or not readable: either way nothing of ours.
            let stat = std::fs::read(entry.path().join("stat")).ok()?;
            (parent_of(&stat)? == parent).then_some(pid)
        })
        .collect()
}

/// The parent pid in a `/proc/PID/stat` line: `PID (COMM) STATE PPID ...`. The command name can
/// hold spaces and parentheses of its own, so the fields are counted from the last `)`.
#[cfg(any(target_os = "linux", test))]
fn parent_of(stat: &[u8]) -> Option<u32> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_after_the_last_parenthesis() {
        assert_eq!(parent_of(b"42 (sleep) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_of(b"42 (a) b) S 9 1 1 0 -1\n"), Some(9));
        // A name made to look like the fields that follow it.
        assert_eq!(parent_of(b"42 (x) S 5) S 9 1 1"), Some(9));
        assert_eq!(parent_of(b"42 (tab\there  x) Z 1 0 0"), Some(1));
        assert_eq!(parent_of(b"42 (no close S 7"), None);
        assert_eq!(parent_of(b"42 (x) S"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_children_are_found() {
        let mut child = Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep starts");
        let found = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }
}
