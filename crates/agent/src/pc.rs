//! `roomcast-agent pc`: what the boot environment's init runs on a PXE-booted PC. Everything comes
//! from the kernel command line (`roomcast_proto::contract::cmdline`):
//!
//! 1. load the drivers the hardware asks for (each device's modalias against the initramfs's
//!    `modules.alias`, dependencies from `modules.dep`, `finit_module`);
//! 2. take the network card whose MAC booted (`roomcast.mac=` or `BOOTIF=`), bring it up, wait for
//!    its link ([`LINK_WAIT`]: gigabit autonegotiation takes seconds), DHCP with retries;
//! 3. arm Wake-on-LAN on that card (magic packet), so the next night's wake works;
//! 4. list the disks and choose the system disk by the rule (`roomcast.sysdisk=`, else the one
//!    internal disk), refusing none or several;
//! 5. read the PC's facts (DMI, CPU, memory, disks, cards: `crate::facts`) and send them to the
//!    server FIRST; on its refusal (a PC of another model than the room's profile) show why and
//!    report it, nothing written;
//! 6. restore (`roomcast.image=1`) or capture (`roomcast.capture=1`), progress on the screen;
//!    without either, stop after the network (the init reports the PC's facts).
//!
//! Every failure is shown on the screen in block letters with its reason (a network card without a
//! driver: its PCI id and the module it needs), reported to the server whenever the network is up
//! (a failed `Report` naming the disks seen), then the PC waits `roomcast.wait=` seconds (default
//! 60) so a technician can read it; the init powers off afterwards. Exit 0 done, 1 failed.

use crate::hw::{self, ModuleTables, Nic};
use crate::screen::Screen;
use crate::{AgentOptions, Hooks, Report};
use roomcast_proto::contract::cmdline::{self, DEFAULT_WAIT};
use roomcast_proto::contract::disk::{choose, human_bytes};
use roomcast_proto::contract::{DiskRule, DiskSeen, RestoreFigures, Work, path};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// How long the booting card may take to appear once its driver is loaded.
pub const NIC_WAIT: Duration = Duration::from_secs(15);
/// How long a card may take to get its link (autonegotiation of a gigabit card: 2–5 s, some
/// switches longer).
pub const LINK_WAIT: Duration = Duration::from_secs(30);
/// How long the disks may take to appear before the system-disk rule is declared unmatched.
pub const DISK_WAIT: Duration = Duration::from_secs(10);
/// DHCP attempts (each `udhcpc -t 4 -T 3`: four DISCOVERs three seconds apart).
pub const DHCP_ATTEMPTS: u32 = 4;
/// Where the facts-only boot finds the interface the agent brought up.
pub const IFACE_FILE: &str = "/run/roomcast.iface";

/// What the command line asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcConfig {
    server: Option<String>,
    token: Option<String>,
    mac: Option<String>,
    capture: bool,
    restore: bool,
    disk: Option<PathBuf>,
    rule: Option<DiskRule>,
    rule_error: Option<String>,
    wait: Duration,
    grow_last: bool,
}

impl PcConfig {
    /// Reads the `roomcast.*` words (and `BOOTIF=`).
    pub fn from_cmdline(c: &str) -> PcConfig {
        let v = |k| cmdline::value(c, k).map(str::to_string);
        let (rule, rule_error) = match cmdline::value(c, cmdline::SYSDISK).map(DiskRule::parse) {
            None => (None, None),
            Some(Ok(r)) => (Some(r), None),
            Some(Err(e)) => (None, Some(e)),
        };
        PcConfig {
            server: v(cmdline::SERVER),
            token: v(cmdline::TOKEN),
            mac: cmdline::boot_mac(c),
            capture: v(cmdline::CAPTURE).as_deref() == Some("1"),
            restore: v(cmdline::IMAGE).as_deref() == Some("1"),
            disk: v(cmdline::DISK)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            rule,
            rule_error,
            wait: Duration::from_secs(
                v(cmdline::WAIT)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(DEFAULT_WAIT),
            ),
            grow_last: v(cmdline::GROW).as_deref() == Some("last"),
        }
    }
}

/// A failure: the lines shown, and whether it reached the server.
struct Failure {
    why: Vec<String>,
    reported: Option<bool>,
}

fn fail(why: impl Into<String>) -> Failure {
    Failure {
        why: vec![why.into()],
        reported: None,
    }
}

/// The binary's `roomcast-agent pc`.
pub fn main() -> ExitCode {
    let c = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cfg = PcConfig::from_cmdline(&c);
    let screen = Screen::open(&c);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let modules = Path::new("/lib/modules").join(release.trim());
    match run(&cfg, &screen, Path::new("/sys"), &modules) {
        Ok(done) => {
            if cfg.restore || cfg.capture {
                screen.banner("done", &done);
            } else {
                for l in done {
                    screen.line(&format!("roomcast: {l}"));
                }
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            let mut why = f.why;
            why.push(match f.reported {
                Some(true) => "This was reported to the server.".into(),
                Some(false) => "The report could not be delivered to the server.".into(),
                None => "No network: nothing could be reported to the server.".into(),
            });
            why.push(format!(
                "Powering off in {} s (roomcast.wait=).",
                cfg.wait.as_secs()
            ));
            for l in &why {
                screen.line(&format!("roomcast: failed: {l}"));
            }
            screen.banner("failed", &why);
            std::thread::sleep(cfg.wait);
            ExitCode::from(1)
        }
    }
}

/// Steps 1–6; `Ok` carries the lines of the outcome.
fn run(
    cfg: &PcConfig,
    screen: &Screen,
    sys: &Path,
    modules: &Path,
) -> Result<Vec<String>, Failure> {
    let started = Instant::now();
    // 1. Drivers.
    let tables = ModuleTables::load(modules);
    let loaded = hw::load_for_devices(sys, &tables, Duration::from_millis(500), &hw::insert_module);
    screen.line(&format!(
        "roomcast: drivers loaded: {}",
        if loaded.loaded.is_empty() {
            "none".to_string()
        } else {
            loaded.loaded.join(" ")
        }
    ));
    for f in &loaded.failed {
        screen.line(&format!("roomcast: driver failed to load: {f}"));
    }
    // The loop driver (no device asks for it): a Windows PC's step h runs ntfscp through a loop
    // device over its Windows partition. Device-mapper (dm_mod, dm_zero): an NTFS shrunk onto a
    // smaller disk is resized on a view of its old size (issue 23).
    for module in ["loop", "dm_mod", "dm_zero"] {
        for (name, path) in tables.load_order(module) {
            if let Err(e) = hw::insert_module(&path) {
                screen.line(&format!("roomcast: driver {name} failed to load: {e}"));
            }
        }
    }
    // 2. The network card.
    let nic = booting_nic(cfg, sys, &tables)?;
    screen.line(&format!("roomcast: network card {nic}"));
    let _ = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    let _ = Command::new("ip")
        .args(["link", "set", "dev", &nic.name, "up"])
        .status();
    let t = Instant::now();
    while !hw::has_carrier(sys, &nic.name) {
        if t.elapsed() > LINK_WAIT {
            return Err(fail(format!(
                "No network link on {nic} after {} s: check the cable and the switch port.",
                LINK_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    screen.line(&format!(
        "roomcast: link up on {} after {:.1} s",
        nic.name,
        t.elapsed().as_secs_f64()
    ));
    // 3. Wake-on-LAN, while we hold the card (the setting lasts until power-off, when the driver
    // arms the wake).
    let wol = match hw::arm_wake_on_lan(&nic.name) {
        Ok(s) => s,
        Err(s) => format!("not armed: {s}"),
    };
    screen.line(&format!("roomcast: Wake-on-LAN {wol}"));
    dhcp(&nic, screen)?;
    screen.line(&format!(
        "roomcast: network up on {} in {:.1} s",
        nic.name,
        started.elapsed().as_secs_f64()
    ));
    if !cfg.restore && !cfg.capture {
        let _ = std::fs::write(IFACE_FILE, &nic.name);
        return Ok(vec![format!("network up on {nic}, Wake-on-LAN {wol}")]);
    }
    let (Some(server), Some(token)) = (&cfg.server, &cfg.token) else {
        return Err(fail(
            "The boot script gave no roomcast.server or roomcast.token: nothing to do.",
        ));
    };
    // 4. The disk.
    // A disk that is late (USB waits a second before scanning, some NVMe take longer) gets up to
    // DISK_WAIT to appear before the rule is declared unmatched.
    let t = Instant::now();
    let mut seen = settled_disks(sys);
    while pick_disk(cfg, &seen).is_err() && t.elapsed() < DISK_WAIT {
        std::thread::sleep(Duration::from_secs(1));
        seen = hw::disks(sys);
    }
    for d in &seen {
        screen.line(&format!("roomcast: disk {d}"));
    }
    let annotate = |r: &mut Report| {
        r.disks = seen.clone();
        r.nic = Some(nic.to_string());
        r.wake_on_lan = Some(wol.clone());
    };
    let report_failure = |why: String| -> Failure {
        let work = if cfg.capture {
            Work::Capture(Default::default())
        } else {
            Work::Restore(RestoreFigures::default())
        };
        let mut r = Report::new(Some(why.clone()), None, PathBuf::new(), work);
        annotate(&mut r);
        let client = crate::http::Client::new(server, token);
        let body = serde_json::to_vec(&r).expect("report serialises");
        let reported = client.post(&client.url(path::REPORT), &body).is_ok();
        let mut why = vec![why];
        if !reported {
            why.push("(report not delivered)".into());
        }
        Failure {
            why,
            reported: Some(reported),
        }
    };
    let disk = match pick_disk(cfg, &seen) {
        Ok(d) => d,
        Err(mut why) => {
            let undriven = hw::undriven(sys, &tables, false);
            if seen.is_empty() && !undriven.is_empty() {
                why = format!("{why}; {}", undriven.join("; "));
            }
            return Err(report_failure(why));
        }
    };
    screen.line(&format!("roomcast: system disk {}", disk.display()));
    // 5. The PC's facts first, before anything is written: the server says go or no-go.
    let facts = crate::facts::read_linux_facts(Path::new("/"));
    screen.line(&format!(
        "roomcast: this PC: {} {} (serial {}, board {} {}, BIOS {})",
        facts.vendor,
        facts.model,
        facts.serial,
        facts.board_vendor,
        facts.board_name,
        facts.bios_version
    ));
    let client = crate::http::Client::new(server, token);
    match crate::facts::clear(&client, &facts) {
        Ok(c) => {
            for w in &c.warnings {
                screen.line(&format!("roomcast: warning: {w}"));
            }
            if let Some(why) = c.refused {
                screen.line(&format!("roomcast: refused by the server: {why}"));
                let mut f = report_failure(why);
                f.why.push("Nothing was written to this PC's disk.".into());
                return Err(f);
            }
        }
        Err(e) => {
            return Err(report_failure(format!(
                "The server did not clear this PC ({e}); nothing was written."
            )));
        }
    }
    // 6. The work.
    if cfg.capture {
        let opts = crate::capture::CaptureAgentOptions {
            server: server.clone(),
            token: token.clone(),
            disk: disk.clone(),
            // The server's plan says whether to take every byte.
            whole_disk: false,
        };
        screen.line(&format!("roomcast: capturing {}", disk.display()));
        return match crate::capture::run_capture(&opts) {
            Ok(out) => match out.result {
                Ok(id) => Ok(vec![format!(
                    "Image {id} captured from {}.",
                    disk.display()
                )]),
                Err(e) => Err(Failure {
                    why: vec![format!("Capture of {} failed: {e}", disk.display())],
                    reported: Some(true),
                }),
            },
            Err(e) => Err(Failure {
                why: vec![format!("Report not delivered: {e}")],
                reported: Some(false),
            }),
        };
    }
    let trusted = crate::load_trusted(Path::new(crate::TRUSTED_KEY))
        .map_err(|e| report_failure(format!("The boot environment has no trusted key: {e}")))?;
    let opts = AgentOptions {
        server: server.clone(),
        token: token.clone(),
        disk: disk.clone(),
        trusted,
        workers: 0,
        fit: roomcast_store::fit::FitOptions {
            grow_last: cfg.grow_last,
        },
    };
    let shown = std::sync::Mutex::new(Instant::now() - Duration::from_secs(10));
    let begun = Instant::now();
    let on_image = |m: &roomcast_store::manifest::VerifiedManifest| {
        screen.line(&format!(
            "roomcast: image {} {} ({}, {}) onto {}",
            m.label.name,
            m.label.version,
            &m.id().to_hex()[..12],
            human_bytes(m.disk_size),
            disk.display()
        ));
    };
    let progress = |p: &roomcast_store::restore::RestoreProgress| {
        let mut last = shown.lock().unwrap_or_else(|e| e.into_inner());
        let end = p.chunks_done == p.chunks_total;
        if last.elapsed() < Duration::from_secs(2) && !end {
            return;
        }
        *last = Instant::now();
        let secs = begun.elapsed().as_secs_f64().max(0.001);
        screen.line(&format!(
            "roomcast: restoring {:>3}%  {}/s  ({} of {})",
            p.bytes_done * 100 / p.bytes_total.max(1),
            human_bytes((p.bytes_done as f64 / secs) as u64),
            human_bytes(p.bytes_done),
            human_bytes(p.bytes_total)
        ));
    };
    let hooks = Hooks {
        image: Some(&on_image),
        progress: Some(&progress),
        annotate: Some(&annotate),
    };
    match crate::run_with(&opts, &hooks) {
        Ok(out) => match out.result {
            Ok(r) => Ok([
                format!("Image written onto {}.", disk.display()),
                format!(
                    "{} chunks written, {} unchanged, {} zeroed, in {:.0} s.",
                    r.written_chunks,
                    r.unchanged_chunks,
                    r.zeroed_chunks,
                    begun.elapsed().as_secs_f64()
                ),
            ]
            .into_iter()
            // A disk of another size than the image's (issue 23): what was adjusted.
            .chain(r.adjusted.iter().map(|a| format!("Adjusted: {a}.")))
            .chain([format!("Wake-on-LAN {wol}.")])
            .collect()),
            Err(e) => Err(Failure {
                why: vec![format!("Restore onto {} failed: {e}", disk.display())],
                reported: Some(true),
            }),
        },
        Err(e) => Err(Failure {
            why: vec![format!("Report not delivered: {e}")],
            reported: Some(false),
        }),
    }
}

/// The card whose MAC booted (else the first with a driver), waiting for it to appear; a failure
/// names the cards seen and every network controller left without a driver.
fn booting_nic(cfg: &PcConfig, sys: &Path, tables: &ModuleTables) -> Result<Nic, Failure> {
    let t = Instant::now();
    loop {
        let all = hw::nics(sys);
        let found = match &cfg.mac {
            Some(m) => all.iter().find(|n| &n.mac == m),
            None => all.iter().find(|n| n.driver.is_some()),
        };
        if let Some(n) = found {
            return Ok(n.clone());
        }
        if t.elapsed() > NIC_WAIT {
            let mut why = vec![match &cfg.mac {
                Some(m) => format!("No network card with the booting MAC {m}."),
                None => "No network card.".to_string(),
            }];
            why.extend(hw::undriven(sys, tables, true));
            why.push(format!(
                "Cards with a driver: {}.",
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
            return Err(Failure {
                why,
                reported: None,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// busybox udhcpc, retried.
fn dhcp(nic: &Nic, screen: &Screen) -> Result<(), Failure> {
    for attempt in 1..=DHCP_ATTEMPTS {
        let ok = Command::new("udhcpc")
            .args(["-i", &nic.name, "-s", "/etc/udhcpc.script", "-q", "-n"])
            .args(["-t", "4", "-T", "3"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        screen.line(&format!(
            "roomcast: DHCP attempt {attempt} of {DHCP_ATTEMPTS} on {} got no answer",
            nic.name
        ));
    }
    Err(fail(format!(
        "DHCP failed on {nic}: no address after {DHCP_ATTEMPTS} attempts. Is the PC on the \
         room's network, and is the school's DHCP server up?"
    )))
}

/// The disks, once their list stops changing (USB and NVMe disks appear after their driver).
fn settled_disks(sys: &Path) -> Vec<DiskSeen> {
    let t = Instant::now();
    let mut last = hw::disks(sys);
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = hw::disks(sys);
        if (now == last && !now.is_empty()) || t.elapsed() > Duration::from_secs(10) {
            return now;
        }
        last = now;
    }
}

/// `roomcast.disk=` when given, else the rule's one disk.
fn pick_disk(cfg: &PcConfig, seen: &[DiskSeen]) -> Result<PathBuf, String> {
    if let Some(e) = &cfg.rule_error {
        return Err(format!("The boot script's roomcast.sysdisk is wrong: {e}"));
    }
    if let Some(d) = &cfg.disk {
        return Ok(d.clone());
    }
    choose(cfg.rule.as_ref(), seen)
        .map(|d| Path::new("/dev").join(&d.name))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::contract::Bus;

    #[test]
    fn the_command_line_gives_the_config() {
        let c = PcConfig::from_cmdline(
            "console=tty0 roomcast.server=http://198.18.0.1:8080 roomcast.token=t \
             roomcast.mac=52:54:00:AA:00:01 roomcast.image=1 roomcast.sysdisk=bus:nvme \
             roomcast.wait=3",
        );
        assert!(c.restore && !c.capture);
        assert_eq!(c.mac.as_deref(), Some("52:54:00:aa:00:01"));
        assert_eq!(c.wait, Duration::from_secs(3));
        assert_eq!(c.rule.as_ref().and_then(|r| r.bus), Some(Bus::Nvme));
        let d = PcConfig::from_cmdline("roomcast.sysdisk=bus:tape");
        assert_eq!(d.wait, Duration::from_secs(DEFAULT_WAIT));
        let e = pick_disk(&d, &[]).unwrap_err();
        assert!(e.contains("roomcast.sysdisk") && e.contains("tape"), "{e}");
        let seen = [DiskSeen {
            name: "sda".into(),
            bus: Bus::Sata,
            model: "QEMU HARDDISK".into(),
            serial: "QM00001".into(),
            bytes: 1 << 30,
            removable: false,
        }];
        assert_eq!(
            pick_disk(&c, &seen).unwrap_err().split(';').next().unwrap(),
            "no disk matches the system-disk rule (bus nvme)"
        );
        let plain = PcConfig::from_cmdline("roomcast.image=1");
        assert_eq!(pick_disk(&plain, &seen), Ok(PathBuf::from("/dev/sda")));
        let forced = PcConfig::from_cmdline("roomcast.image=1 roomcast.disk=/dev/vdb");
        assert_eq!(pick_disk(&forced, &seen), Ok(PathBuf::from("/dev/vdb")));
    }
}
