//! Bad input: damaged chunk files, tampered manifests, unknown signers, a full store disk, a source
//! that shrinks mid-read. Each gives an error naming the chunk or file and leaves store and target sane.

use super::util::{Fixture, Tmpfs, assert_chunk_files_intact, pattern, sparse_disk};
use roomcast_store::StoreError;
use roomcast_store::capture::{self, CaptureError, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::manifest::ManifestError;
use std::os::unix::fs::FileExt;

fn image(fx: &Fixture) -> (std::path::PathBuf, roomcast_store::capture::CaptureReport) {
    let src = fx.path("src.img");
    sparse_disk(
        &src,
        2 * 1024 * 1024,
        &[(0, 1_500_000, 5), (1_700_000, 200_000, 6)],
    );
    let r = fx.capture(&src);
    (src, r)
}

fn data_chunk_file(
    fx: &Fixture,
    id: &roomcast_store::manifest::ImageId,
    nth: usize,
) -> (u64, std::path::PathBuf) {
    let m = fx.store.open_verified(id).unwrap();
    let (i, c) = m
        .chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.is_zero())
        .nth(nth)
        .unwrap();
    (i as u64, fx.store.chunk_path(&c.sha256.unwrap()))
}

#[test]
fn truncated_chunk_is_named_by_verify_and_restore_refuses_before_writing() {
    let fx = Fixture::new();
    let (_, r) = image(&fx);
    let (index, file) = data_chunk_file(&fx, &r.id, 3);
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let rep = roomcast_store::verify::verify(&fx.store, &[], &|_, _| {}).unwrap();
    assert_eq!(rep.bad.len(), 1, "{rep:?}");
    assert_eq!(rep.bad[0].chunk.index, index);
    assert_eq!(rep.bad[0].path, file);
    assert!(
        rep.bad[0].problem.contains("truncated"),
        "{}",
        rep.bad[0].problem
    );

    let target = fx.path("target.img");
    std::fs::write(&target, vec![9u8; 2 * 1024 * 1024]).unwrap();
    let err = fx.restore(&r.id, &target).unwrap_err().to_string();
    assert!(
        err.contains(&format!("chunk #{index} ")) && err.contains(&file.display().to_string()),
        "{err}"
    );
    assert!(
        std::fs::read(&target).unwrap().iter().all(|&b| b == 9),
        "target touched"
    );
}

#[test]
fn bit_flipped_chunk_stops_restore_at_that_chunk_and_restore_resumes_after_repair() {
    let fx = Fixture::new();
    let (src, r) = image(&fx);
    let (index, file) = data_chunk_file(&fx, &r.id, 10);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    let rep = roomcast_store::verify::verify(&fx.store, &[], &|_, _| {}).unwrap();
    assert_eq!(rep.bad.len(), 1);
    assert_eq!(rep.bad[0].chunk.index, index);

    let target = fx.path("target.img");
    let err = fx.restore(&r.id, &target).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("chunk #{index} ")), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    // The bad chunk's range was not written.
    let got = std::fs::read(&target).unwrap();
    let off = index as usize * 65536;
    assert!(got[off..off + 65536].iter().all(|&b| b == 0));

    // Repair: drop the bad file, capture the source again (it rewrites the missing chunk), resume.
    std::fs::remove_file(&file).unwrap();
    let again = fx.capture(&src);
    assert_eq!(again.new_chunks, 1);
    fx.restore(&r.id, &target).unwrap();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&src).unwrap()
    );
}

#[test]
fn tampered_manifest_and_unknown_signer_are_refused() {
    let fx = Fixture::new();
    let (_, r) = image(&fx);
    let path = fx.store.manifest_path(&r.id);
    let original = std::fs::read(&path).unwrap();

    // Edited in place: the bytes no longer hash to the file name.
    let edited = String::from_utf8(original.clone()).unwrap().replacen(
        "\"version\":\"1\"",
        "\"version\":\"2\"",
        1,
    );
    assert_ne!(edited.as_bytes(), &original[..]);
    std::fs::write(&path, &edited).unwrap();
    assert!(matches!(
        fx.store.open_verified(&r.id),
        Err(StoreError::IdMismatch { .. })
    ));

    // Edited and renamed to its new hash: the signature fails.
    let body = &edited.as_bytes()[edited.find("\n\n").unwrap() + 2..];
    let new_id = roomcast_store::manifest::ImageId::of(body);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(fx.store.manifest_path(&new_id), &edited).unwrap();
    let err = fx.store.open_verified(&new_id).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Manifest {
                source: ManifestError::BadSignature { .. },
                ..
            }
        ),
        "{err}"
    );
    let target = fx.path("t.img");
    assert!(fx.restore(&new_id, &target).is_err());
    assert!(!target.exists(), "a refused restore created its target");

    // The bare manifest JSON with no signature at all, under its own hash.
    let unsigned_id = roomcast_store::manifest::ImageId::of(body);
    std::fs::write(fx.store.manifest_path(&unsigned_id), body).unwrap();
    let err = fx.store.open_verified(&unsigned_id).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Manifest {
                source: ManifestError::Envelope(_),
                ..
            }
        ),
        "{err}"
    );

    // The genuine manifest, but its signer is no longer trusted.
    std::fs::remove_file(fx.store.manifest_path(&new_id)).unwrap();
    std::fs::write(&path, &original).unwrap();
    fx.store.open_verified(&r.id).unwrap();
    for f in std::fs::read_dir(fx.store.trusted_dir()).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err = fx.store.open_verified(&r.id).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Manifest {
                source: ManifestError::UnknownSigner { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn full_store_disk_fails_naming_the_chunk_and_leaves_no_image_nor_partial_chunk() {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("small");
    let _tmpfs = Tmpfs::mount(&mnt, "3M");
    let fx = Fixture::at(base, Some(&mnt.join("store")));
    let src = fx.path("big.img");
    std::fs::write(&src, pattern(11, 12 * 1024 * 1024, false)).unwrap();

    let err = fx.capture_with(&src, 64 * 1024).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            CaptureError::WriteChunk { .. } | CaptureError::Store(_)
        ),
        "{msg}"
    );
    assert!(msg.contains("No space left"), "{msg}");
    if let CaptureError::WriteChunk { chunk, .. } = &err {
        assert!(msg.contains(&format!("chunk #{} ", chunk.index)), "{msg}");
    }
    assert!(fx.store.image_ids().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(fx.store.tmp_dir()).unwrap().count(),
        0,
        "leftover tmp files"
    );
    assert_chunk_files_intact(&fx.store);
    let gc = fx.store.gc().unwrap();
    assert_eq!(gc.chunks_kept, 0);
    assert_eq!(
        std::fs::read_dir(mnt.join("store/chunks"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum::<usize>(),
        0
    );

    // Space back: a smaller disk captures fine in the same store.
    let small = fx.path("small.img");
    std::fs::write(&small, pattern(12, 256 * 1024, true)).unwrap();
    fx.capture(&small);
}

#[test]
fn source_shrinking_mid_capture_is_named_and_leaves_no_image() {
    let fx = Fixture::new();
    let src = fx.path("shrinking.img");
    std::fs::write(&src, pattern(21, 32 * 1024 * 1024, true)).unwrap();
    let opts = CaptureOptions {
        chunk_size: ChunkSize::new(64 * 1024).unwrap(),
        level: 3,
        workers: 2,
    };
    let cut = std::sync::Once::new();
    let err = capture::capture(
        &fx.store,
        &src,
        super::util::label("s"),
        &fx.signer,
        &opts,
        &|p| {
            if p.chunks_done >= 4 {
                cut.call_once(|| {
                    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
                    f.set_len(4 * 1024 * 1024).unwrap();
                    f.write_all_at(b"x", 0).unwrap();
                });
            }
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CaptureError::Source { .. }), "{msg}");
    assert!(
        msg.contains(&src.display().to_string()) && msg.contains("vanished"),
        "{msg}"
    );
    assert!(msg.contains("chunk #64 at offset 4194304"), "{msg}");
    assert!(fx.store.image_ids().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(fx.store.tmp_dir()).unwrap().count(), 0);
    assert_chunk_files_intact(&fx.store);
}
