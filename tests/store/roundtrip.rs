//! Acceptance: capture -> restore is bit-identical, also onto a disk holding another image, and a
//! delta restore writes only the chunks that differ.

use super::util::{Fixture, sparse_disk};
use proptest::prelude::*;

const CHUNK: u64 = 64 * 1024;

fn extents() -> impl Strategy<Value = Vec<(u64, usize, u64)>> {
    prop::collection::vec((0u64..3 * 1024 * 1024, 1usize..200_000, any::<u64>()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn capture_restore_is_bit_identical_for_random_sparse_disks(
        size_a in 1u64..3 * 1024 * 1024,
        size_b in 1u64..3 * 1024 * 1024,
        ext_a in extents(),
        ext_b in extents(),
    ) {
        let fx = Fixture::new();
        let (a, b) = (fx.path("a.img"), fx.path("b.img"));
        sparse_disk(&a, size_a, &ext_a);
        sparse_disk(&b, size_b, &ext_b);
        let ra = fx.capture(&a);
        let rb = fx.capture(&b);
        prop_assert_eq!(ra.chunks, size_a.div_ceil(CHUNK));

        // Fresh file target.
        let fresh = fx.path("fresh.img");
        fx.restore(&rb.id, &fresh).unwrap();
        prop_assert!(std::fs::read(&fresh).unwrap() == std::fs::read(&b).unwrap());

        // A disk holding image A (as big as the larger of the two), then B restored over it.
        let target = fx.path("target.img");
        std::fs::File::create(&target).unwrap().set_len(size_a.max(size_b)).unwrap();
        fx.restore(&ra.id, &target).unwrap();
        prop_assert!(std::fs::read(&target).unwrap()[..size_a as usize] == std::fs::read(&a).unwrap()[..]);
        let r = fx.restore(&rb.id, &target).unwrap();
        let got = std::fs::read(&target).unwrap();
        prop_assert!(got[..size_b as usize] == std::fs::read(&b).unwrap()[..]);
        prop_assert_eq!(r.chunks, r.unchanged_chunks + r.written_chunks + r.zeroed_chunks);

        // Restoring again changes nothing.
        let again = fx.restore(&rb.id, &target).unwrap();
        prop_assert_eq!(again.written_chunks + again.zeroed_chunks, 0);
    }
}

#[test]
fn delta_restore_writes_only_changed_chunks_and_dedups_in_the_store() {
    let fx = Fixture::new();
    let (v1, v2) = (fx.path("v1.img"), fx.path("v2.img"));
    let size = 4 * 1024 * 1024 + 1000;
    sparse_disk(&v1, size, &[(0, 600_000, 1), (2_000_000, 1_500_000, 2)]);
    std::fs::copy(&v1, &v2).unwrap();
    // v2 changes two chunks' worth of bytes in place and zeroes one chunk.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&v2).unwrap();
        f.write_all_at(b"changed", 70_000).unwrap();
        f.write_all_at(b"changed too", 2_100_000).unwrap();
        f.write_all_at(&vec![0u8; CHUNK as usize], 3 * CHUNK * 11)
            .unwrap();
    }
    let r1 = fx.capture(&v1);
    let r2 = fx.capture(&v2);
    assert_eq!(r2.new_chunks, 2, "{r2:?}");

    let m1 = fx.store.open_verified(&r1.id).unwrap();
    let m2 = fx.store.open_verified(&r2.id).unwrap();
    let d = roomcast_store::diff::diff(&m1, &m2);
    assert_eq!(d.changed_chunks, 3);
    assert_eq!(d.sent_chunks, 2);

    let target = fx.path("pc.img");
    fx.restore(&r1.id, &target).unwrap();
    let r = fx.restore(&r2.id, &target).unwrap();
    assert_eq!((r.written_chunks, r.zeroed_chunks), (2, 1), "{r:?}");
    assert_eq!(r.written_bytes + r.zeroed_bytes, d.changed_bytes);
    assert_eq!(std::fs::read(&target).unwrap(), std::fs::read(&v2).unwrap());
}

/// Issue 23 without a partition table nor a file-system map: a smaller target is accepted when no
/// non-zero byte of the image lies beyond its end, refused untouched otherwise.
#[test]
fn restore_onto_a_smaller_target_needs_every_non_zero_byte_to_fit() {
    let fx = Fixture::new();
    let src = fx.path("src.img");
    sparse_disk(&src, 1024 * 1024, &[(0, 1000, 3)]);
    let r = fx.capture(&src);
    let small = fx.path("small.img");
    std::fs::write(&small, vec![7u8; 1024 * 1024 - 512]).unwrap();
    fx.restore(&r.id, &small).unwrap();
    let got = std::fs::read(&small).unwrap();
    assert_eq!(got.len(), 1024 * 1024 - 512);
    assert_eq!(got[..], std::fs::read(&src).unwrap()[..got.len()]);

    let tiny = fx.path("tiny.img");
    std::fs::write(&tiny, vec![7u8; 512]).unwrap();
    let err = fx.restore(&r.id, &tiny).unwrap_err().to_string();
    assert!(
        err.contains("smaller than the image")
            && err.contains("512 bytes missing")
            && err.contains("outside every partition"),
        "{err}"
    );
    assert!(std::fs::read(&tiny).unwrap().iter().all(|&b| b == 7));
}

#[test]
fn verified_manifest_decodes_store_chunks_for_the_agent() {
    let fx = Fixture::new();
    let src = fx.path("src.img");
    sparse_disk(&src, 1 << 20, &[(70_000, 10_000, 8)]);
    let r = fx.capture(&src);
    let m = fx.store.open_verified(&r.id).unwrap();
    let env = m.envelope();
    let m2 = roomcast_store::manifest::UnverifiedManifest::from_envelope(&env)
        .unwrap()
        .verify(&fx.store.trusted().unwrap())
        .unwrap();
    let c = &m2.chunks[1];
    let z = fx.store.read_chunk_compressed(&c.sha256.unwrap()).unwrap();
    let data = m2.decode_chunk(1, &z).unwrap();
    assert_eq!(
        &data[70_000 - 65_536..][..10_000],
        &super::util::pattern(8, 10_000, true)[..]
    );
    let err = m2.decode_chunk(1, &z[..z.len() - 3]).unwrap_err();
    assert_eq!(err.chunk().index, 1);
}

/// Records the order in which restore fetches chunks.
struct Recording<'a> {
    store: &'a roomcast_store::Store,
    order: std::sync::Mutex<Vec<u64>>,
}

impl roomcast_store::restore::ChunkSource for Recording<'_> {
    fn compressed(
        &self,
        chunk: &roomcast_store::chunk::ChunkRef,
    ) -> Result<Vec<u8>, roomcast_store::StoreError> {
        self.order.lock().unwrap().push(chunk.index);
        self.store.read_chunk_compressed(&chunk.sha256)
    }
    fn location(&self, chunk: &roomcast_store::chunk::ChunkRef) -> std::path::PathBuf {
        self.store.chunk_path(&chunk.sha256)
    }
}

#[test]
fn partition_table_region_is_written_after_everything_else() {
    let fx = Fixture::new();
    let src = fx.path("gpt.img");
    let size = 6 << 20;
    // Data in every chunk, both ends included (where MBR/GPT live).
    sparse_disk(&src, size, &[(0, size as usize, 3)]);
    let r = fx.capture(&src);
    let m = fx.store.open_verified(&r.id).unwrap();
    let target = fx.path("t.img");
    std::fs::File::create(&target)
        .unwrap()
        .set_len(size)
        .unwrap();
    let disk = roomcast_store::disk::Disk::open_write(&target, size).unwrap();
    let rec = Recording {
        store: &fx.store,
        order: Default::default(),
    };
    let opts = roomcast_store::restore::RestoreOptions {
        workers: 2,
        ..Default::default()
    };
    roomcast_store::restore::restore_with(&rec, &m, &disk, &opts, &|_| {}, |_| Ok(()), 0).unwrap();
    let order = rec.order.into_inner().unwrap();
    assert_eq!(order.len() as u64, r.chunks);
    let region = |i: u64| m.in_partition_region(i as usize);
    let first_table = order.iter().position(|&i| region(i)).unwrap();
    assert!(order[first_table..].iter().all(|&i| region(i)), "{order:?}");
    // 64 KiB chunks: 16 at each end form the region.
    assert_eq!(order.len() - first_table, 32);
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&src).unwrap()
    );
}
