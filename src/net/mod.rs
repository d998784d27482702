//! Drivers that put the sans-IO protocols of `roomcast-proto` on real sockets, on one named
//! interface: proxyDHCP, TFTP, the boot HTTP service and its capture uploads, Wake-on-LAN.

pub mod capture;
pub mod files;
pub mod http;
pub mod proxydhcp;
pub mod pxe_gate;
pub mod ra;
pub mod tftp;
pub mod upload;
pub mod wol;

/// The whole HTTP router of a room's boot service: boot scripts, files, the image, the agents'
/// session info and reports ([`http`]), and the capture uploads ([`upload`]). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: a boot script depends on who asks.
pub fn router(service: std::sync::Arc<http::BootService>) -> axum::Router {
    http::routes().merge(upload::routes()).with_state(service)
}
