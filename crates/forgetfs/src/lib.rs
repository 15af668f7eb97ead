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
//! - writing anything to the file [`POWER_CUT`] at the root cuts the power:
//!   every file and directory goes back to its durable version.
//!
//! The kernel caches nothing (direct IO, no attribute or entry caching), so
//! what a process reads after a cut is what the filesystem kept. Like
//! LazyFS (which Jepsen used to find etcd-io/etcd #14140), it sits under an
//! unmodified process: the process under test has no flag for it.

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, FUSE_ROOT_ID,
};
use libc::{EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::time::{Duration, UNIX_EPOCH};

/// Write to this file at the root to cut the power.
pub const POWER_CUT: &str = ".forgetfs-power-cut";

/// Nothing is cached by the kernel: every lookup and attribute comes here.
const TTL: Duration = Duration::ZERO;

#[derive(Clone, Debug)]
enum Kind {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
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

/// The filesystem: inodes by number; the root is [`FUSE_ROOT_ID`].
#[derive(Debug)]
pub struct ForgetFs {
    inodes: BTreeMap<u64, Inode>,
    next: u64,
    /// Power cuts so far.
    pub cuts: u64,
}

impl Default for ForgetFs {
    fn default() -> Self {
        Self::new()
    }
}

impl ForgetFs {
    pub fn new() -> ForgetFs {
        let mut inodes = BTreeMap::new();
        let mut root = BTreeMap::new();
        root.insert(OsString::from(POWER_CUT), FUSE_ROOT_ID + 1);
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
            FUSE_ROOT_ID + 1,
            Inode {
                kind: Kind::Switch,
                perm: 0o222,
            },
        );
        ForgetFs {
            inodes,
            next: FUSE_ROOT_ID + 2,
            cuts: 0,
        }
    }

    /// The power fails: everything goes back to what was made durable.
    pub fn power_cut(&mut self) {
        for inode in self.inodes.values_mut() {
            match &mut inode.kind {
                Kind::File { data, durable } => *data = durable.clone(),
                Kind::Dir { entries, durable } => *entries = durable.clone(),
                Kind::Switch => {}
            }
        }
        self.cuts += 1;
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
        let ino = or_reply!(self.child(parent, name), reply);
        self.entry_reply(ino, reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(ENOENT),
        }
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
        let Some(i) = self.inodes.get_mut(&ino) else {
            return reply.error(ENOENT);
        };
        if let Some(m) = mode {
            i.perm = (m & 0o7777) as u16;
        }
        if let Some(len) = size {
            match &mut i.kind {
                Kind::File { data, .. } => data.resize(len as usize, 0),
                Kind::Dir { .. } => return reply.error(EISDIR),
                Kind::Switch => {}
            }
        }
        self.getattr(_req, ino, reply);
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
        let kind = Kind::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        let ino = or_reply!(self.make(parent, name, kind, (mode & 0o7777) as u16), reply);
        self.entry_reply(ino, reply);
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
        let kind = Kind::File {
            data: Vec::new(),
            durable: Vec::new(),
        };
        let ino = or_reply!(self.make(parent, name, kind, (mode & 0o7777) as u16), reply);
        let a = self.attr(ino).expect("just made");
        reply.created(&TTL, &a, 0, 0, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let Some(i) = self.inodes.get_mut(&ino) else {
            return reply.error(ENOENT);
        };
        if flags & libc::O_TRUNC != 0 {
            if let Kind::File { data, .. } = &mut i.kind {
                data.clear();
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
        match self.inodes.get(&ino).map(|i| &i.kind) {
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
        let Some(i) = self.inodes.get_mut(&ino) else {
            return reply.error(ENOENT);
        };
        match &mut i.kind {
            Kind::File { data, .. } => {
                let at = offset.max(0) as usize;
                if data.len() < at + bytes.len() {
                    data.resize(at + bytes.len(), 0);
                }
                data[at..at + bytes.len()].copy_from_slice(bytes);
                reply.written(bytes.len() as u32);
            }
            Kind::Switch => {
                self.power_cut();
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
        match self.inodes.get_mut(&ino).map(|i| &mut i.kind) {
            Some(Kind::File { data, durable }) => {
                *durable = data.clone();
                reply.ok();
            }
            Some(Kind::Dir { entries, durable }) => {
                *durable = entries.clone();
                reply.ok();
            }
            Some(Kind::Switch) => reply.ok(),
            None => reply.error(ENOENT),
        }
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
        let entries = or_reply!(self.entries(parent), reply);
        match entries.remove(name) {
            Some(_) => reply.ok(),
            None => reply.error(ENOENT),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let ino = or_reply!(self.child(parent, name), reply);
        match self.inodes.get(&ino).map(|i| &i.kind) {
            Some(Kind::Dir { entries, .. }) if !entries.is_empty() => reply.error(ENOTEMPTY),
            Some(Kind::Dir { .. }) => {
                or_reply!(self.entries(parent), reply).remove(name);
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
        if flags != 0 {
            return reply.error(EINVAL);
        }
        let ino = or_reply!(self.child(parent, name), reply);
        or_reply!(self.entries(newparent), reply);
        self.entries(parent).expect("found above").remove(name);
        self.entries(newparent)
            .expect("found above")
            .insert(newname.to_os_string(), ino);
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.inodes.get(&ino).map(|i| &i.kind) {
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
        let entries = or_reply!(self.entries(ino), reply).clone();
        let mut all = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (ino, FileType::Directory, OsString::from("..")),
        ];
        for (name, child) in entries {
            let kind = self.attr(child).map_or(FileType::RegularFile, |a| a.kind);
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
        let mut fs = ForgetFs::new();
        let file = |data: &[u8], durable: &[u8]| Kind::File {
            data: data.to_vec(),
            durable: durable.to_vec(),
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
    }
}
