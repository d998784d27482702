//! Reading and writing disks and disk images: a [`Disk`] is a block device or a regular file, read and
//! written at offsets; zero ranges go out as discard / punch-hole / zero-out instead of written zeros.
//! A leaf: it knows nothing of chunks or manifests ([`crate::restore`] writes an image onto a disk).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

// Linux <linux/fs.h> block-device ioctls (not exported by the libc crate).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272; // _IOR(0x12, 114, size_t)
const BLKZEROOUT: libc::c_ulong = 0x127f; // _IO(0x12, 127): range write-zeroes, uses the device's offload

/// A disk I/O error, naming the device or file, the step and the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// An I/O error.
    #[error("{path}: {op} at offset {offset}: {source}")]
    Io {
        /// Device or file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// Byte offset.
        offset: u64,
        /// The error.
        source: std::io::Error,
    },
    /// The device or file ended before the expected size: it was truncated, shrunk or detached.
    #[error(
        "{path}: ended at byte {got} while reading {wanted} bytes at offset {offset}: the source changed or vanished during the read"
    )]
    Vanished {
        /// Device or file.
        path: PathBuf,
        /// Offset of the read.
        offset: u64,
        /// Bytes asked for.
        wanted: u64,
        /// Offset where the data ended.
        got: u64,
    },
    /// Neither a block device nor a regular file.
    #[error("{0}: not a block device or a regular file")]
    NotADisk(PathBuf),
}

/// An open block device or disk image file.
#[derive(Debug)]
pub struct Disk {
    file: File,
    path: PathBuf,
    size: u64,
    block_device: bool,
}

impl Disk {
    /// Opens `path` for reading.
    pub fn open_read(path: &Path) -> Result<Self, DiskError> {
        let file = File::open(path).map_err(|source| DiskError::Io {
            path: path.to_path_buf(),
            op: "opening",
            offset: 0,
            source,
        })?;
        Self::from_file(file, path)
    }

    /// Opens `path` for reading and writing. A path that does not exist becomes a sparse file of
    /// `create_size` bytes (a disk image to restore into). A block device is opened with `O_EXCL`, which
    /// Linux refuses while the device is mounted or otherwise in use: nothing restores over a live
    /// filesystem.
    pub fn open_write(path: &Path, create_size: u64) -> Result<Self, DiskError> {
        let io = |op, source| DiskError::Io {
            path: path.to_path_buf(),
            op,
            offset: 0,
            source,
        };
        let is_block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if is_block {
            opts.custom_flags(libc::O_EXCL);
        }
        let file = match opts.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| io("creating", e))?;
                f.set_len(create_size).map_err(|e| io("sizing", e))?;
                f
            }
            Err(e) => return Err(io("opening for writing", e)),
        };
        Self::from_file(file, path)
    }

    fn from_file(file: File, path: &Path) -> Result<Self, DiskError> {
        let io = |op, source| DiskError::Io {
            path: path.to_path_buf(),
            op,
            offset: 0,
            source,
        };
        let ft = file.metadata().map_err(|e| io("stat", e))?.file_type();
        let (size, block_device) = if ft.is_block_device() {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which outlives the call.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size) };
            if r != 0 {
                return Err(io("BLKGETSIZE64", std::io::Error::last_os_error()));
            }
            (size, true)
        } else if ft.is_file() {
            (file.metadata().map_err(|e| io("stat", e))?.len(), false)
        } else {
            return Err(DiskError::NotADisk(path.to_path_buf()));
        };
        Ok(Disk {
            file,
            path: path.to_path_buf(),
            size,
            block_device,
        })
    }

    /// Size in bytes (at open).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for a block device.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// For an image file, the offset of the first byte at or after `offset` that may hold data (holes
    /// read as zeros and need not be read at all); `None` past the last data. Block devices and
    /// filesystems without SEEK_DATA answer `offset` itself: everything may be data.
    pub fn next_data(&self, offset: u64) -> Option<u64> {
        if self.block_device {
            return Some(offset);
        }
        // SAFETY: lseek on an fd we own. The file offset it moves is unused: all I/O is positional.
        let r = unsafe {
            libc::lseek(
                self.file.as_raw_fd(),
                offset as libc::off_t,
                libc::SEEK_DATA,
            )
        };
        if r >= 0 {
            Some(r as u64)
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
            None
        } else {
            Some(offset)
        }
    }

    /// Checks that the first `end` bytes still exist: a hole skipped via [`Disk::next_data`] must not
    /// hide a file that shrank since it was opened.
    pub fn check_still_covers(&self, offset: u64, end: u64) -> Result<(), DiskError> {
        if self.block_device {
            return Ok(());
        }
        let len = self
            .file
            .metadata()
            .map_err(|source| DiskError::Io {
                path: self.path.clone(),
                op: "stat",
                offset,
                source,
            })?
            .len();
        if len < end {
            return Err(DiskError::Vanished {
                path: self.path.clone(),
                offset,
                wanted: end - offset,
                got: len.max(offset),
            });
        }
        Ok(())
    }

    /// Fills `buf` from `offset`. A source that ends early (truncated file, detached device) is
    /// [`DiskError::Vanished`], never a silently short chunk.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let mut done = 0usize;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    return Err(DiskError::Vanished {
                        path: self.path.clone(),
                        offset,
                        wanted: buf.len() as u64,
                        got: offset + done as u64,
                    });
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(DiskError::Io {
                        path: self.path.clone(),
                        op: "reading",
                        offset: offset + done as u64,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| DiskError::Io {
                path: self.path.clone(),
                op: "writing",
                offset,
                source,
            })
    }

    /// Makes `len` bytes at `offset` read as zeros without writing them where the device or
    /// filesystem can: punch-hole (files, and block devices since Linux 4.9), then BLKZEROOUT (block
    /// devices, uses write-zeroes/discard offload), then plain zero writes.
    pub fn zero_range(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        let fd = self.file.as_raw_fd();
        // SAFETY: plain syscall on an fd we own; no pointers.
        let r = unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        if self.block_device {
            let range: [u64; 2] = [offset, len];
            // SAFETY: BLKZEROOUT reads two u64 from the pointer, which outlives the call.
            let r = unsafe { libc::ioctl(fd, BLKZEROOUT as _, range.as_ptr()) };
            if r == 0 {
                return Ok(());
            }
        }
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(ZEROS.len() as u64) as usize;
            self.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Asks the kernel to read a block device's partition table again (BLKRRPART), so that its
    /// partition nodes match what was written.
    pub fn reread_partitions(&self) -> Result<(), DiskError> {
        const BLKRRPART: libc::c_ulong = 0x125f;
        // SAFETY: BLKRRPART takes no argument.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKRRPART as _) };
        if r == 0 {
            return Ok(());
        }
        Err(DiskError::Io {
            path: self.path.clone(),
            op: "re-reading the partition table",
            offset: 0,
            source: std::io::Error::last_os_error(),
        })
    }

    /// Flushes written data to stable storage.
    pub fn sync(&self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(|source| DiskError::Io {
            path: self.path.clone(),
            op: "syncing",
            offset: 0,
            source,
        })
    }
}
