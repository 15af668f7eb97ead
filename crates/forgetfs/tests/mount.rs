//! The real thing: `forgetfs` mounted through the kernel's FUSE, written to
//! with ordinary system calls, then its power cut. SKIPPED (with the
//! reason) where FUSE is unavailable; `deploy/fuse/install.sh` installs
//! what it needs on Debian.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Why FUSE cannot be used here, if it cannot.
fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse".into());
    }
    match Command::new("fusermount3").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no fusermount3 (deploy/fuse/install.sh installs fuse3)".into()),
    }
}

struct Mount {
    dir: PathBuf,
    child: Child,
}

impl Mount {
    fn new(name: &str) -> Mount {
        let dir = std::env::temp_dir().join(format!("forgetfs-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_forgetfs"))
            .arg(&dir)
            .spawn()
            .expect("spawn forgetfs");
        let mut m = Mount { dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        let dir = m.dir.to_string_lossy().to_string();
        while !fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(dir.as_str()))
        {
            assert!(Instant::now() < deadline, "forgetfs never mounted {dir}");
            // FUSE is here (checked above): a mount that fails is a failure.
            if let Some(status) = m.child.try_wait().unwrap() {
                panic!("forgetfs exited ({status}) without mounting {dir}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn sync_dir(&self, p: &str) {
        File::open(self.path(p)).unwrap().sync_all().unwrap();
    }

    fn power_cut(&self) {
        fs::write(self.path(forgetfs::POWER_CUT), b"1").unwrap();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.dir)
            .status();
        let _ = self.child.wait();
        let _ = fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_power_cut_forgets_unsynced_writes_new_files_and_renames() {
    if let Some(why) = unavailable() {
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
