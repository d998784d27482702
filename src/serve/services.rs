//! [`RoomServices`]: the one way roomcast starts the services of a room — the boot HTTP service
//! (boot scripts, boot files, the image, capture uploads, reports), proxyDHCP and TFTP (PXE), and a
//! multicast session — every one bound to the room interface's address and to nothing else.
//! `roomcast serve`, `roomcast deploy` ([`super::Deployment`]) and the campaign's imaging sessions
//! (their HTTP service, and `PxeBoot` for PXE) start them here, with the defaults below.
//!
//! The services run on a tokio runtime the value owns; dropping it stops them all.

use super::{DeployError, DeployReport, Progress, SessionPlan, run_session};
use crate::net::files::BootRoot;
use crate::net::http::{self, BootService};
use crate::net::proxydhcp::{ProxyDhcp, Subnet};
use crate::net::pxe_gate::SharedGate;
use roomcast_proto::dhcp::ProxyConfig;
use roomcast_proto::dhcp_authoritative::{Leases, Pool};
use roomcast_proto::mac::Mac;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// HTTP port of the boot service when nothing else is said (`roomcast serve --http-port`).
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// Boot file proxyDHCP hands BIOS clients (Debian's `ipxe` package).
pub const BIOS_BOOT_FILE: &str = "undionly.kpxe";
/// Boot file proxyDHCP hands UEFI x64 clients unless told otherwise: `snponly.efi` uses the
/// firmware's network driver (faster on OVMF than `ipxe.efi`'s own drivers).
pub const DEFAULT_UEFI_BOOT_FILE: &str = "snponly.efi";
/// Extra kernel command line of the agent when nothing else is said (`roomcast serve --cmdline`).
/// The kernel console goes to the display and the serial port; the last `console=` is the one the
/// agent's own lines go to (it writes to the display as well, `roomcast_agent::screen`).
pub const DEFAULT_CMDLINE: &str = "console=tty0 console=ttyS0,115200 quiet";

/// What PXE needs besides the room: the boot root TFTP serves and the boot files it names.
#[derive(Debug, Clone)]
pub struct Pxe {
    /// The boot root (`roomcast bootenv build --out`).
    pub root: BootRoot,
    /// Base URL of the HTTP service iPXE asks next.
    pub http_base: String,
    /// The machines answered (the campaign's allowlist); every other MAC is ignored.
    pub allowlist: BTreeSet<Mac>,
    /// Boot file for UEFI x64 clients.
    pub uefi_boot_file: String,
    /// Send "no router here" IPv6 router advertisements every second (saves iPXE a 13-16 s wait
    /// on networks without IPv6 routers).
    pub announce_ra: bool,
    /// Authoritative DHCP from this pool instead of proxyDHCP (isolated networks only).
    pub authoritative: Option<Pool>,
    /// Every campaign MAC seen asking is sent here (Wake-on-LAN stops on it).
    pub seen: Option<tokio::sync::mpsc::UnboundedSender<Mac>>,
    /// The boot service's gate ([`BootService::pxe_gate`]): what proxyDHCP sees decides who gets a
    /// boot token.
    pub gate: SharedGate,
    /// The room's PCs boot with Secure Boot on: UEFI clients get Debian's signed shim
    /// ([`crate::bootenv::secureboot::SHIM`], from `bootenv build --secure-boot`) instead of
    /// iPXE, and TFTP answers GRUB's `boot/<mac>.grub` from [`Pxe::scripts`].
    pub secure_boot: bool,
    /// The boot service whose scripts TFTP hands GRUB (the one [`Pxe::gate`] belongs to); without
    /// it a Secure Boot PC's GRUB finds no configuration and returns to the firmware.
    pub scripts: Option<Arc<BootService>>,
}

impl Pxe {
    /// PXE for `allowlist` from `root`, iPXE sent on to `http_base`, feeding `gate` (the HTTP
    /// service's), with the defaults above.
    pub fn new(root: BootRoot, http_base: &str, allowlist: BTreeSet<Mac>, gate: SharedGate) -> Pxe {
        Pxe {
            root,
            http_base: http_base.to_string(),
            allowlist,
            uefi_boot_file: DEFAULT_UEFI_BOOT_FILE.into(),
            announce_ra: false,
            authoritative: None,
            seen: None,
            gate,
            secure_boot: false,
            scripts: None,
        }
    }
}

/// The running services of one room; dropping it stops them.
pub struct RoomServices {
    interface: String,
    subnet: Option<Subnet>,
    server: Ipv4Addr,
    runtime: Option<tokio::runtime::Runtime>,
    /// Long-running services, by name: one ending is a failure.
    services: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl RoomServices {
    /// Resolves the room interface's address (inside `subnet` when given) and starts the runtime
    /// the services will run on. Nothing is bound yet.
    pub fn on(interface: &str, subnet: Option<Subnet>) -> Result<RoomServices, DeployError> {
        let server = super::interface_addr(interface, subnet)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("room-services")
            .enable_all()
            .build()
            .map_err(|source| DeployError::Io {
                step: "starting the services' runtime".into(),
                source,
            })?;
        Ok(RoomServices {
            interface: interface.to_string(),
            subnet,
            server,
            runtime: Some(runtime),
            services: Vec::new(),
        })
    }

    /// The room interface's address: the only address anything is bound to.
    pub fn server(&self) -> Ipv4Addr {
        self.server
    }

    /// The runtime the services run on (for the caller's own tasks next to them).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("runtime until drop").handle()
    }

    /// Binds the boot HTTP service on the room address at `port` (0: any free port), held to the
    /// room interface (SO_BINDTODEVICE), and serves the service `make` builds for its base URL.
    pub fn http(
        &mut self,
        port: u16,
        make: impl FnOnce(&str) -> Result<Arc<BootService>, http::ServiceError>,
    ) -> Result<(Arc<BootService>, String), DeployError> {
        let listener = bind_on_interface(&self.interface, SocketAddrV4::new(self.server, port))?;
        let local = match listener.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            _ => SocketAddrV4::new(self.server, port),
        };
        let base_url = format!("http://{local}");
        let service = make(&base_url)?;
        let router = crate::net::router(service.clone());
        let _in_runtime = self.handle().enter();
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|source| DeployError::Io {
                step: format!("HTTP on {local}"),
                source,
            })?;
        let task = self.handle().spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .map_err(|e| format!("HTTP stopped: {e}"))
        });
        self.services.push(("HTTP", task));
        Ok((service, base_url))
    }

    /// proxyDHCP (67 and 4011) and TFTP (69) on the room interface, for `pxe`.
    pub fn pxe(&mut self, pxe: Pxe) -> Result<(), DeployError> {
        let subnet = self.subnet.ok_or_else(|| {
            DeployError::Config("PXE needs the room subnet (the interface's address in it)".into())
        })?;
        let config = ProxyConfig {
            server: self.server,
            bios_boot_file: BIOS_BOOT_FILE.into(),
            uefi_boot_file: pxe.uefi_boot_file,
            secure_boot_file: pxe
                .secure_boot
                .then(|| crate::bootenv::secureboot::SHIM.to_string()),
            http_base: pxe.http_base,
            allowlist: pxe.allowlist,
        };
        let tftp_addr = SocketAddrV4::new(self.server, 69);
        let tftp = std::net::UdpSocket::bind(tftp_addr).map_err(|source| DeployError::Io {
            step: format!("TFTP {tftp_addr}"),
            source,
        })?;
        let _in_runtime = self.handle().enter();
        let mut proxy = ProxyDhcp::bind(&self.interface, subnet, config).map_err(|e| {
            DeployError::Interface {
                interface: self.interface.clone(),
                reason: format!("proxyDHCP: {e}"),
            }
        })?;
        if let Some(pool) = pxe.authoritative {
            proxy = proxy.authoritative(Leases::new(pool));
        }
        if let Some(seen) = pxe.seen {
            proxy = proxy.notify_seen(seen);
        }
        proxy = proxy.witness(pxe.gate);
        let dhcp = self.handle().spawn(async move {
            proxy
                .run()
                .await
                .map_err(|e| format!("proxyDHCP stopped: {e}"))
        });
        self.services.push(("proxyDHCP", dhcp));
        let files = crate::net::tftp::BootFiles::new(pxe.root, pxe.scripts);
        let tftp = self.handle().spawn(async move {
            crate::net::tftp::serve(files, tftp)
                .await
                .map_err(|e| format!("TFTP stopped: {e}"))
        });
        self.services.push(("TFTP", tftp));
        if pxe.announce_ra {
            let interface = self.interface.clone();
            let ra = self.handle().spawn(async move {
                crate::net::ra::announce(interface, Duration::from_secs(1))
                    .await
                    .map_err(|e| format!("router advertisements stopped: {e}"))
            });
            self.services.push(("router advertisements", ra));
        }
        Ok(())
    }

    /// Starts a multicast session of `service`'s image next to the other services.
    pub fn multicast(
        &self,
        service: &Arc<BootService>,
        plan: SessionPlan,
        progress: Box<dyn Fn(&Progress) + Send + Sync>,
    ) -> JoinHandle<Result<DeployReport, DeployError>> {
        let service = service.clone();
        self.handle()
            .spawn(async move { run_session(service, plan, &*progress).await })
    }

    /// Waits for `task` (a multicast session) from outside the runtime.
    pub fn block_on<T>(&self, task: JoinHandle<T>) -> Result<T, tokio::task::JoinError> {
        self.handle().block_on(task)
    }

    /// Serves until a service stops (its error) or Ctrl-C (`Ok`).
    pub fn run_until_ctrl_c(mut self) -> Result<(), String> {
        use std::future::Future;
        use std::task::Poll;
        let mut services = std::mem::take(&mut self.services);
        self.handle().block_on(async move {
            let stopped = std::future::poll_fn(|cx| {
                for (name, task) in services.iter_mut() {
                    if let Poll::Ready(r) = std::pin::Pin::new(task).poll(cx) {
                        return Poll::Ready(match r {
                            Ok(Ok(())) => format!("{name} stopped"),
                            Ok(Err(e)) => e,
                            Err(e) => format!("{name}: {e}"),
                        });
                    }
                }
                Poll::Pending
            });
            tokio::select! {
                why = stopped => Err(why),
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        })
    }
}

impl Drop for RoomServices {
    fn drop(&mut self) {
        for (_, task) in &self.services {
            task.abort();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A TCP listener on `addr`, held to the room interface (SO_BINDTODEVICE): nothing that arrives on
/// another interface is answered.
fn bind_on_interface(
    interface: &str,
    addr: SocketAddrV4,
) -> Result<std::net::TcpListener, DeployError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |step: &str| {
        let step = format!("HTTP {addr} on {interface}: {step}");
        move |source| DeployError::Io { step, source }
    };
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(err("socket"))?;
    s.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
    s.bind_device(Some(interface.as_bytes()))
        .map_err(err("SO_BINDTODEVICE"))?;
    s.bind(&addr.into()).map_err(err("bind"))?;
    s.listen(128).map_err(err("listen"))?;
    s.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    Ok(s.into())
}
