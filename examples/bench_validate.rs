//! Benchmark of `roomcast validate` on a synthetic region: 150 schools x 20 rooms x 30 PCs.
//!
//! `cargo run --release --example bench_validate [SCHOOLS ROOMS PCS]`
//!
//! Writes the region into a temporary folder (the test fixtures' catalog and profile, one
//! profile per school), then times loading + checking it, and prints files, machines, findings,
//! seconds and the process's peak resident memory (VmHWM).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use roomcast::model::{self, Date};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn write_region(root: &Path, schools: usize, rooms: usize, pcs: usize) -> std::io::Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/good/profiles");
    std::fs::create_dir_all(root.join("profiles/catalog"))?;
    for f in ["libreoffice.yaml", "solidworks-edu.yaml"] {
        std::fs::copy(
            fixtures.join("catalog").join(f),
            root.join("profiles/catalog").join(f),
        )?;
    }
    let profile = std::fs::read_to_string(fixtures.join("sti2d-cao.yaml"))?;
    for s in 0..schools {
        let uai = format!("{:07}A", 330_000 + s);
        let name = format!("cao-{s}");
        let p = profile
            .replace("name: sti2d-cao", &format!("name: {name}"))
            .replace("seats: 40", &format!("seats: {}", rooms * pcs));
        std::fs::write(root.join(format!("profiles/{name}.yaml")), p)?;
        let dir = root.join("rooms").join(&uai);
        std::fs::create_dir_all(&dir)?;
        for r in 0..rooms {
            let id = format!("R{r:03}");
            let mut y = String::new();
            let _ = write!(
                y,
                "school:\n  uai: \"{uai}\"\n  name: Lycée {s}\nroom: {id}\nvlan: PEDA\nnetwork:\n  interface: enp3s0\n  subnet: 198.18.{r}.0/24\n  multicast_group: 239.255.{r}.1\n  link_speed_mbps: 1000\nprofile: {name}@3\nmaster: {id}-PC01\nmachines:\n"
            );
            for m in 0..pcs {
                let _ = write!(
                    y,
                    "  - mac: \"02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\n    serial: SN{s:03}{r:03}{m:03}\n    model: OptiPlex 7010\n",
                    s >> 8,
                    s & 0xff,
                    r,
                    m,
                    0
                );
            }
            std::fs::write(dir.join(format!("{id}.yaml")), y)?;
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (schools, rooms, pcs) = match args[..] {
        [a, b, c] => (a, b, c),
        _ => (150, 20, 30),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    write_region(dir.path(), schools, rooms, pcs).expect("write region");
    let hwm_before = vm_hwm_kib();
    let today: Date = "2026-01-15".parse().unwrap();
    let start = Instant::now();
    let files =
        model::load::load(&[dir.path().join("profiles"), dir.path().join("rooms")]).expect("load");
    let loaded = start.elapsed();
    let v = model::validate(files, today);
    let total = start.elapsed();
    println!(
        "region: {schools} schools x {rooms} rooms x {pcs} PCs\nfiles: {}\nmachines: {}\nfindings: {}\nread: {:.3} s\nvalidate (read + parse + check): {:.3} s\npeak RSS (VmHWM): {:.1} MiB (before validating: {:.1} MiB)",
        v.files,
        v.machines,
        v.findings.len(),
        loaded.as_secs_f64(),
        total.as_secs_f64(),
        vm_hwm_kib() as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
    );
    for f in v.findings.iter().take(5) {
        println!("  {} {}:{} {}", f.code.as_str(), f.file, f.line, f.message);
    }
}
