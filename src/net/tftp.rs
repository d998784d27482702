//! Read-only TFTP for the iPXE binaries (`async-tftp`), over a [`BootRoot`]: firmware PXE can only
//! fetch its first file by TFTP. Write requests are refused; paths go through [`BootRoot::resolve`].
//!
//! The Secure Boot chain (`bootenv::secureboot`) fetches everything by TFTP, Debian's signed GRUB
//! having no HTTP: its per-machine configuration `boot/<mac>.grub` is not a file but the boot
//! service's answer ([`BootService::boot_script_for`] with [`Loader::Grub`]), through the same PXE
//! gate as iPXE's `/boot/<mac>.ipxe`, the client's address being the TFTP request's source.

use crate::net::files::BootRoot;
use crate::net::http::{BootService, Loader};
use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use roomcast_proto::mac::Mac;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;

/// Serves files of a [`BootRoot`]; whole files are read into memory (iPXE and shim are < 2 MiB;
/// the Secure Boot chain's kernel and initramfs about 8 MB each).
pub struct BootFiles {
    root: BootRoot,
    scripts: Option<Arc<BootService>>,
}

impl BootFiles {
    /// Serves `root`; with `scripts`, also GRUB's `boot/<mac>.grub` from that boot service.
    pub fn new(root: BootRoot, scripts: Option<Arc<BootService>>) -> Self {
        BootFiles { root, scripts }
    }
}

/// The machine whose GRUB configuration `requested` names (`boot/<mac>.grub`, GRUB's
/// `${net_default_mac}` spelling `52:54:00:..`, a leading `/` tolerated).
pub fn grub_script_mac(requested: &str) -> Option<Mac> {
    let name = requested.strip_prefix('/').unwrap_or(requested);
    name.strip_prefix("boot/")?
        .strip_suffix(".grub")?
        .parse()
        .ok()
}

impl Handler for BootFiles {
    type Reader = futures_lite::io::Cursor<Vec<u8>>;
    type Writer = futures_lite::io::Sink;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Self::Reader, Option<u64>), packet::Error> {
        let requested = path.to_string_lossy();
        if let (Some(service), Some(mac)) = (&self.scripts, grub_script_mac(&requested)) {
            let from = match client.ip() {
                IpAddr::V4(a) => a,
                IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            };
            let script = service
                .boot_script_for(Loader::Grub, mac, from)
                .map_err(|e| {
                    tracing::error!(%mac, %e, "GRUB boot script template");
                    packet::Error::Msg("template error".into())
                })?
                .into_bytes();
            let len = script.len() as u64;
            return Ok((futures_lite::io::Cursor::new(script), Some(len)));
        }
        let file = self.root.resolve(&requested).map_err(|e| {
            tracing::info!(%client, %e, "tftp refused");
            match e {
                crate::net::files::Refused::NotFound(_) => packet::Error::FileNotFound,
                _ => packet::Error::PermissionDenied,
            }
        })?;
        // Boot files are small; a blocking read keeps this independent of the executor polling it.
        let bytes = std::fs::read(file).map_err(|_| packet::Error::FileNotFound)?;
        tracing::info!(%client, file = %requested, bytes = bytes.len(), "tftp");
        let len = bytes.len() as u64;
        Ok((futures_lite::io::Cursor::new(bytes), Some(len)))
    }

    async fn write_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> Result<Self::Writer, packet::Error> {
        tracing::info!(%client, path = %path.display(), "tftp write refused");
        Err(packet::Error::IllegalOperation)
    }
}

/// Serves `files` on `socket` (already bound, e.g. to the room interface's address, port 69) until
/// the task is dropped.
pub async fn serve(files: BootFiles, socket: UdpSocket) -> Result<(), async_tftp::Error> {
    let server = TftpServerBuilder::with_handler(files)
        .std_socket(socket)?
        .build()
        .await?;
    server.serve().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_asks_for_its_script_by_mac_with_colons() {
        let mac: Mac = "52:54:00:18:05:01".parse().unwrap();
        for asked in [
            "/boot/52:54:00:18:05:01.grub",
            "boot/52:54:00:18:05:01.grub",
            "boot/52-54-00-18-05-01.grub",
        ] {
            assert_eq!(grub_script_mac(asked), Some(mac), "{asked}");
        }
        for other in [
            "/boot/52:54:00:18:05:01.ipxe",
            "grub/grub.cfg",
            "boot/../52:54:00:18:05:01.grub",
            "/boot/52:54:00:18:05.grub",
        ] {
            assert_eq!(grub_script_mac(other), None, "{other}");
        }
    }
}
