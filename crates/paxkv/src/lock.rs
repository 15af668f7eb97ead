//! One process per data directory: an advisory lock on `paxkv.lock`,
//! held for the process's life and released by the kernel when it ends
//! however it ends (`kill -9` included). Two servers on one directory used
//! to both run and append to one WAL.

use std::fs::{File, OpenOptions, TryLockError};
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
            Ok(()) => Ok(DirLock(f)),
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
