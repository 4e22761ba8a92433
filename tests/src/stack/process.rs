//! Child processes of the local stack tied to the test process: spawned from a supervising thread
//! with a parent-death signal, killed and cleaned up by an `atexit` hook on a normal exit, and
//! working directories of killed runs removed by the next run.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

/// What the `atexit` hook cleans up.
static CLEANUP: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

/// A new directory under the system temp dir, marked with this process's id. Directories with
/// the same prefix whose owner is gone (a test process killed before its exit hook ran) are
/// removed first, so killed runs do not pile up in /tmp.
pub(crate) fn owned_temp_dir(prefix: &str) -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(prefix) {
                continue;
            }
            let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(pid) = owner {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&tmp)
        .context("cannot create a temporary directory")?
        .keep();
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())?;
    Ok(dir)
}

const OWNER_FILE: &str = ".owner-pid";

/// Asks the kernel to send `signal` to the child when the thread that spawned it dies. The spawning thread
/// is a dedicated one that only returns once the child has exited, so in practice: when the test
/// process dies, however it dies.
pub(crate) fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` from a thread that waits for it (the child's death signal is tied to that
/// thread), and writes a description of its exit into `exit`. Returns the child's pid.
pub(crate) fn spawn_supervised(mut cmd: Command, exit: Arc<Mutex<Option<String>>>) -> Result<u32> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("supervise-{program}"))
        .spawn(move || match cmd.spawn() {
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let status = child.wait();
                *exit.lock().unwrap() = Some(match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                });
            }
        })
        .context("cannot start the supervising thread")?;
    match rx.recv().context("supervising thread vanished")? {
        Ok(pid) => Ok(pid),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("`{program}` not found on PATH; run `bash infra/local/setup.sh`")
        }
        Err(e) => Err(e).with_context(|| format!("cannot start `{program}`")),
    }
}

pub(super) fn kill(pid: u32) {
    // SAFETY: plain syscall on a pid this process spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

pub(super) fn register_cleanup(pid: u32, dir: PathBuf) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    CLEANUP.lock().unwrap().push((pid, dir));
    HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
}

extern "C" fn cleanup_at_exit() {
    let entries = match CLEANUP.try_lock() {
        Ok(mut guard) => std::mem::take(&mut *guard),
        Err(_) => return,
    };
    for (pid, dir) in entries {
        kill(pid);
        // SAFETY: reaping our own child; WNOHANG-free wait is fine, SIGKILL cannot be ignored.
        unsafe {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
