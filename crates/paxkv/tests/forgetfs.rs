//! The real thing: `forgetfs` mounted through the kernel's FUSE, written to
//! with ordinary system calls, then its power cut. SKIPPED (with the
//! reason) where FUSE is unavailable; `deploy/fuse/install.sh` installs
//! what it needs on Debian.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Mount {
    m: forgetfs::Mount,
}

impl Mount {
    fn new(name: &str) -> Mount {
        let dir = std::env::temp_dir().join(format!("forgetfs-{}-{name}", std::process::id()));
        let exe = Path::new(env!("CARGO_BIN_EXE_forgetfs"));
        Mount {
            m: forgetfs::Mount::start(exe, &dir, Duration::ZERO).expect("mount forgetfs"),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.m.dir().join(p)
    }

    fn sync_dir(&self, p: &str) {
        File::open(self.path(p)).unwrap().sync_all().unwrap();
    }

    fn power_cut(&self) {
        self.m.power_cut().unwrap();
    }
}

#[test]
fn a_power_cut_forgets_unsynced_writes_new_files_and_renames() {
    if let Some(why) = forgetfs::unavailable() {
        println!("SKIPPED: {why}");
        return;
    }
    let m = Mount::new("cut");
    fs::create_dir(m.path("d")).unwrap();
    m.sync_dir("");
    // A file written, fsynced, its entry made durable; then more, unsynced.
    let mut a = File::create(m.path("d/a")).unwrap();
    a.write_all(b"one").unwrap();
    a.sync_all().unwrap();
    m.sync_dir("d");
    a.write_all(b"two").unwrap();
    drop(a);
    // The WAL as it stood, durable.
    fs::write(m.path("d/wal"), b"old").unwrap();
    File::open(m.path("d/wal")).unwrap().sync_all().unwrap();
    m.sync_dir("d");
    // A new file fsynced, but not its directory.
    let mut b = File::create(m.path("d/b")).unwrap();
    b.write_all(b"b").unwrap();
    b.sync_all().unwrap();
    // A new WAL written and fsynced beside the old, renamed over it, and
    // the directory not fsynced: the rename is not durable.
    let mut t = File::create(m.path("d/wal.tmp")).unwrap();
    t.write_all(b"new").unwrap();
    t.sync_all().unwrap();
    fs::rename(m.path("d/wal.tmp"), m.path("d/wal")).unwrap();
    assert_eq!(fs::read(m.path("d/a")).unwrap(), b"onetwo");
    assert_eq!(fs::read(m.path("d/wal")).unwrap(), b"new");

    m.power_cut();
    assert_eq!(
        fs::read(m.path("d/a")).unwrap(),
        b"one",
        "unsynced bytes kept"
    );
    assert!(!m.path("d/b").exists(), "an entry never made durable kept");
    assert_eq!(fs::read(m.path("d/wal")).unwrap(), b"old", "a rename kept");
    assert!(!m.path("d/wal.tmp").exists());

    // The same steps with the directory fsynced after the rename survive.
    let mut t = File::create(m.path("d/wal.tmp")).unwrap();
    t.write_all(b"new").unwrap();
    t.sync_all().unwrap();
    fs::rename(m.path("d/wal.tmp"), m.path("d/wal")).unwrap();
    m.sync_dir("d");
    let mut f = OpenOptions::new()
        .append(true)
        .open(m.path("d/wal"))
        .unwrap();
    f.write_all(b"+1").unwrap();
    f.sync_data().unwrap();
    drop(f);
    m.power_cut();
    assert_eq!(fs::read(m.path("d/wal")).unwrap(), b"new+1");
}
