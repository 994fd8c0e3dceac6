//! Replacing a file the user names (`--save`), so that a reader sees the old content or the
//! new, never a mix: only a regular file is replaced (never a device, FIFO or directory), its
//! mode and owner are kept, and a symlink stays a symlink: its final target is replaced.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::emit::redact::Blanking;

/// The metadata of `target` when it is a regular file, none when it does not exist, an error
/// for anything else: a rename over a FIFO, a device (`/dev/null`, as root) or a socket would
/// put a regular file in its place, and one over a directory fails half-way.
pub(crate) fn replaceable(target: &Path) -> io::Result<Option<fs::Metadata>> {
    let metadata = match fs::metadata(target) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(Some(metadata));
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        special_file_kind(&kind)
    };
    Err(io::Error::other(format!(
        "it is {what}, and --save replaces only a regular file"
    )))
}

#[cfg(unix)]
fn special_file_kind(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: &fs::FileType) -> &'static str {
    "not a regular file"
}

/// Replaces the file `path` leads to with `bytes`, so that a reader sees the old content or the
/// new, never a mix: a fresh temporary file beside the target, with the target's permissions
/// (and owner, where allowed), written and synced, renamed over the target, and the directory
/// synced so the rename survives a crash. A symlink is followed, not replaced: a user who links
/// `chat.json` into a synced folder keeps the link. The temporary file goes on any failure.
pub(crate) fn replace_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let target = resolve_symlinks(path)?;
    let existing = replaceable(&target)?;
    let (temporary, mut file) = create_temporary(&target, existing.is_some())?;
    let written = (|| {
        if let Some(metadata) = &existing {
            copy_owner(&file, metadata);
            file.set_permissions(metadata.permissions())?;
        }
        // Buffered before blanking, so secrets are looked for in big pieces, not token by token.
        let mut out = io::BufWriter::new(Blanking::new(&mut file));
        write(&mut out)?;
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .finish()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, &target)
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temporary);
        return Err(err);
    }
    sync_directory(&target);
    Ok(())
}

/// Follows `path` through symlinks to the file they end at, which need not exist yet (a dangling
/// link gets its target created). Gives up on a loop, as the kernel does.
pub(crate) fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let link = fs::read_link(&current)?;
                // A relative link is relative to the directory that holds it.
                current = match current.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            Ok(_) => return Ok(current),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_LINKS} symlinks to follow from {}",
        path.display()
    )))
}

/// Creates a temporary file beside `target` that no one else has: a unique name, opened with
/// `create_new`. It starts private when it will replace an existing file, whose permissions it
/// then takes; a new transcript gets the default mode (umask), as any new file.
fn create_temporary(target: &Path, private: bool) -> io::Result<(PathBuf, fs::File)> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut attempts = 0;
    loop {
        let temporary = temporary_path(target);
        match options.open(&temporary) {
            Ok(file) => return Ok((temporary, file)),
            // Only a stale file from an earlier process with our pid can be in the way.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 10 => {
                attempts += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// `.NAME.gptstream-PID-N-NANOS.tmp` beside `target`: the pid tells processes apart, the counter
/// saves within one process (chat saves after every turn), and the time a reused pid.
fn temporary_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    target.with_file_name(format!(
        ".{name}.gptstream-{}-{count}-{nanos}.tmp",
        std::process::id()
    ))
}

/// Gives the new file the old one's owner and group when they differ from ours, which only
/// root (or a member of the group, for the group) may do. Best effort: a save that cannot keep
/// the owner still saves, as editors do; ids a container cannot map fail with EINVAL, not EPERM,
/// so every error is let go.
#[cfg(unix)]
fn copy_owner(file: &fs::File, old: &fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let Ok(new) = file.metadata() else {
        return;
    };
    let uid = (new.uid() != old.uid()).then_some(old.uid());
    let gid = (new.gid() != old.gid()).then_some(old.gid());
    if uid.is_none() && gid.is_none() {
        return;
    }
    if std::os::unix::fs::fchown(file, uid, gid).is_err() && uid.is_some() && gid.is_some() {
        let _ = std::os::unix::fs::fchown(file, None, gid);
    }
}

#[cfg(not(unix))]
fn copy_owner(_file: &fs::File, _old: &fs::Metadata) {}

/// Syncs the directory that holds `target`, so that the rename itself is on disk. Best effort:
/// the new content is already in place, and some filesystems refuse to sync a directory.
#[cfg(unix)]
fn sync_directory(target: &Path) {
    let directory = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Ok(directory) = fs::File::open(directory) {
        let _ = directory.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_directory(_target: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #12, defect 8: the temporary name was `.NAME.gptstream-PID.tmp`, the same for every
    /// save of one process, so two saves (chat saves after each turn) could collide.
    #[test]
    fn defect8_two_saves_from_one_process_use_distinct_temporary_names() {
        let path = Path::new("/some/dir/chat.json");
        let (first, second) = (temporary_path(path), temporary_path(path));
        assert_ne!(first, second);
        for name in [&first, &second] {
            assert_eq!(name.parent(), path.parent(), "beside the target");
            let file = name.file_name().unwrap().to_string_lossy();
            assert!(file.starts_with(".chat.json.gptstream-"), "{file}");
        }
    }
}
