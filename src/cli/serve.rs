//! `roomcast serve`: the boot services of one campaign on the room interface — proxyDHCP (67, 4011),
//! TFTP (69) and HTTP (boot scripts, kernel, initramfs, agent reports).
//!
//! The interface, subnet and MAC allowlist come from the validated room file (`--room`); a room
//! file with errors is refused. `--interface`, `--subnet` and `--machine` override it (tests, or a
//! room not written down yet).

use super::exit;
use crate::net::files::BootRoot;
use crate::net::http::{self, BootConfig, BootService};
use crate::net::proxydhcp::{self, ProxyDhcp, Subnet};
use crate::net::tftp;
use crate::net::wol::Waker;
use clap::Args;
use roomcast_proto::dhcp::ProxyConfig;
use roomcast_proto::dhcp_authoritative::{Leases, Pool};
use roomcast_proto::mac::Mac;
use roomcast_proto::wol::WakePlan;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;

/// `roomcast serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The room file `rooms/<UAI>/<room>.yaml`: interface, subnet and machines (validated first).
    #[arg(long, required_unless_present_all = ["interface", "subnet", "machines"])]
    room: Option<PathBuf>,
    /// The room's interface: the only one anything is bound to (overrides the room file).
    #[arg(long)]
    interface: Option<String>,
    /// The room's subnet; the interface must have an address inside it (overrides the room file).
    #[arg(long)]
    subnet: Option<Subnet>,
    /// A machine of the campaign, `MAC` or `MAC=hostname` (repeat; replaces the room's machines).
    #[arg(long = "machine")]
    machines: Vec<String>,
    /// The boot root (`roomcast bootenv build --out`).
    #[arg(long)]
    boot_dir: PathBuf,
    /// Where agent reports are written.
    #[arg(long)]
    reports: PathBuf,
    /// HTTP port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Campaign name shown on the PCs.
    #[arg(long, default_value = "campaign")]
    campaign: String,
    /// Boot file for UEFI x64 firmware: snponly.efi (faster on OVMF) or ipxe.efi.
    #[arg(long, default_value = "snponly.efi")]
    uefi_file: String,
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
    #[arg(long, default_value = "console=ttyS0 quiet")]
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
    data: super::deploy::DataPlaneArgs,
}

/// Runs `roomcast serve` until killed.
pub fn run(args: ServeArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => exit::code(exit::OK),
        Err(e) => {
            eprintln!("roomcast serve: {e}");
            exit::code(exit::USAGE_OR_IO)
        }
    }
}

/// Interface, subnet and machines (MAC, hostname) of the campaign: the room file's, then the flags'.
pub(super) struct Campaign {
    pub(super) interface: String,
    pub(super) subnet: Subnet,
    pub(super) machines: Vec<(Mac, String)>,
    /// The room's multicast group (`network.multicast_group`), when from a room file.
    pub(super) group: Option<String>,
    /// The room's link speed in Mbit/s, when from a room file.
    pub(super) link_mbps: Option<u32>,
}

fn campaign(a: &ServeArgs) -> Result<Campaign, String> {
    let mut c = match &a.room {
        Some(path) => from_room(path)?,
        None => Campaign {
            interface: String::new(),
            subnet: Subnet {
                addr: std::net::Ipv4Addr::UNSPECIFIED,
                prefix: 0,
            },
            machines: Vec::new(),
            group: None,
            link_mbps: None,
        },
    };
    if let Some(i) = &a.interface {
        c.interface = i.clone();
    }
    if let Some(s) = a.subnet {
        c.subnet = s;
    }
    if !a.machines.is_empty() {
        c.machines.clear();
        for m in &a.machines {
            let (mac, host) = m.split_once('=').unwrap_or((m, ""));
            let mac: Mac = mac.parse().map_err(|e| format!("--machine {m}: {e}"))?;
            let host = if host.is_empty() {
                mac.hyphenated()
            } else {
                host.to_string()
            };
            c.machines.push((mac, host));
        }
    }
    if c.interface.is_empty() || c.machines.is_empty() {
        return Err("need --room, or --interface, --subnet and --machine".into());
    }
    Ok(c)
}

/// The campaign of a validated room file; refused when the room file has errors.
pub(super) fn from_room(path: &std::path::Path) -> Result<Campaign, String> {
    use crate::model::{self, finding::Severity};
    let mut files =
        model::load::load(std::slice::from_ref(&path.to_path_buf())).map_err(|e| e.to_string())?;
    let room_path = files
        .iter()
        .find(|f| f.target)
        .map(|f| f.path.clone())
        .ok_or_else(|| format!("{}: no YAML file", path.display()))?;
    for f in &mut files {
        f.target = true;
    }
    let v = model::validate(files, super::validate::today_utc());
    let errors: Vec<String> = v
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error && f.file == room_path)
        .map(super::validate::human_finding)
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "{room_path}: {} error(s), not serving it:\n{}",
            errors.len(),
            errors.join("")
        ));
    }
    let room = model::plan::find_room(&v.region, &room_path)
        .ok_or_else(|| format!("{room_path}: not a room"))?;
    let net = &room.doc.network;
    let subnet: Subnet = net
        .subnet
        .value
        .parse()
        .map_err(|e| format!("{room_path}: network.subnet: {e}"))?;
    let mut machines = Vec::new();
    for (i, m) in room.doc.machines.value.iter().enumerate() {
        let mac: Mac = m
            .mac
            .value
            .parse()
            .map_err(|e| format!("{room_path}: machines[{i}].mac: {e}"))?;
        let host = m
            .hostname
            .as_ref()
            .map_or_else(|| mac.hyphenated(), |h| h.value.clone());
        machines.push((mac, host));
    }
    Ok(Campaign {
        interface: net.interface.clone(),
        subnet,
        machines,
        group: Some(net.multicast_group.value.clone()),
        link_mbps: Some(net.link_speed_mbps.value),
    })
}

/// Log lines (tracing) on stderr, `RUST_LOG` or `roomcast=info`.
pub(super) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "roomcast=info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

fn serve(a: ServeArgs) -> Result<(), String> {
    init_tracing();
    let c = campaign(&a)?;
    let data = if a.multicast {
        Some(a.data.data_plane(c.group.as_deref(), c.link_mbps)?)
    } else {
        None
    };
    let mut machines = BTreeMap::new();
    let mut wake_order = Vec::new();
    let served = served_image(a.store.as_deref(), a.image.as_deref())?;
    let session = match (&data, &served) {
        (Some(d), Some(img)) => Some(crate::serve::SessionPlan {
            store: img.store.clone(),
            image: img.id,
            interface: std::net::Ipv4Addr::UNSPECIFIED,
            machines: c.machines.iter().map(|(m, _)| *m).collect(),
            expect: a.expect,
            data: d.clone(),
            catch_up_wait: a.data.catch_up_wait(),
        }),
        _ => None,
    };
    let names: BTreeMap<Mac, String> = c.machines.iter().cloned().collect();
    for (mac, host) in c.machines {
        machines.insert(mac, host);
        wake_order.push(mac);
    }
    let (interface, subnet) = (c.interface, c.subnet);
    let server = proxydhcp::room_address(&interface, subnet).map_err(|e| e.to_string())?;
    let base_url = format!("http://{server}:{}", a.http_port);
    let root = BootRoot::new(&a.boot_dir).map_err(|e| format!("{}: {e}", a.boot_dir.display()))?;
    std::fs::create_dir_all(&a.reports).map_err(|e| format!("{}: {e}", a.reports.display()))?;
    let proxy_config = ProxyConfig {
        server,
        bios_boot_file: "undionly.kpxe".into(),
        uefi_boot_file: a.uefi_file.clone(),
        http_base: base_url.clone(),
        allowlist: machines.keys().copied().collect(),
    };
    let service = BootService::new(
        BootConfig {
            campaign: a.campaign.clone(),
            machines,
            base_url: base_url.clone(),
            kernel: crate::bootenv::KERNEL.into(),
            initrd: crate::bootenv::INITRD.into(),
            // Tells the boot environment's init to run the agent rather than only report facts.
            cmdline: if a.image.is_some() {
                format!("{} roomcast.image=1", a.cmdline)
            } else {
                a.cmdline.clone()
            },
            reports_dir: a.reports.clone(),
            image: served,
        },
        root.clone(),
    )
    .map_err(|e| e.to_string())?;
    let image_note = match &a.image {
        Some(id) => format!(", image {id}"),
        None => String::new(),
    };
    let pool = match &a.authoritative {
        None => None,
        Some(range) => Some(parse_pool(range, subnet)?),
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut proxy =
            ProxyDhcp::bind(&interface, subnet, proxy_config).map_err(|e| e.to_string())?;
        if let Some(pool) = pool {
            proxy = proxy.authoritative(Leases::new(pool));
        }
        if let Some(deadline) = a.wake {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            proxy = proxy.notify_seen(tx);
            let mut plan = WakePlan::new(wake_order.clone());
            plan.deadline = std::time::Duration::from_secs(deadline);
            plan.repeat_every = std::time::Duration::from_secs(a.wake_every);
            let interface = interface.clone();
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
        let tftp_socket = std::net::UdpSocket::bind(SocketAddrV4::new(server, 69))
            .map_err(|e| format!("TFTP {server}:69: {e}"))?;
        let listener = tokio::net::TcpListener::bind(SocketAddrV4::new(server, a.http_port))
            .await
            .map_err(|e| format!("HTTP {server}:{}: {e}", a.http_port))?;
        println!(
            "serving campaign {} on {} ({server}): proxyDHCP 67+4011, TFTP 69, {base_url}{image_note}",
            a.campaign, interface
        );
        let tftp = tokio::spawn(tftp::serve(root, tftp_socket));
        if a.announce_ra {
            tokio::spawn(crate::net::ra::announce(
                interface.clone(),
                std::time::Duration::from_secs(1),
            ));
        }
        if let Some(mut plan) = session {
            plan.interface = server;
            let service = service.clone();
            tokio::spawn(async move {
                let progress = |p: &crate::serve::Progress| super::deploy::print_progress(p, &names);
                match crate::serve::run_session(service, plan, &progress).await {
                    Ok(r) => super::deploy::print_summary(&r, &names),
                    Err(e) => eprintln!("roomcast serve: multicast session: {e}"),
                }
            });
        }
        let http = tokio::spawn(async move { axum::serve(listener, http::router(service)).await });
        tokio::select! {
            r = proxy.run() => r.map_err(|e| e.to_string()),
            r = tftp => Err(format!("TFTP stopped: {r:?}")),
            r = http => Err(format!("HTTP stopped: {r:?}")),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
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
