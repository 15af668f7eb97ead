//! One process per data directory: an advisory lock on `paxkv.lock`,
//! held for the process's life and released by the kernel when it ends
//! however it ends (`kill -9` included). Two servers on one directory used
//! to both run and append to one WAL. The file holds the holder's pid, so
//! that `paxkv local` can stop a replica of its cluster that someone
//! restarted by hand.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

/// The lock file's name in a data directory.
pub const LOCK: &str = "paxkv.lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] File);

impl DirLock {
    /// Takes `dir`'s lock, or says who has it.
    pub fn take(dir: &Path) -> Result<DirLock, String> {
        let path = dir.join(LOCK);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the lock {}: {e}", path.display()))?;
        match f.try_lock() {
            Ok(()) => {
                // Only the pid is written; a failure leaves the lock held.
                let _ = f.set_len(0).and_then(|()| (&f).write_all(std::process::id().to_string().as_bytes()));
                Ok(DirLock(f))
            }
            Err(TryLockError::WouldBlock) => Err(format!(
                "another paxkv process is using the data directory {} (it holds {LOCK}); stop it first",
                dir.display()
            )),
            Err(TryLockError::Error(e)) => {
                Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
    }
}

/// The pid of the process holding `dir`'s lock, if one holds it now.
pub fn holder(dir: &Path) -> Option<u32> {
    let path = dir.join(LOCK);
    let f = OpenOptions::new().read(true).open(&path).ok()?;
    match f.try_lock_shared() {
        Ok(()) => None,
        Err(_) => std::fs::read_to_string(&path).ok()?.trim().parse().ok(),
    }
}
