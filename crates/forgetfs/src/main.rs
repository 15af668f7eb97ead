//! `forgetfs MOUNTPOINT`: mounts a filesystem that forgets what was not
//! fsynced when `MOUNTPOINT/.forgetfs-power-cut` is written to, and serves
//! it until unmounted (`fusermount3 -u MOUNTPOINT`).

use fuser::MountOption;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mountpoint] = &args[..] else {
        eprintln!("usage: forgetfs MOUNTPOINT");
        std::process::exit(2);
    };
    let opts = [
        MountOption::FSName("forgetfs".into()),
        MountOption::DefaultPermissions,
    ];
    if let Err(e) = fuser::mount2(forgetfs::ForgetFs::new(), mountpoint, &opts) {
        eprintln!("forgetfs: cannot mount {mountpoint}: {e}");
        std::process::exit(1);
    }
}
