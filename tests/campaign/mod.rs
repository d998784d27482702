//! Campaign tests with real components: OpenSSH servers and a Samba AD DC in network namespaces.

mod ad;
mod cli;
mod crash;
mod homogeneity;
pub(crate) mod imaging;
mod imaging_crash;
mod imaging_pxe;
mod remote;
mod repair;
mod run;
mod software_only;
mod steps;
mod windows;
