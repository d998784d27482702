//! A PC whose disk is not the master's size (issue 23), on real file systems made by the real tools
//! (`roomcast_lab::dirty_disk`): GPT and MBR images restored onto larger, equal and smaller disks.
//! Every result passes `sgdisk -v`, its file systems check clean (`e2fsck -fn`, `ntfsfix
//! --no-action`, `fsck.vfat -n`) and hold the master's files; a grown last partition ends at the
//! disk's end with its file system filling it; a shrunk last partition (ext4 by resize2fs, NTFS by
//! ntfsresize on a view of its old size) ends at the last MiB boundary before the table's end; a
//! disk too small for the used bytes is refused with the bytes missing and the partition named,
//! and not one byte of it is written.

use super::util::{Fixture, label};
use roomcast_lab::dirty_disk::{self, DirtyDisk, DirtySpec, DiskPart, FsKind};
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::fit::FitOptions;
use roomcast_store::layout::table::{self, TableKind};
use roomcast_store::manifest::ImageId;
use roomcast_store::restore::{self, RestoreOptions, RestoreReport};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

/// ESP + NTFS + ext4 (ext4 last), lightly filled so that the ext4's end holds no file.
pub(crate) fn spec(ntfs_last: bool) -> DirtySpec {
    DirtySpec {
        esp: 36 * MIB,
        ntfs: 24 * MIB,
        ext4: if ntfs_last { 0 } else { 48 * MIB },
        swap: 0,
        unknown: 0,
        pagefile: 0,
        fill: 0.3,
        delete: 0.5,
        max_file: 256 * 1024,
        seed: 23,
    }
}

fn capture(fx: &Fixture, disk: &Path) -> ImageId {
    let opts = CaptureOptions {
        chunk_size: ChunkSize::new(MIB as u32).unwrap(),
        level: 3,
        workers: 2,
    };
    capture::capture(&fx.store, disk, label("m"), &fx.signer, &opts, &|_| {})
        .unwrap()
        .id
}

/// A target of `size` bytes full of 0x5a (an old disk's content).
fn old_disk(path: &Path, size: u64) {
    std::fs::write(path, vec![0x5a; size as usize]).unwrap();
}

fn restore_onto(
    fx: &Fixture,
    id: &ImageId,
    target: &Path,
    grow_last: bool,
) -> Result<RestoreReport, restore::RestoreError> {
    let m = fx.store.open_verified(id).unwrap();
    let opts = RestoreOptions {
        fit: FitOptions { grow_last },
        ..RestoreOptions::default()
    };
    restore::restore(&fx.store, &m, target, &opts, &|_| {})
}

/// `sgdisk -v` finds no problem.
pub(crate) fn sgdisk_clean(disk: &Path) {
    let out = Command::new("sgdisk").arg("-v").arg(disk).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v {}: {text}{}",
        disk.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The target's partitions as its own table says (GPT or MBR).
pub(crate) fn partitions(disk: &Path) -> table::Table {
    let f = std::fs::File::open(disk).unwrap();
    table::read(&f).unwrap()
}

/// Every file system of the master checks clean on `target` and holds the master's files; the
/// target's partitions are taken from its own table (a resized one has its new length).
pub(crate) fn assert_same_files(master: &DirtyDisk, target: &Path) {
    let t = partitions(target);
    for p in &master.parts {
        let on_target = t.partitions.iter().find(|q| q.number == p.number).unwrap();
        assert_eq!(on_target.start, p.start, "partition {} moved", p.number);
        let q = DiskPart {
            len: on_target.len,
            ..p.clone()
        };
        dirty_disk::fsck(target, &q).unwrap_or_else(|e| panic!("partition {}: {e}", p.number));
        let want = dirty_disk::tree(&master.path, p).unwrap();
        let got = dirty_disk::tree(target, &q).unwrap();
        assert_eq!(got, want, "partition {} ({:?})", p.number, p.fs);
    }
}

/// ext4 block count times block size, from `dumpe2fs -h`.
fn ext4_bytes(disk: &Path, start: u64) -> u64 {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(format!("{}?offset={start}", disk.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("{name} not in dumpe2fs: {text}"))
    };
    field("Block count:") * field("Block size:")
}

fn sha(path: &Path) -> String {
    roomcast_store::chunk::ChunkHash::of(&std::fs::read(path).unwrap()).to_hex()
}

#[test]
fn gpt_image_onto_larger_equal_and_grown_disks() {
    let fx = Fixture::new();
    let master = dirty_disk::build(&fx.path("master.img"), &spec(false)).unwrap();
    let id = capture(&fx, &master.path);
    let ext = master.part(FsKind::Ext4).unwrap().clone();

    // Equal size: nothing adjusted.
    let equal = fx.path("equal.img");
    old_disk(&equal, master.size);
    let r = restore_onto(&fx, &id, &equal, false).unwrap();
    assert!(r.adjusted.is_empty(), "{:?}", r.adjusted);
    sgdisk_clean(&equal);
    assert_same_files(&master, &equal);

    // Larger, not grown: the GPT follows the disk's end, the extra space stays unallocated.
    let larger = fx.path("larger.img");
    old_disk(&larger, master.size + 40 * MIB);
    let r = restore_onto(&fx, &id, &larger, false).unwrap();
    assert!(
        r.adjusted[0].starts_with("GPT rewritten"),
        "{:?}",
        r.adjusted
    );
    assert!(
        r.adjusted.iter().any(|a| a.contains("left unallocated")),
        "{:?}",
        r.adjusted
    );
    sgdisk_clean(&larger);
    assert_same_files(&master, &larger);
    let t = partitions(&larger);
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    let last = table::last_partition(&t).unwrap();
    assert_eq!(last.start + last.len, ext.start + ext.len);

    // Larger and grown: the last partition and its ext4 end at the disk's end (the last MiB
    // boundary before the backup GPT).
    let grown = fx.path("grown.img");
    old_disk(&grown, master.size + 40 * MIB);
    let r = restore_onto(&fx, &id, &grown, true).unwrap();
    assert!(
        r.adjusted.iter().any(|a| a.contains("grown")),
        "{:?}",
        r.adjusted
    );
    sgdisk_clean(&grown);
    assert_same_files(&master, &grown);
    let t = partitions(&grown);
    let last = table::last_partition(&t).unwrap();
    let usable = table::usable_end(
        &std::fs::File::open(&grown).unwrap(),
        master.size + 40 * MIB,
    )
    .unwrap();
    assert_eq!(last.start + last.len, usable / MIB * MIB);
    assert!(last.len >= ext.len + 39 * MIB, "{last:?}");
    assert_eq!(ext4_bytes(&grown, last.start), last.len);

    // The same restore again is a delta: the file systems stay clean.
    restore_onto(&fx, &id, &grown, true).unwrap();
    sgdisk_clean(&grown);
    assert_same_files(&master, &grown);
}

#[test]
fn gpt_image_onto_a_smaller_disk_shrinks_ext4_or_is_refused_untouched() {
    let fx = Fixture::new();
    let master = dirty_disk::build(&fx.path("master.img"), &spec(false)).unwrap();
    let id = capture(&fx, &master.path);
    let ext = master.part(FsKind::Ext4).unwrap().clone();

    // 12 MiB smaller: the ext4's last groups hold no file, it is shrunk to fit.
    let smaller = fx.path("smaller.img");
    let size = master.size - 12 * MIB;
    old_disk(&smaller, size);
    let r = restore_onto(&fx, &id, &smaller, false).unwrap();
    assert!(
        r.adjusted.iter().any(|a| a.contains("shrunk")),
        "{:?}",
        r.adjusted
    );
    assert_eq!(std::fs::metadata(&smaller).unwrap().len(), size);
    sgdisk_clean(&smaller);
    assert_same_files(&master, &smaller);
    let t = partitions(&smaller);
    let last = table::last_partition(&t).unwrap();
    assert!(last.len < ext.len);
    assert!(ext4_bytes(&smaller, last.start) <= last.len);

    // Far too small: the ext4's files lie beyond; refused naming it, nothing written.
    let tiny = fx.path("tiny.img");
    let size = ext.start + 2 * MIB;
    old_disk(&tiny, size);
    let before = sha(&tiny);
    let e = restore_onto(&fx, &id, &tiny, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bytes missing")
            && e.contains("partition 3 (ext4)")
            && e.contains("nothing was written"),
        "{e}"
    );
    assert_eq!(sha(&tiny), before, "a refused target was written");
    assert_eq!(std::fs::metadata(&tiny).unwrap().len(), size);
}

#[test]
fn ntfs_last_partition_grows() {
    let fx = Fixture::new();
    let master = dirty_disk::build(&fx.path("master.img"), &spec(true)).unwrap();
    let id = capture(&fx, &master.path);
    let ntfs = master.part(FsKind::Ntfs).unwrap().clone();

    let grown = fx.path("grown.img");
    old_disk(&grown, master.size + 24 * MIB);
    let r = restore_onto(&fx, &id, &grown, true).unwrap();
    assert!(
        r.adjusted
            .iter()
            .any(|a| a.contains("(ntfs) and its file system grown")),
        "{:?}",
        r.adjusted
    );
    sgdisk_clean(&grown);
    assert_same_files(&master, &grown);
    let last = table::last_partition(&partitions(&grown)).unwrap().clone();
    assert!(last.len >= ntfs.len + 23 * MIB, "{last:?}");
}

/// A Windows disk (ESP, MSR, NTFS last) as Windows Setup lays one out, for the smaller-disk tests;
/// its NTFS compacted into its first 24 MiB (of 48), so that its last 24 MiB hold no used cluster.
pub(crate) fn windows_master(path: &Path) -> DirtyDisk {
    let disk = dirty_disk::build_windows(path, "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE").unwrap();
    let ntfs = disk.part(FsKind::Ntfs).unwrap().clone();
    dirty_disk::compact_ntfs(&disk.path, &ntfs, 24 * MIB).unwrap();
    disk
}

/// The NTFS last partition of `disk` (of `size` bytes) was shrunk by ntfsresize to end at the last
/// MiB boundary before the GPT's backup, and the NTFS tools read it: `ntfsresize --info` (which
/// checks the cluster accounting against the MFT), `ntfsinfo -m`; its backup boot sector, at the
/// partition's last sector, is its boot sector; the volume fits the partition.
pub(crate) fn assert_ntfs_shrunk(master: &DirtyDisk, disk: &Path, size: u64) {
    let old = master.part(FsKind::Ntfs).unwrap();
    let last = table::last_partition(&partitions(disk)).unwrap().clone();
    assert_eq!(last.number, old.number);
    assert!(last.len < old.len, "{last:?} not shrunk from {old:?}");
    // GPT: the last usable sector is 34 sectors before the end; the partition ends at the last
    // MiB boundary before it.
    let usable = size - 33 * 512;
    assert_eq!(last.start + last.len, usable / MIB * MIB, "{last:?}");
    let q = DiskPart {
        len: last.len,
        ..old.clone()
    };
    let img = disk.with_extension("ntfs-part");
    dirty_disk::extract(disk, &q, &img).unwrap();
    let out = super::util::run(
        Command::new("ntfsresize")
            .args(["--info", "--force", "--no-action"])
            .arg(&img),
    );
    assert!(out.contains("Current volume size"), "{out}");
    let info = super::util::run(Command::new("ntfsinfo").args(["-m", "-f"]).arg(&img));
    let bytes = std::fs::read(&img).unwrap();
    std::fs::remove_file(&img).unwrap();
    assert!(info.contains("Volume Name"), "{info}");
    let n = bytes.len();
    assert_eq!(&bytes[3..11], b"NTFS    ");
    assert_eq!(
        &bytes[..512],
        &bytes[n - 512..],
        "the backup boot sector at the partition's last sector"
    );
    let sectors = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap());
    assert!(sectors * 512 < last.len, "{sectors} sectors in {last:?}");
}

/// The refusal's "at least N bytes".
pub(crate) fn needed(refusal: &str) -> u64 {
    refusal
        .split("must hold at least ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {refusal}"))
}

#[test]
fn windows_disk_onto_a_smaller_disk_has_its_ntfs_shrunk_or_is_refused_untouched() {
    let fx = Fixture::new();
    let master = windows_master(&fx.path("master.img"));
    let id = capture(&fx, &master.path);
    let ntfs = master.part(FsKind::Ntfs).unwrap().clone();
    assert_eq!(ntfs.number, 3);

    // 12 MiB smaller: ntfsresize shrinks the NTFS on a view of its old size.
    let smaller = fx.path("smaller.img");
    let size = master.size - 12 * MIB;
    old_disk(&smaller, size);
    let r = restore_onto(&fx, &id, &smaller, false).unwrap();
    assert!(
        r.adjusted
            .iter()
            .any(|a| a.contains("partition 3 (ntfs) and its file system shrunk")),
        "{:?}",
        r.adjusted
    );
    assert_eq!(std::fs::metadata(&smaller).unwrap().len(), size);
    sgdisk_clean(&smaller);
    assert_same_files(&master, &smaller);
    assert_ntfs_shrunk(&master, &smaller, size);

    // Too small: the NTFS's used clusters lie beyond; refused naming it, nothing written.
    let tiny = fx.path("tiny.img");
    let size = ntfs.start + 4 * MIB;
    old_disk(&tiny, size);
    let before = sha(&tiny);
    let e = restore_onto(&fx, &id, &tiny, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bytes missing")
            && e.contains("partition 3 (ntfs)")
            && e.contains("nothing was written"),
        "{e}"
    );
    assert_eq!(sha(&tiny), before, "a refused target was written");
    assert_eq!(std::fs::metadata(&tiny).unwrap().len(), size);

    // The size the refusal asks for is enough, exactly.
    let need = needed(&e);
    assert!(need < master.size, "{e}");
    let just = fx.path("just.img");
    old_disk(&just, need);
    restore_onto(&fx, &id, &just, false).unwrap();
    sgdisk_clean(&just);
    assert_same_files(&master, &just);
    assert_ntfs_shrunk(&master, &just, need);
    let short = fx.path("short.img");
    old_disk(&short, need - MIB);
    let e = restore_onto(&fx, &id, &short, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bytes missing"), "{e}");
}

/// Onto a block device, the NTFS is shrunk on a device-mapper view (linear + zero); a kernel
/// without device-mapper makes it a refusal before any write, naming what is missing.
#[test]
fn windows_disk_onto_a_smaller_block_device() {
    let fx = Fixture::new();
    let master = windows_master(&fx.path("master.img"));
    let id = capture(&fx, &master.path);
    let file = fx.path("smaller.img");
    let size = master.size - 12 * MIB;
    old_disk(&file, size);
    let before = sha(&file);
    let dev = super::util::LoopDev::attach(&file);
    let dm = std::fs::read_to_string("/proc/misc")
        .unwrap()
        .contains(" device-mapper");
    let r = restore_onto(&fx, &id, &dev.dev, false);
    drop(dev);
    if dm {
        let r = r.unwrap();
        assert!(r.adjusted.iter().any(|a| a.contains("shrunk")), "{r:?}");
        sgdisk_clean(&file);
        assert_same_files(&master, &file);
        assert_ntfs_shrunk(&master, &file, size);
        let left = super::util::run(Command::new("dmsetup").arg("ls"));
        assert!(!left.contains("roomcast-fit"), "{left}");
    } else {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("partition 3 (ntfs) cannot shrink") && e.contains("device-mapper"),
            "{e}"
        );
        assert_eq!(sha(&file), before, "a refused target was written");
    }
}

#[test]
fn mbr_image_onto_larger_and_smaller_disks() {
    let fx = Fixture::new();
    let master = dirty_disk::build(&fx.path("master.img"), &spec(false)).unwrap();
    // The same disk with an MBR instead of the GPT (sgdisk converts, partitions unmoved).
    super::util::run(
        Command::new("sgdisk")
            .arg("--gpttombr=1:2:3")
            .arg(&master.path),
    );
    assert_eq!(partitions(&master.path).kind, TableKind::Mbr);
    let id = capture(&fx, &master.path);

    let larger = fx.path("larger.img");
    old_disk(&larger, master.size + 16 * MIB);
    let r = restore_onto(&fx, &id, &larger, false).unwrap();
    assert!(
        r.adjusted.iter().all(|a| !a.starts_with("GPT")),
        "{:?}",
        r.adjusted
    );
    sgdisk_clean(&larger);
    assert_same_files(&master, &larger);

    let grown = fx.path("grown.img");
    old_disk(&grown, master.size + 16 * MIB);
    restore_onto(&fx, &id, &grown, true).unwrap();
    sgdisk_clean(&grown);
    assert_same_files(&master, &grown);
    let last = table::last_partition(&partitions(&grown)).unwrap().clone();
    // The MBR's last partition ends at the last MiB boundary leaving 33 sectors free at the end.
    assert_eq!(last.start + last.len, master.size + 15 * MIB);

    let smaller = fx.path("smaller.img");
    old_disk(&smaller, master.size - 12 * MIB);
    restore_onto(&fx, &id, &smaller, false).unwrap();
    sgdisk_clean(&smaller);
    assert_same_files(&master, &smaller);
}

/// Onto a real block device (a loop device, whose partitions the kernel does not scan): the table
/// is fitted and the ext4 grown through e2fsprogs' `?offset=` on the device; a smaller device gets
/// its ext4 shrunk the same way.
#[test]
fn block_devices_larger_and_smaller_than_the_image() {
    let fx = Fixture::new();
    let master = dirty_disk::build(&fx.path("master.img"), &spec(false)).unwrap();
    let id = capture(&fx, &master.path);
    for (name, size, grow) in [
        ("larger", master.size + 24 * MIB, true),
        ("smaller", master.size - 12 * MIB, false),
    ] {
        let file = fx.path(&format!("{name}.img"));
        old_disk(&file, size);
        let dev = super::util::LoopDev::attach(&file);
        let r = restore_onto(&fx, &id, &dev.dev, grow).unwrap();
        let want = if grow { "grown" } else { "shrunk" };
        assert!(r.adjusted.iter().any(|a| a.contains(want)), "{name}: {r:?}");
        drop(dev);
        sgdisk_clean(&file);
        assert_same_files(&master, &file);
    }
}
