//! The reference multicast imager, Debian's udpcast, in the lab: three PCs receive a random
//! 16 MiB image and every copy is bit-identical. This is also the benchmark's code path.

use roomcast::lab::bench::{self, Udpcast};
use roomcast::lab::{Lab, Tbf};

#[test]
fn udpcast_delivers_a_bit_identical_image_to_three_pcs() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image.bin");
    bench::random_image(&image, 16 << 20).unwrap();
    let sha = bench::sha256_file(&image).unwrap();
    let lab = Lab::builder().pcs(3).rate(Tbf::mbit(200)).build().unwrap();
    let r = bench::run_case(&Udpcast, &lab, &image, &sha, work.path(), 0)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "udpcast, 3 PCs, 16 MiB at 200 Mbit/s: {:.2} s, {:.1} Mbit/s",
        r.elapsed.as_secs_f64(),
        r.throughput_mbit()
    );
    assert_eq!(r.pcs, 3);
    // run_case verified each copy's sha256 and removed it.
    for pc in lab.pcs() {
        assert!(
            !work
                .path()
                .join(format!("udpcast-{}.out", pc.role()))
                .exists()
        );
    }
}

#[test]
fn udpcast_survives_loss_and_a_corrupt_copy_would_be_caught() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image.bin");
    bench::random_image(&image, 4 << 20).unwrap();
    let sha = bench::sha256_file(&image).unwrap();
    let lab = Lab::builder().pcs(2).rate(Tbf::mbit(200)).build().unwrap();
    for pc in lab.pcs() {
        lab.set_loss(pc, 5, 9000..=9099).unwrap();
    }
    bench::run_case(&Udpcast, &lab, &image, &sha, work.path(), 5).unwrap_or_else(|e| panic!("{e}"));
    let dropped: u64 = lab
        .pcs()
        .iter()
        .map(|pc| lab.loss_counters(pc).unwrap().dropped)
        .sum();
    assert!(
        dropped > 0,
        "the loss rule dropped nothing: udpcast did not use ports 9000-9099"
    );
    // Against a wrong reference hash, the same delivery is reported as corrupt.
    let err = bench::run_case(&Udpcast, &lab, &image, "00", work.path(), 5).unwrap_err();
    assert!(matches!(err, bench::BenchError::Corrupt { .. }), "{err}");
}
