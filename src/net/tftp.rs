//! Read-only TFTP for the iPXE binaries (`async-tftp`), over a [`BootRoot`]: firmware PXE can only
//! fetch its first file by TFTP. Write requests are refused; paths go through [`BootRoot::resolve`].

use crate::net::files::BootRoot;
use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;

/// Serves files of a [`BootRoot`]; whole files are read into memory (boot files are < 1 MiB).
pub struct BootFiles {
    root: BootRoot,
}

impl BootFiles {
    /// Serves `root`.
    pub fn new(root: BootRoot) -> Self {
        BootFiles { root }
    }
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

/// Serves `root` on `socket` (already bound, e.g. to the room interface's address, port 69) until
/// the task is dropped.
pub async fn serve(root: BootRoot, socket: UdpSocket) -> Result<(), async_tftp::Error> {
    let server = TftpServerBuilder::with_handler(BootFiles::new(root))
        .std_socket(socket)?
        .build()
        .await?;
    server.serve().await
}
