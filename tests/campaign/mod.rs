//! Campaign tests with real components: OpenSSH servers and a Samba AD DC in network namespaces.

mod ad;
mod cli;
mod crash;
mod imaging;
mod lab;
mod remote;
mod software_only;
mod sshd;
mod steps;
