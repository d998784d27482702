//! No reader panics on any bytes: random buffers, and real images (GPT + FAT12 + ext4 + swap, MBR
//! with logical partitions) with random bytes changed and random truncations.

use crate::util::{have, put_at, random_file, run};
use proptest::prelude::*;
use roomcast_layout::{ReadAt, ext, fat, read_layout, swap, table};
use std::sync::OnceLock;

const MIB: u64 = 1 << 20;

/// Every reader on `bytes`; only panics matter, errors are fine.
fn read_all(disk: &dyn ReadAt) {
    let _ = table::read(disk);
    let _ = read_layout(disk);
    let _ = ext::probe(disk);
    let _ = fat::probe(disk);
    let _ = swap::probe(disk);
    let _ = roomcast_layout::probe_fs(
        disk,
        &roomcast_layout::PartitionType::Mbr {
            type_byte: 0x83,
            logical: false,
        },
    );
}

/// Real images made once: a GPT disk holding FAT12, ext4 and swap, and an MBR disk with an
/// extended partition; empty when the tools are missing.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        if !have(&["sgdisk", "sfdisk", "mkfs.vfat", "mkfs.ext4", "mkswap"]) {
            return Vec::new();
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let img = d.join("gpt.img");
        random_file(&img, 8 * MIB, 1);
        run(
            "sgdisk",
            &[
                "-n",
                "1:2048:+2M",
                "-t",
                "1:ef00",
                "-n",
                "2:0:+3M",
                "-n",
                "3:0:+1M",
                "-t",
                "3:8200",
                img.to_str().unwrap(),
            ],
        );
        let (fatp, extp, swp) = (d.join("fat"), d.join("ext"), d.join("swap"));
        random_file(&fatp, 2 * MIB, 2);
        run("mkfs.vfat", &["-F", "12", fatp.to_str().unwrap()]);
        random_file(&extp, 3 * MIB, 3);
        run(
            "mkfs.ext4",
            &["-q", "-F", "-E", "nodiscard", extp.to_str().unwrap()],
        );
        random_file(&swp, MIB, 4);
        run("mkswap", &[swp.to_str().unwrap()]);
        put_at(&img, &fatp, MIB);
        put_at(&img, &extp, 3 * MIB);
        put_at(&img, &swp, 6 * MIB);
        let mbr = d.join("mbr.img");
        std::fs::File::create(&mbr)
            .unwrap()
            .set_len(4 * MIB)
            .unwrap();
        let mut child = std::process::Command::new("sfdisk")
            .args(["-q", mbr.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: dos\n,1M,c\n,,E\n,1M,83\n,,82\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
        put_at(&mbr, &fatp, MIB);
        vec![
            std::fs::read(&img).unwrap(),
            std::fs::read(&mbr).unwrap(),
            std::fs::read(&fatp).unwrap(),
            std::fs::read(&extp).unwrap(),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..70_000)) {
        read_all(&bytes);
    }

    #[test]
    fn damaged_real_images_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((0u64..1 << 16, any::<u8>(), any::<bool>()), 1..24),
        cut in proptest::option::of(0.0f64..1.0),
    ) {
        let seeds = seeds();
        if seeds.is_empty() {
            return Ok(());
        }
        let mut img = seeds[which].clone();
        let len = img.len() as u64;
        for (off, byte, far) in edits {
            // Near the start (tables, boot sectors, superblocks) or anywhere (bitmaps, FATs, GPT backup).
            let at = if far { off * 131 % len } else { off % len };
            img[at as usize] = byte;
        }
        if let Some(c) = cut {
            img.truncate((c * len as f64) as usize);
        }
        read_all(&img);
    }
}

/// Header fields of a GPT header (offset, width): header size, my LBA, alternate, first and last
/// usable, entries LBA, number and size of entries, entries CRC.
const GPT_FIELDS: [(usize, usize); 9] = [
    (12, 4),
    (24, 8),
    (32, 8),
    (40, 8),
    (48, 8),
    (72, 8),
    (80, 4),
    (84, 4),
    (88, 4),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Wild values in a GPT whose CRCs are made right again, so the checks behind the CRCs run.
    #[test]
    fn gpt_with_wild_fields_and_good_crcs_never_panics(
        fields in proptest::collection::vec(
            (0usize..9, prop_oneof![any::<u64>(), 0u64..20_000]), 1..5),
        entries in proptest::collection::vec((0usize..640, any::<u8>()), 0..16),
        backup in any::<bool>(),
    ) {
        let seeds = seeds();
        if seeds.is_empty() {
            return Ok(());
        }
        let mut img = seeds[0].clone();
        let len = img.len();
        let (hdr, ents) = if backup { (len - 512, len - 512 - 32 * 512) } else { (512, 1024) };
        for (i, b) in entries {
            img[ents + i] = b;
        }
        let crc = crc32fast::hash(&img[ents..ents + 128 * 128]);
        img[hdr + 88..hdr + 92].copy_from_slice(&crc.to_le_bytes());
        for (f, v) in fields {
            let (off, width) = GPT_FIELDS[f];
            img[hdr + off..hdr + off + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        let size = (u32::from_le_bytes(img[hdr + 12..hdr + 16].try_into().unwrap()) as usize).clamp(92, 512);
        img[hdr + 16..hdr + 20].fill(0);
        let crc = crc32fast::hash(&img[hdr..hdr + size]);
        img[hdr + 16..hdr + 20].copy_from_slice(&crc.to_le_bytes());
        read_all(&img);
        let _ = table::gpt_resize_patches(&img, 16 * MIB);
        let _ = table::gpt_resize_patches(&img, 4 * MIB);
        let _ = table::last_partition_end(&img);
    }
}
