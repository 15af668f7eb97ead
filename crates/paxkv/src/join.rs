//! What a replica that joined a running cluster keeps of what the cluster
//! told it ([`crate::server::Joined`]): `cluster.json` in its data
//! directory, written once and durably, read at every later start.

use crate::storage::{create_durably, sync_dir};
use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

/// The file's name in the data directory.
pub const JOINED: &str = "cluster.json";

/// What a replica that joined a running cluster was told by it, if its
/// data directory holds it.
pub fn joined(dir: &Path) -> Result<Option<crate::server::Joined>, String> {
    let path = dir.join(JOINED);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Keeps a joined replica's cluster facts in its directory, durably
/// (written in full, fsynced, renamed into place, the directory fsynced),
/// unless they are there already (they never change).
pub fn keep_joined(dir: &Path, json: &[u8]) -> Result<(), String> {
    if dir.join(JOINED).exists() {
        return Ok(());
    }
    let err = |e: io::Error| format!("cannot write {}: {e}", dir.join(JOINED).display());
    create_durably(dir).map_err(err)?;
    let tmp = dir.join("cluster.json.tmp");
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(json).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, dir.join(JOINED)).map_err(err)?;
    sync_dir(dir).map_err(err)
}
