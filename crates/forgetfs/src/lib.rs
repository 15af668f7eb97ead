//! A filesystem that forgets, for power cuts on real processes (issue 20).
//!
//! `kill -9` keeps the operating system's page cache, so a process crash
//! never loses a write that was not fsynced; only a power cut does. This
//! FUSE filesystem holds everything in memory in two versions: what
//! processes see (every write, create, rename and unlink at once) and what
//! a power cut leaves (what was made durable):
//!
//! - a file's contents become durable at its `fsync` (or `fdatasync`);
//! - a directory's entries (a new file, a rename, an unlink) become durable
//!   at the directory's `fsync`, as ext4 promises and no more;
//! - an fsync takes [`ForgetFs::fsync_delay`] (a disk's milliseconds) and
//!   completes on its own thread; a power cut meanwhile voids it (`EIO`);
//! - writing to the file [`POWER_CUT`] at the root cuts the power: every
//!   file and directory goes back to its durable version. `off` leaves the
//!   power off (every operation but the switch's fails with `EIO`) until
//!   `on` is written; anything else is a cut and the power back at once.
//!
//! A harness cuts the power *before* it kills the process (`off`, `kill
//! -9`, `on`): killed first, a process blocked in an fsync would wait for
//! it to finish, and a real power cut does not wait.
//!
//! The kernel caches nothing (direct IO, no attribute or entry caching), so
//! what a process reads after a cut is what the filesystem kept. Like
//! LazyFS (which Jepsen used to find etcd-io/etcd #14140), it sits under an
//! unmodified process: the process under test has no flag for it.

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, FUSE_ROOT_ID,
};
use libc::{EEXIST, EINVAL, EIO, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::time::{Duration, UNIX_EPOCH};

/// Write to this file at the root to cut the power.
pub const POWER_CUT: &str = ".forgetfs-power-cut";

/// Mounts a new, empty filesystem at `mountpoint` whose fsyncs take
/// `fsync_delay`, and serves it until it is unmounted.
pub fn serve(mountpoint: &std::path::Path, fsync_delay: Duration) -> std::io::Result<()> {
    let mut fs = ForgetFs::new();
    fs.fsync_delay = fsync_delay;
    let opts = [
        fuser::MountOption::FSName("forgetfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    fuser::mount2(fs, mountpoint, &opts)
}

/// A `forgetfs` process serving a mount, as tests and the Jepsen-style
/// harness use it: mounted by [`Mount::start`], power cut by
/// [`Mount::power_cut`], unmounted (and its process ended) when dropped.
pub struct Mount {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Mount {
    /// Runs `exe` (the `forgetfs` binary) on the directory `dir` (created
    /// if missing) and waits until the kernel lists the mount.
    pub fn start(
        exe: &std::path::Path,
        dir: &std::path::Path,
        fsync_delay: Duration,
    ) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let child = std::process::Command::new(exe)
            .arg(dir)
            .args(["--fsync-delay-ms", &fsync_delay.as_millis().to_string()])
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        let mut m = Mount {
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !m.mounted() {
            if let Ok(Some(status)) = m.child.try_wait() {
                return Err(format!(
                    "forgetfs exited ({status}) without mounting {}",
                    dir.display()
                ));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("forgetfs never mounted {}", dir.display()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(m)
    }

    fn mounted(&self) -> bool {
        let dir = self.dir.to_string_lossy();
        std::fs::read_to_string("/proc/mounts")
            .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(dir.as_ref())))
    }

    /// Where it is mounted.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Cuts the power and brings it back: what was not made durable is
    /// gone.
    pub fn power_cut(&self) -> std::io::Result<()> {
        std::fs::write(self.dir.join(POWER_CUT), b"cut")
    }

    /// Cuts the power and leaves it off: what was not made durable is
    /// gone, and every file operation fails until [`Mount::power_on`].
    pub fn power_off(&self) -> std::io::Result<()> {
        std::fs::write(self.dir.join(POWER_CUT), b"off")
    }

    /// Brings the power back.
    pub fn power_on(&self) -> std::io::Result<()> {
        std::fs::write(self.dir.join(POWER_CUT), b"on")
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazily: a process still holding a file must not keep it mounted.
        let _ = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.dir)
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a FUSE filesystem cannot be mounted here, if it cannot: tests and
/// the Jepsen-style harness say SKIPPED with this reason.
pub fn unavailable() -> Option<String> {
    if !std::path::Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse (a container needs --device /dev/fuse)".into());
    }
    match std::process::Command::new("fusermount3").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no fusermount3 (deploy/fuse/install.sh installs fuse3)".into()),
    }
}

/// Nothing is cached by the kernel: every lookup and attribute comes here.
const TTL: Duration = Duration::ZERO;

#[derive(Clone, Debug)]
enum Kind {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
        /// `data[..clean]` is `durable[..clean]`: an fsync copies only what
        /// changed since (a WAL's appends), not the whole file.
        clean: usize,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
    /// The power-cut switch.
    Switch,
}

#[derive(Clone, Debug)]
struct Inode {
    kind: Kind,
    perm: u16,
}

/// The files, in their two versions: inodes by number; the root is
/// [`FUSE_ROOT_ID`], the switch [`SWITCH`].
#[derive(Debug)]
struct Tree {
    inodes: BTreeMap<u64, Inode>,
    next: u64,
    /// Power cuts so far.
    cuts: u64,
    /// The power is off: every operation but the switch's fails (EIO).
    off: bool,
}

/// The filesystem as FUSE serves it. Its fsyncs complete on their own
/// threads, after [`ForgetFs::fsync_delay`], so a power cut can overtake
/// one in flight: then it never happened, as on a disk whose cache lost
/// power mid-flush.
#[derive(Debug)]
pub struct ForgetFs {
    tree: std::sync::Arc<std::sync::Mutex<Tree>>,
    /// How long a fsync takes (zero: at once). A disk's fsync takes
    /// milliseconds, this one microseconds; a delay gives a power cut the
    /// window a real disk would, between a write and its durability.
    pub fsync_delay: Duration,
}

/// The inode of the power switch.
const SWITCH: u64 = FUSE_ROOT_ID + 1;

impl Default for ForgetFs {
    fn default() -> Self {
        Self::new()
    }
}

impl ForgetFs {
    pub fn new() -> ForgetFs {
        ForgetFs {
            tree: std::sync::Arc::new(std::sync::Mutex::new(Tree::new())),
            fsync_delay: Duration::ZERO,
        }
    }

    /// Power cuts so far.
    pub fn cuts(&self) -> u64 {
        self.tree.lock().expect("no thread panics holding it").cuts
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree.lock().expect("no thread panics holding it")
    }
}

impl Tree {
    fn new() -> Tree {
        let mut inodes = BTreeMap::new();
        let mut root = BTreeMap::new();
        root.insert(OsString::from(POWER_CUT), SWITCH);
        inodes.insert(
            FUSE_ROOT_ID,
            Inode {
                kind: Kind::Dir {
                    entries: root.clone(),
                    durable: root,
                },
                perm: 0o755,
            },
        );
        inodes.insert(
            SWITCH,
            Inode {
                kind: Kind::Switch,
                perm: 0o222,
            },
        );
        Tree {
            inodes,
            next: SWITCH + 1,
            cuts: 0,
            off: false,
        }
    }

    /// The power is off and `ino` is not the switch.
    fn dark(&self, ino: u64) -> bool {
        self.off && ino != SWITCH
    }

    /// The power fails: everything goes back to what was made durable.
    fn power_cut(&mut self) {
        for inode in self.inodes.values_mut() {
            match &mut inode.kind {
                Kind::File {
                    data,
                    durable,
                    clean,
                } => {
                    *data = durable.clone();
                    *clean = data.len();
                }
                Kind::Dir { entries, durable } => *entries = durable.clone(),
                Kind::Switch => {}
            }
        }
        self.cuts += 1;
        self.collect();
    }

    /// Drops the inodes no directory names, now or durably: nothing can
    /// name them again (a power cut brings back durable entries only).
    /// Without it every file a rename replaced stayed in memory, twice: a
    /// replica compacting a 40 MB WAL every few seconds took a mount to
    /// 6 GB and the OOM killer.
    fn collect(&mut self) {
        let mut live: BTreeSet<u64> = BTreeSet::from([FUSE_ROOT_ID, SWITCH]);
        for i in self.inodes.values() {
            if let Kind::Dir { entries, durable } = &i.kind {
                live.extend(entries.values().chain(durable.values()));
            }
        }
        self.inodes.retain(|ino, _| live.contains(ino));
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let i = self.inodes.get(&ino)?;
        let (kind, size, nlink) = match &i.kind {
            Kind::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Kind::Dir { .. } => (FileType::Directory, 0, 2),
            Kind::Switch => (FileType::RegularFile, 0, 1),
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm: i.perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, i32> {
        match self.inodes.get_mut(&dir).map(|i| &mut i.kind) {
            Some(Kind::Dir { entries, .. }) => Ok(entries),
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    fn child(&mut self, parent: u64, name: &OsStr) -> Result<u64, i32> {
        self.entries(parent)?.get(name).copied().ok_or(ENOENT)
    }

    /// A new inode of `kind` named `name` in `parent`.
    fn make(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<u64, i32> {
        let ino = self.next;
        let entries = self.entries(parent)?;
        if entries.contains_key(name) {
            return Err(EEXIST);
        }
        entries.insert(name.to_os_string(), ino);
        self.inodes.insert(ino, Inode { kind, perm });
        self.next += 1;
        Ok(ino)
    }

    /// `ino`'s contents (a file) or entries (a directory) become durable.
    fn make_durable(&mut self, ino: u64) -> Result<(), i32> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.kind) {
            Some(Kind::File {
                data,
                durable,
                clean,
            }) => {
                durable.truncate(*clean);
                durable.extend_from_slice(&data[*clean..]);
                *clean = data.len();
            }
            Some(Kind::Dir { entries, durable }) => {
                *durable = entries.clone();
                self.collect();
            }
            Some(Kind::Switch) => {}
            None => return Err(ENOENT),
        }
        Ok(())
    }

    /// Makes `ino` durable and answers its fsync.
    fn sync_reply(&mut self, ino: u64, reply: ReplyEmpty) {
        match self.make_durable(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn attr_reply(&self, ino: u64, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(ENOENT),
        }
    }

    fn entry_reply(&self, ino: u64, reply: ReplyEntry) {
        match self.attr(ino) {
            Some(a) => reply.entry(&TTL, &a, 0),
            None => reply.error(ENOENT),
        }
    }
}

/// Replies with the error of `r`, or does `ok` with its value.
macro_rules! or_reply {
    ($r:expr, $reply:expr) => {
        match $r {
            Ok(v) => v,
            Err(e) => return $reply.error(e),
        }
    };
}

impl Filesystem for ForgetFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut t = self.tree();
        if t.dark(parent) && !(parent == FUSE_ROOT_ID && name == POWER_CUT) {
            return reply.error(EIO);
        }
        let ino = or_reply!(t.child(parent, name), reply);
        t.entry_reply(ino, reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyAttr) {
        let t = self.tree();
        if t.dark(ino) && ino != FUSE_ROOT_ID {
            return reply.error(EIO);
        }
        t.attr_reply(ino, reply);
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut t = self.tree();
        if t.dark(ino) {
            return reply.error(EIO);
        }
        let Some(i) = t.inodes.get_mut(&ino) else {
            return reply.error(ENOENT);
        };
        if let Some(m) = mode {
            i.perm = (m & 0o7777) as u16;
        }
        if let Some(len) = size {
            match &mut i.kind {
                Kind::File { data, clean, .. } => {
                    data.resize(len as usize, 0);
                    *clean = (*clean).min(data.len());
                }
                Kind::Dir { .. } => return reply.error(EISDIR),
                Kind::Switch => {}
            }
        }
        t.attr_reply(ino, reply);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut t = self.tree();
        if t.dark(parent) {
            return reply.error(EIO);
        }
        let kind = Kind::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        let ino = or_reply!(t.make(parent, name, kind, (mode & 0o7777) as u16), reply);
        t.entry_reply(ino, reply);
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut t = self.tree();
        if t.dark(parent) {
            return reply.error(EIO);
        }
        let kind = Kind::File {
            data: Vec::new(),
            durable: Vec::new(),
            clean: 0,
        };
        let ino = or_reply!(t.make(parent, name, kind, (mode & 0o7777) as u16), reply);
        let a = t.attr(ino).expect("just made");
        reply.created(&TTL, &a, 0, 0, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut t = self.tree();
        if t.dark(ino) {
            return reply.error(EIO);
        }
        let Some(i) = t.inodes.get_mut(&ino) else {
            return reply.error(ENOENT);
        };
        if flags & libc::O_TRUNC != 0 {
            if let Kind::File { data, clean, .. } = &mut i.kind {
                data.clear();
                *clean = 0;
            }
        }
        reply.opened(0, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let t = self.tree();
        if t.dark(ino) {
            return reply.error(EIO);
        }
        match t.inodes.get(&ino).map(|i| &i.kind) {
            Some(Kind::File { data, .. }) => {
                let start = (offset.max(0) as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Some(Kind::Switch) => reply.data(&[]),
            Some(Kind::Dir { .. }) => reply.error(EISDIR),
            None => reply.error(ENOENT),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        bytes: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut t = self.tree();
        if t.dark(ino) {
            return reply.error(EIO);
        }
        let Some(i) = t.inodes.get_mut(&ino) else {
            return reply.error(ENOENT);
        };
        match &mut i.kind {
            Kind::File { data, clean, .. } => {
                let at = offset.max(0) as usize;
                *clean = (*clean).min(at);
                if data.len() < at + bytes.len() {
                    data.resize(at + bytes.len(), 0);
                }
                data[at..at + bytes.len()].copy_from_slice(bytes);
                reply.written(bytes.len() as u32);
            }
            Kind::Switch => {
                match bytes.trim_ascii() {
                    b"on" => t.off = false,
                    b"off" => {
                        t.power_cut();
                        t.off = true;
                    }
                    _ => t.power_cut(),
                }
                reply.written(bytes.len() as u32);
            }
            Kind::Dir { .. } => reply.error(EISDIR),
        }
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut t = self.tree();
        if t.dark(ino) {
            return reply.error(EIO);
        }
        if self.fsync_delay.is_zero() {
            return t.sync_reply(ino, reply);
        }
        // The flush takes a while, on its own thread: the session goes on
        // serving, and a power cut meanwhile (a later `cuts`) voids it.
        let began = t.cuts;
        drop(t);
        let tree = self.tree.clone();
        let delay = self.fsync_delay;
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let mut t = tree.lock().expect("no thread panics holding it");
            if t.cuts != began {
                return reply.error(EIO);
            }
            t.sync_reply(ino, reply);
        });
    }

    fn fsyncdir(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync(req, ino, fh, datasync, reply);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut t = self.tree();
        if t.dark(parent) {
            return reply.error(EIO);
        }
        let entries = or_reply!(t.entries(parent), reply);
        match entries.remove(name) {
            Some(_) => {
                t.collect();
                reply.ok()
            }
            None => reply.error(ENOENT),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut t = self.tree();
        if t.dark(parent) {
            return reply.error(EIO);
        }
        let ino = or_reply!(t.child(parent, name), reply);
        match t.inodes.get(&ino).map(|i| &i.kind) {
            Some(Kind::Dir { entries, .. }) if !entries.is_empty() => reply.error(ENOTEMPTY),
            Some(Kind::Dir { .. }) => {
                or_reply!(t.entries(parent), reply).remove(name);
                reply.ok()
            }
            _ => reply.error(ENOTDIR),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut t = self.tree();
        if t.dark(parent) {
            return reply.error(EIO);
        }
        if flags != 0 {
            return reply.error(EINVAL);
        }
        let ino = or_reply!(t.child(parent, name), reply);
        or_reply!(t.entries(newparent), reply);
        t.entries(parent).expect("found above").remove(name);
        t.entries(newparent)
            .expect("found above")
            .insert(newname.to_os_string(), ino);
        t.collect();
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let t = self.tree();
        if t.dark(ino) {
            return reply.error(EIO);
        }
        match t.inodes.get(&ino).map(|i| &i.kind) {
            Some(Kind::Dir { .. }) => reply.opened(0, 0),
            Some(_) => reply.error(ENOTDIR),
            None => reply.error(ENOENT),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut t = self.tree();
        if t.dark(ino) {
            return reply.error(EIO);
        }
        let entries = or_reply!(t.entries(ino), reply).clone();
        let mut all = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (ino, FileType::Directory, OsString::from("..")),
        ];
        for (name, child) in entries {
            let kind = t.attr(child).map_or(FileType::RegularFile, |a| a.kind);
            all.push((child, kind, name));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(child, (i + 1) as i64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model, without the kernel: what a power cut keeps.
    #[test]
    fn a_power_cut_keeps_only_fsynced_contents_and_fsynced_directory_entries() {
        let mut fs = Tree::new();
        let file = |data: &[u8], durable: &[u8]| Kind::File {
            data: data.to_vec(),
            durable: durable.to_vec(),
            clean: 0,
        };
        let a = fs
            .make(FUSE_ROOT_ID, OsStr::new("a"), file(b"", b""), 0o644)
            .unwrap();
        // a's entry made durable, then its contents in part.
        if let Kind::Dir { entries, durable } = &mut fs.inodes.get_mut(&FUSE_ROOT_ID).unwrap().kind
        {
            *durable = entries.clone();
        }
        fs.inodes.get_mut(&a).unwrap().kind = file(b"synced+unsynced", b"synced");
        // b exists only in the directory's unsynced entries.
        fs.make(FUSE_ROOT_ID, OsStr::new("b"), file(b"x", b"x"), 0o644)
            .unwrap();
        fs.power_cut();
        assert_eq!(fs.child(FUSE_ROOT_ID, OsStr::new("b")), Err(ENOENT));
        let a = fs.child(FUSE_ROOT_ID, OsStr::new("a")).unwrap();
        match &fs.inodes[&a].kind {
            Kind::File { data, .. } => assert_eq!(data, b"synced"),
            k => panic!("{k:?}"),
        }
        assert_eq!(fs.cuts, 1);
        assert!(fs.child(FUSE_ROOT_ID, OsStr::new(POWER_CUT)).is_ok());
        // b named nothing durably: gone for good, its inode too.
        assert_eq!(fs.inodes.len(), 3, "root, switch and a");
    }

    /// A file a rename replaced is dropped once no directory names it, now
    /// or durably: a WAL compacted a thousand times holds one copy.
    #[test]
    fn a_replaced_file_is_dropped_once_the_directory_is_durable() {
        let mut fs = Tree::new();
        let big = Kind::File {
            data: vec![1; 1 << 20],
            durable: vec![1; 1 << 20],
            clean: 1 << 20,
        };
        fs.make(FUSE_ROOT_ID, OsStr::new("wal"), big.clone(), 0o644)
            .unwrap();
        fs.make_durable(FUSE_ROOT_ID).unwrap();
        for _ in 0..1_000 {
            let tmp = fs
                .make(FUSE_ROOT_ID, OsStr::new("wal.tmp"), big.clone(), 0o644)
                .unwrap();
            let root = fs.entries(FUSE_ROOT_ID).unwrap();
            root.remove(OsStr::new("wal.tmp"));
            root.insert(OsString::from("wal"), tmp);
            fs.collect();
            // The old one is still named durably until the directory's fsync.
            assert_eq!(fs.inodes.len(), 4);
            fs.make_durable(FUSE_ROOT_ID).unwrap();
            assert_eq!(fs.inodes.len(), 3);
        }
    }
}
