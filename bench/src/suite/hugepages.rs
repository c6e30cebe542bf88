//! Hugepages for the DPDK peers of `sluice-bench peers` (`dpdk-test-acl`,
//! `dpdk-testpmd`): at least `pages` 2 MiB pages reserved and a hugetlbfs
//! mounted, set up only where missing and put back as they were when the
//! guard is dropped (the reservation restored, a mount made here unmounted,
//! a directory made here removed).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The 2 MiB reservation of the running kernel.
pub const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
/// Where a hugetlbfs is mounted when there is none.
pub const MOUNT_POINT: &str = "/dev/hugepages";

/// What [`Hugepages::ensure`] changed, undone on drop.
#[derive(Debug, Default)]
pub struct Hugepages {
    /// The reservation file and its value before, when raised here.
    raised: Option<(PathBuf, u64)>,
    /// A mount made here.
    mounted: Option<PathBuf>,
    /// A mount point directory made here.
    made_dir: Option<PathBuf>,
}

fn read_pages(path: &Path) -> Result<u64> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    s.trim()
        .parse()
        .with_context(|| format!("{}: not a number: {s:?}", path.display()))
}

/// Is a hugetlbfs mounted anywhere (a line of `/proc/mounts`)?
pub fn hugetlbfs_mounted(mounts: &str) -> bool {
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
}

impl Hugepages {
    /// At least `pages` pages reserved through `nr_path` (a
    /// `nr_hugepages` file). Raises the reservation when it is lower and
    /// fails, after putting it back, when the kernel reserves fewer.
    pub fn reserve(pages: u64, nr_path: &Path) -> Result<Hugepages> {
        let mut g = Hugepages::default();
        let before = read_pages(nr_path)?;
        if before >= pages {
            return Ok(g);
        }
        std::fs::write(nr_path, format!("{pages}\n")).with_context(|| {
            format!(
                "setting {} to {pages} (hugepages for the DPDK peers; needs root)",
                nr_path.display()
            )
        })?;
        g.raised = Some((nr_path.to_path_buf(), before));
        let now = read_pages(nr_path)?;
        if now < pages {
            bail!(
                "{}: asked for {pages} hugepages, the kernel reserved {now} (memory too fragmented?)",
                nr_path.display()
            );
        }
        Ok(g)
    }

    /// The real thing: `pages` reserved in [`NR_HUGEPAGES`] and a
    /// hugetlbfs mounted (on [`MOUNT_POINT`] when none is).
    pub fn ensure(pages: u64) -> Result<Hugepages> {
        let mut g = Hugepages::reserve(pages, Path::new(NR_HUGEPAGES))?;
        let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
        if !hugetlbfs_mounted(&mounts) {
            let dir = PathBuf::from(MOUNT_POINT);
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                g.made_dir = Some(dir.clone());
            }
            let o = Command::new("mount")
                .args(["-t", "hugetlbfs", "nodev"])
                .arg(&dir)
                .output()
                .context("running mount")?;
            if !o.status.success() {
                bail!(
                    "mount -t hugetlbfs nodev {}: {}",
                    dir.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            g.mounted = Some(dir);
        }
        if g.raised.is_some() || g.mounted.is_some() {
            eprintln!("hugepages: {}", g.describe());
        }
        Ok(g)
    }

    /// What was set up here.
    pub fn describe(&self) -> String {
        let mut v = Vec::new();
        if let Some((p, b)) = &self.raised {
            v.push(format!("{} raised from {b}", p.display()));
        }
        if let Some(m) = &self.mounted {
            v.push(format!("hugetlbfs mounted on {}", m.display()));
        }
        if v.is_empty() {
            "already set up".into()
        } else {
            v.join(", ")
        }
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            match Command::new("umount").arg(&m).status() {
                Ok(s) if s.success() => {}
                r => eprintln!("hugepages: umount {} failed: {r:?}", m.display()),
            }
        }
        if let Some(d) = self.made_dir.take() {
            let _ = std::fs::remove_dir(&d);
        }
        if let Some((p, before)) = self.raised.take() {
            if let Err(e) = std::fs::write(&p, format!("{before}\n")) {
                eprintln!("hugepages: restoring {} to {before}: {e}", p.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(v: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("sluice-hugepages-{}-{v}", std::process::id()));
        std::fs::write(&p, format!("{v}\n")).unwrap();
        p
    }

    #[test]
    fn raises_and_restores() {
        let p = file("0");
        {
            let g = Hugepages::reserve(512, &p).unwrap();
            assert_eq!(read_pages(&p).unwrap(), 512);
            assert!(g.describe().contains("raised from 0"), "{}", g.describe());
        }
        assert_eq!(read_pages(&p).unwrap(), 0);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn leaves_enough_alone() {
        let p = file("2048");
        {
            let g = Hugepages::reserve(512, &p).unwrap();
            assert_eq!(g.describe(), "already set up");
            std::fs::write(&p, "3000\n").unwrap();
        }
        // Not raised here, so not restored either.
        assert_eq!(read_pages(&p).unwrap(), 3000);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn mounts_parsed() {
        assert!(hugetlbfs_mounted(
            "proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n"
        ));
        assert!(!hugetlbfs_mounted("proc /proc proc rw 0 0\n"));
    }
}
