//! The reference multicast imager, Debian's udpcast, in the lab: three PCs receive a random
//! 16 MiB image and every copy is bit-identical. This is also the benchmark's code path.

use roomcast_lab::bench::{self, Udpcast};
use roomcast_lab::{Lab, Tbf};

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

// No udpcast-under-loss test here: at 5 % loss on this loaded 2-core machine udpcast itself
// sometimes drops a receiver ("Dropped by server") or never completes its rendezvous, which is
// what the benchmark measures and reports (docs/PERFORMANCE.md), not a lab property.
// The loss rule itself is tested with counters in `lab::loss`.
#[test]
fn a_copy_that_differs_from_the_image_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image.bin");
    bench::random_image(&image, 1 << 20).unwrap();
    let lab = Lab::builder().pcs(2).build().unwrap();
    let err = bench::run_case(&Udpcast, &lab, &image, "00", work.path(), 0).unwrap_err();
    match err {
        bench::BenchError::Corrupt { node, want, .. } => {
            assert_eq!(node, "pc0");
            assert_eq!(want, "00");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn unicast_tcp_delivers_bit_identical_copies() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image.bin");
    bench::random_image(&image, 2 << 20).unwrap();
    let sha = bench::sha256_file(&image).unwrap();
    let lab = Lab::builder().pcs(2).rate(Tbf::mbit(200)).build().unwrap();
    let r = bench::run_case(&bench::UnicastTcp, &lab, &image, &sha, work.path(), 0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.contender.as_str(), r.pcs), ("unicast-tcp", 2));
}
