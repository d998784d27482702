//! `roomcast serve`: the boot services of one campaign on the room interface — proxyDHCP (67, 4011),
//! TFTP (69) and HTTP (boot scripts, kernel, initramfs, agent reports).
//!
//! The interface, subnet and MAC allowlist come from the validated room file (`--room`); a room
//! file with errors is refused. `--interface`, `--subnet` and `--machine` override it (tests, or a
//! room not written down yet).

use super::exit::{self, CliError};
use super::room::{DataPlaneArgs, RoomArgs, init_tracing};
use crate::net::files::BootRoot;
use crate::net::http::{BootConfig, BootService};
use crate::net::proxydhcp::Subnet;
use crate::net::wol::Waker;
use crate::serve::services::{self, Pxe, RoomServices};
use clap::Args;
use roomcast_proto::contract::AgentMode;
use roomcast_proto::dhcp_authoritative::Pool;
use roomcast_proto::mac::Mac;
use roomcast_proto::wol::WakePlan;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// `roomcast serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The room (`--room`, or `--interface`, `--subnet` and `--machine`).
    #[command(flatten)]
    room: RoomArgs,
    /// The boot root (`roomcast bootenv build --out`).
    #[arg(long)]
    boot_dir: PathBuf,
    /// Where agent reports are written.
    #[arg(long)]
    reports: PathBuf,
    /// HTTP port.
    #[arg(long, default_value_t = services::DEFAULT_HTTP_PORT)]
    http_port: u16,
    /// Campaign name shown on the PCs.
    #[arg(long, default_value = "campaign")]
    campaign: String,
    /// Boot file for UEFI x64 firmware: snponly.efi (faster on OVMF) or ipxe.efi.
    #[arg(long, default_value = services::DEFAULT_UEFI_BOOT_FILE)]
    uefi_file: String,
    /// The PCs boot with Secure Boot on: UEFI firmware gets Debian's signed shim, then GRUB and
    /// the signed kernel (`bootenv build --secure-boot`), instead of iPXE. Also the room file's
    /// `secure_boot: true`.
    #[arg(long)]
    secure_boot: bool,
    /// Send "no router here" IPv6 router advertisements every second: saves iPXE a 13-16 s wait
    /// on networks without IPv6 routers.
    #[arg(long)]
    announce_ra: bool,
    /// Authoritative DHCP from this range (`198.18.3.1-198.18.3.200`) instead of proxyDHCP. ONLY on
    /// an isolated network without another DHCP server; campaign MACs only.
    #[arg(long, value_name = "FIRST-LAST")]
    authoritative: Option<String>,
    /// Wake the campaign's machines (Wake-on-LAN, 5 per second, again every 30 s) until each one is
    /// seen asking proxyDHCP, for at most this many seconds.
    #[arg(long, value_name = "SECONDS")]
    wake: Option<u64>,
    /// Seconds between two magic packets to the same machine while it is not seen.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    wake_every: u64,
    /// Extra kernel command line for the agent.
    #[arg(long, default_value = services::DEFAULT_CMDLINE)]
    cmdline: String,
    /// The image store holding the campaign's image (with --image).
    #[arg(long, requires = "image")]
    store: Option<PathBuf>,
    /// The campaign's image id (or a unique prefix): agents restore it onto their disk.
    #[arg(long, requires = "store")]
    image: Option<String>,
    /// Also offer a multicast session of the image: the PXE-booted agents take the stream and
    /// catch up over HTTP (needs --image).
    #[arg(long, requires = "image")]
    multicast: bool,
    /// With --multicast: PCs to wait for before streaming.
    #[arg(long, default_value_t = 1)]
    expect: usize,
    #[command(flatten)]
    data: DataPlaneArgs,
}

/// Runs `roomcast serve` until killed.
pub fn run(args: ServeArgs) -> Result<u8, CliError> {
    serve(args)
        .map(|()| exit::OK)
        .map_err(|e| e.prefixed("roomcast serve: "))
}

fn serve(a: ServeArgs) -> Result<(), CliError> {
    init_tracing();
    let c = a.room.resolve()?;
    let subnet = match c.subnet {
        Some(s) if !c.interface.is_empty() && !c.machines.is_empty() => s,
        _ => return Err("need --room, or --interface, --subnet and --machine".into()),
    };
    let data = if a.multicast {
        Some(a.data.data_plane(c.group.as_deref(), c.link_mbps)?)
    } else {
        None
    };
    let served = served_image(a.store.as_deref(), a.image.as_deref())?;
    let names: BTreeMap<Mac, String> = c.machines.iter().cloned().collect();
    let wake_order: Vec<Mac> = c.machines.iter().map(|(m, _)| *m).collect();
    let root = BootRoot::new(&a.boot_dir).map_err(|e| format!("{}: {e}", a.boot_dir.display()))?;
    let secure_boot = a.secure_boot || c.secure_boot;
    if secure_boot {
        crate::bootenv::secureboot::check_boot_root(&root)?;
    }
    std::fs::create_dir_all(&a.reports).map_err(|e| format!("{}: {e}", a.reports.display()))?;
    let mut services = RoomServices::on(&c.interface, Some(subnet)).map_err(|e| e.to_string())?;
    let server = services.server();
    let session = match (&data, &served) {
        (Some(d), Some(img)) => Some(crate::serve::SessionPlan {
            store: img.store.clone(),
            image: img.id,
            interface: server,
            machines: wake_order.clone(),
            expect: a.expect,
            data: d.clone(),
            catch_up_wait: a.data.catch_up_wait(),
        }),
        _ => None,
    };
    let (service, base_url) = services
        .http(a.http_port, |base_url| {
            BootService::new(
                BootConfig {
                    campaign: a.campaign.clone(),
                    machines: names.clone(),
                    base_url: base_url.to_string(),
                    kernel: crate::bootenv::KERNEL.into(),
                    initrd: crate::bootenv::INITRD.into(),
                    // Tells the boot environment's init to run the agent rather than only report
                    // facts.
                    // The room's system-disk rule, when `--room` names one (issue 21).
                    cmdline: {
                        let base = match (&a.image, &c.system_disk) {
                            (Some(_), Some(rule)) => format!(
                                "{} {} {}={}",
                                a.cmdline,
                                AgentMode::Restore.cmdline_flag(),
                                roomcast_proto::contract::cmdline::SYSDISK,
                                rule.to_word()
                            ),
                            (Some(_), None) => {
                                format!("{} {}", a.cmdline, AgentMode::Restore.cmdline_flag())
                            }
                            (None, _) => a.cmdline.clone(),
                        };
                        // The profile's grow_last_partition (issue 23).
                        if a.image.is_some() && c.grow_last {
                            format!("{base} {}=last", roomcast_proto::contract::cmdline::GROW)
                        } else {
                            base
                        }
                    },
                    reports_dir: a.reports.clone(),
                    image: served,
                },
                root.clone(),
            )
        })
        .map_err(|e| e.to_string())?;
    // `--room`: the room's one PC model, checked on each PXE-booted PC's facts before it is served
    // the image.
    service.expect(c.expected.clone(), false);
    let mut pxe = Pxe::new(
        root,
        &base_url,
        names.keys().copied().collect(),
        service.pxe_gate(),
    );
    pxe.uefi_boot_file = a.uefi_file.clone();
    pxe.secure_boot = secure_boot;
    pxe.scripts = Some(service.clone());
    pxe.announce_ra = a.announce_ra;
    pxe.authoritative = match &a.authoritative {
        None => None,
        Some(range) => Some(parse_pool(range, subnet)?),
    };
    let wake = a.wake.map(|deadline| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        pxe.seen = Some(tx);
        let mut plan = WakePlan::new(wake_order);
        plan.deadline = std::time::Duration::from_secs(deadline);
        plan.repeat_every = std::time::Duration::from_secs(a.wake_every);
        (plan, rx)
    });
    services.pxe(pxe).map_err(|e| e.to_string())?;
    if let Some((plan, mut rx)) = wake {
        let interface = c.interface.clone();
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let result = Waker::open(&interface).and_then(|mut w| {
                w.run(&plan, None, || {
                    while let Ok(mac) = rx.try_recv() {
                        seen.insert(mac);
                    }
                    seen.clone()
                })
            });
            match result {
                Ok(never) if never.is_empty() => tracing::info!("wake: every machine was seen"),
                Ok(never) => {
                    tracing::warn!(?never, "wake: machines never seen before the deadline")
                }
                Err(e) => tracing::error!(%e, "wake failed"),
            }
        });
    }
    let image_note = match &a.image {
        Some(id) => format!(", image {id}"),
        None => String::new(),
    };
    println!(
        "serving campaign {} on {} ({server}): proxyDHCP 67+4011, TFTP 69, {base_url}{image_note}",
        a.campaign, c.interface
    );
    if let Some(plan) = session {
        let for_progress = names.clone();
        let progress =
            move |p: &crate::serve::Progress| super::deploy::print_progress(p, &for_progress);
        let task = services.multicast(&service, plan, Box::new(progress));
        services.handle().spawn(async move {
            match task.await {
                Ok(Ok(r)) => super::deploy::print_summary(&r, &names),
                Ok(Err(e)) => eprintln!("roomcast serve: multicast session: {e}"),
                Err(e) => eprintln!("roomcast serve: multicast session: {e}"),
            }
        });
    }
    Ok(services.run_until_ctrl_c()?)
}

/// The campaign's image from `--store` and `--image`.
fn served_image(
    store: Option<&std::path::Path>,
    image: Option<&str>,
) -> Result<Option<crate::net::http::ServedImage>, String> {
    let (Some(dir), Some(prefix)) = (store, image) else {
        return Ok(None);
    };
    let store = roomcast_store::Store::open(dir).map_err(|e| e.to_string())?;
    let id = store
        .resolve(prefix)
        .map_err(|e| format!("--image {prefix}: {e}"))?;
    Ok(Some(crate::net::http::ServedImage { store, id }))
}

/// `FIRST-LAST`, both inside the room subnet.
fn parse_pool(range: &str, subnet: Subnet) -> Result<Pool, String> {
    let bad = || {
        format!(
            "--authoritative {range:?}: want FIRST-LAST inside {}/{}",
            subnet.addr, subnet.prefix
        )
    };
    let (first, last) = range.split_once('-').ok_or_else(bad)?;
    let first: std::net::Ipv4Addr = first.parse().map_err(|_| bad())?;
    let last: std::net::Ipv4Addr = last.parse().map_err(|_| bad())?;
    if !subnet.contains(first) || !subnet.contains(last) || first > last {
        return Err(bad());
    }
    let mask = u32::MAX
        .checked_shl(32 - u32::from(subnet.prefix))
        .unwrap_or(0);
    Ok(Pool {
        first,
        last,
        mask: mask.into(),
        router: None,
        lease_secs: 3600,
    })
}
