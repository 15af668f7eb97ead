//! `forgetfs MOUNTPOINT [--fsync-delay-ms N]`: mounts a filesystem that
//! forgets what was not fsynced when `MOUNTPOINT/.forgetfs-power-cut` is
//! written to (see the `forgetfs` crate), and serves it until unmounted
//! (`fusermount3 -u MOUNTPOINT`). It ships beside `paxkv` for the
//! Jepsen-style harness's power cuts (`paxkv jepsen --faults power-cut-all`);
//! the server itself knows nothing of it.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "A FUSE filesystem in memory that forgets what was not fsynced on a power cut")]
struct Args {
    mountpoint: PathBuf,
    /// How long each file fsync takes, as on a real disk (0: at once).
    #[arg(long, default_value_t = 0)]
    fsync_delay_ms: u64,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Some(why) = forgetfs::unavailable() {
        eprintln!("forgetfs: cannot mount here: {why}");
        return ExitCode::FAILURE;
    }
    let delay = Duration::from_millis(a.fsync_delay_ms);
    if let Err(e) = forgetfs::serve(&a.mountpoint, delay) {
        eprintln!("forgetfs: cannot mount {}: {e}", a.mountpoint.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
