//! The rows that wait for the disk: a 4 KiB read that must come from the device (past
//! the page cache), and a 4 KiB write made durable with `fsync`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Row, measure, per_op};

/// A scratch file for the disk rows, removed when dropped.
pub(crate) struct Scratch {
    path: PathBuf,
    ready: Result<(), String>,
}

const FILE_BYTES: u64 = 64 << 20;
const BLOCK: usize = 4096;

impl Scratch {
    pub(crate) fn new(dir: &Path) -> Scratch {
        let path = dir.join(format!(".latency-scratch-{}", std::process::id()));
        let ready = Scratch::fill(&path).map_err(|e| format!("{}: {e}", path.display()));
        Scratch { path, ready }
    }

    /// 64 MiB of bytes that no file system can compress or deduplicate, on the disk.
    fn fill(path: &Path) -> std::io::Result<()> {
        let mut file = File::create(path)?;
        let mut block = vec![0u8; 1 << 20];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..FILE_BYTES >> 20 {
            for chunk in block.chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                chunk.copy_from_slice(&rng.to_le_bytes());
            }
            file.write_all(&block)?;
        }
        file.sync_all()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A 4 KiB-aligned buffer, as `O_DIRECT` wants.
struct Aligned(Box<[u8]>, usize);

impl Aligned {
    fn new() -> Aligned {
        let storage = vec![0u8; BLOCK * 2].into_boxed_slice();
        let offset = storage.as_ptr().align_offset(BLOCK);
        Aligned(storage, offset)
    }

    fn block(&mut self) -> &mut [u8] {
        &mut self.0[self.1..self.1 + BLOCK]
    }
}

/// A 4 KiB read at a random offset, from a file whose pages are not in the page cache.
pub(crate) fn uncached_read(scratch: &Scratch, runs: usize) -> Row {
    const READS: u64 = 200;
    let mut row = Row {
        name: "4 KiB read, not in cache".into(),
        how: String::new(),
        article: Some(("SSD random read", "1.7 days")),
        ns: Err(String::new()),
    };
    if let Err(error) = &scratch.ready {
        row.how = format!("could not write the scratch file: {error}");
        row.ns = Err(row.how.clone());
        return row;
    }
    let (file, how, mut evict) = match open_uncached(&scratch.path) {
        Ok(opened) => opened,
        Err(why) => {
            row.how = why.clone();
            row.ns = Err(why);
            return row;
        }
    };
    let mut buffer = Aligned::new();
    let mut rng = 0x1234_5678_9ABC_DEF1u64;
    row.how = how;
    row.ns = measure(runs, || {
        let mut total = Duration::ZERO;
        for _ in 0..READS {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let offset = (rng % (FILE_BYTES / BLOCK as u64)) * BLOCK as u64;
            evict(&file)?; // outside the timed part
            let start = Instant::now();
            read_at(&file, buffer.block(), offset).map_err(|e| format!("read: {e}"))?;
            total += start.elapsed();
        }
        Ok(per_op(total, READS))
    });
    row
}

type Evict = Box<dyn FnMut(&File) -> Result<(), String>>;

#[cfg(target_os = "linux")]
fn open_uncached(path: &Path) -> Result<(File, String, Evict), String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    // O_DIRECT: the read goes to the device, past the page cache.
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => {
            let no_op: Evict = Box::new(|_| Ok(()));
            Ok((
                file,
                "pread of 4 KiB at a random 4 KiB-aligned offset of a 64 MiB file opened with \
                 O_DIRECT"
                    .into(),
                no_op,
            ))
        }
        // Some file systems (tmpfs, some overlays) refuse O_DIRECT: drop the file's pages
        // from the cache before every read instead.
        Err(direct) => {
            let file = File::open(path).map_err(|e| format!("open: {e}"))?;
            let fd = file.as_raw_fd();
            // SAFETY: fd is open for as long as `file` lives; advice has no memory effects.
            unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM) };
            let evict: Evict = Box::new(|file: &File| {
                // SAFETY: as above.
                let rc = unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(format!("posix_fadvise: error {rc}"))
                }
            });
            Ok((
                file,
                format!(
                    "O_DIRECT refused here ({direct}), so posix_fadvise(DONTNEED) before each \
                     read; on a RAM-backed file system (tmpfs) nothing can be evicted: use --dir"
                ),
                evict,
            ))
        }
    }
}

#[cfg(target_os = "macos")]
fn open_uncached(path: &Path) -> Result<(File, String, Evict), String> {
    use std::os::unix::io::AsRawFd;
    let file = File::open(path).map_err(|e| format!("open: {e}"))?;
    // SAFETY: fd is open; F_NOCACHE only changes how the kernel caches this file's reads.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_NOCACHE, 1) } == -1 {
        return Err(format!(
            "fcntl(F_NOCACHE) refused: {}",
            std::io::Error::last_os_error()
        ));
    }
    let no_op: Evict = Box::new(|_| Ok(()));
    Ok((
        file,
        "pread of 4 KiB at a random 4 KiB-aligned offset of a 64 MiB file with F_NOCACHE set"
            .into(),
        no_op,
    ))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn open_uncached(_path: &Path) -> Result<(File, String, Evict), String> {
    Err("no way to bypass the page cache on this OS is known to this program".into())
}

#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(not(unix))]
fn read_at(_file: &File, _buffer: &mut [u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("not on this OS"))
}

/// Overwrite 4 KiB and make it durable: `fsync` (macOS: `F_FULLFSYNC`, since its
/// `fsync` does not ask the drive to flush its own cache).
pub(crate) fn fsync(scratch: &Scratch, runs: usize) -> Row {
    const SYNCS: u64 = 20;
    let how = if cfg!(target_os = "macos") {
        "write 4 KiB over the start of the file, then fcntl(F_FULLFSYNC): macOS's fsync \
         stops at the drive's cache"
    } else {
        "write 4 KiB over the start of the file, then fsync"
    };
    let mut row = Row {
        name: "write 4 KiB + fsync".into(),
        how: how.into(),
        article: None,
        ns: Err(String::new()),
    };
    if let Err(error) = &scratch.ready {
        row.ns = Err(format!("could not write the scratch file: {error}"));
        return row;
    }
    let file = match OpenOptions::new().write(true).open(&scratch.path) {
        Ok(file) => file,
        Err(error) => {
            row.ns = Err(format!("open: {error}"));
            return row;
        }
    };
    let block = vec![0x5Au8; BLOCK];
    row.ns = measure(runs, || {
        let start = Instant::now();
        for _ in 0..SYNCS {
            write_at(&file, &block, 0).map_err(|e| format!("write: {e}"))?;
            full_sync(&file).map_err(|e| format!("fsync: {e}"))?;
        }
        Ok(per_op(start.elapsed(), SYNCS))
    });
    row
}

#[cfg(unix)]
fn write_at(file: &File, block: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, block, offset)
}

#[cfg(not(unix))]
fn write_at(_file: &File, _block: &[u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("not on this OS"))
}

#[cfg(target_os = "macos")]
fn full_sync(file: &File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: fd is open for the call; F_FULLFSYNC takes no argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_FULLFSYNC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "macos"))]
fn full_sync(file: &File) -> std::io::Result<()> {
    file.sync_data()
}
