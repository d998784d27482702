//! The benchmarks' own measuring tools (`roomcast_lab::bench`): what a figure in
//! docs/PERFORMANCE.md rests on.

use roomcast_lab::Lab;
use roomcast_lab::bench::{self, Processes};
use std::time::Duration;

/// Each process's CPU time is its own, read when it is reaped: a busy loop's is counted, an idle
/// process's is not, and neither takes the other's.
#[test]
fn processes_report_each_childs_own_cpu_time() {
    let lab = Lab::builder().pcs(2).build().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut procs = Processes::new("cpu");
    let mut busy = lab.pc(0).unwrap().command("sh");
    busy.args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"]);
    procs.spawn(lab.pc(0).unwrap(), busy, logs.path()).unwrap();
    let mut idle = lab.pc(1).unwrap().command("sleep");
    idle.arg("0.5");
    procs.spawn(lab.pc(1).unwrap(), idle, logs.path()).unwrap();
    procs.wait_all(Duration::from_secs(120)).unwrap();
    let cpu = procs.cpu_times();
    assert_eq!(cpu.len(), 2);
    assert_eq!(cpu[0].0, "pc0");
    let busy = cpu[0]
        .1
        .expect("the busy process was reaped with its CPU time");
    let idle = cpu[1]
        .1
        .expect("the idle process was reaped with its CPU time");
    assert!(busy >= Duration::from_millis(100), "busy loop: {busy:?}");
    assert!(idle < Duration::from_millis(100), "sleep 0.5: {idle:?}");
    assert!(procs.log_path("pc1").is_some_and(|p| p.exists()));
}

/// The compressible benchmark image has the size asked for and compresses, but not away: a third
/// of it is random.
#[test]
fn the_system_files_image_compresses_like_software_with_random_thirds() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image.bin");
    bench::system_files_image(&image, (24 << 20) + 12345).unwrap();
    let data = std::fs::read(&image).unwrap();
    assert_eq!(data.len(), (24 << 20) + 12345);
    let packed = zstd::bulk::compress(&data, 3).unwrap();
    let ratio = packed.len() as f64 / data.len() as f64;
    assert!(
        (0.34..0.95).contains(&ratio),
        "compressed to {ratio:.3} of the image"
    );
    // Every third MiB is random: it does not compress at all.
    let third = &data[2 << 20..3 << 20];
    let packed_third = zstd::bulk::compress(third, 3).unwrap();
    assert!(
        packed_third.len() >= third.len(),
        "the random MiB compressed"
    );
}
