//! The kernel command line a boot script gives the agent: `roomcast.<key>=<value>` words.
//!
//! The server writes them into the iPXE script ([`AgentCmdline::words`], [`AgentMode::cmdline_flag`]),
//! the boot environment's init (`templates/boot/init.sh`) reads them from `/proc/cmdline` and hands
//! them to `roomcast-agent`, and the lab reads them from a fetched script ([`AgentCmdline::parse_script`]).
//! A test of the boot environment checks that its init reads every key of [`KEYS`].

use std::fmt;

/// `roomcast.server=`: base URL of the boot service.
pub const SERVER: &str = "roomcast.server";
/// `roomcast.token=`: this boot's one-time token.
pub const TOKEN: &str = "roomcast.token";
/// `roomcast.mac=`: the MAC the PC booted with (picks the network card).
pub const MAC: &str = "roomcast.mac";
/// `roomcast.image=1`: restore the served image (steps b and g).
pub const IMAGE: &str = "roomcast.image";
/// `roomcast.capture=1`: upload the disk (step f).
pub const CAPTURE: &str = "roomcast.capture";
/// `roomcast.disk=`: the disk to write or read (default: the first disk the init finds).
pub const DISK: &str = "roomcast.disk";
/// `roomcast.contract=`: the contract version the server speaks (shown by the init on a mismatch).
pub const CONTRACT: &str = "roomcast.contract";

/// `roomcast.sysdisk=`: the system-disk rule ([`super::DiskRule::to_word`]) from the profile or
/// room; absent: the one internal disk.
pub const SYSDISK: &str = "roomcast.sysdisk";
/// `roomcast.wait=`: seconds a PC that failed keeps its message on the screen before powering off
/// (default [`DEFAULT_WAIT`]).
pub const WAIT: &str = "roomcast.wait";
/// `roomcast.grow=last`: on a disk larger than the image, grow the last partition and its file
/// system to the disk's end (the profile's `grow_last_partition`). Read by the agent from the
/// command line itself (the init does not need it).
pub const GROW: &str = "roomcast.grow";
/// Seconds a failed PC waits before powering off when `roomcast.wait=` is not given.
pub const DEFAULT_WAIT: u64 = 60;

/// Every key, for the init's test.
pub const KEYS: [&str; 9] = [
    SERVER, TOKEN, MAC, IMAGE, CAPTURE, DISK, CONTRACT, SYSDISK, WAIT,
];

/// The value of `key=` in a kernel command line (the last one wins, as the kernel's).
pub fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .rfind(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The booting MAC: `roomcast.mac=`, else pxelinux-style `BOOTIF=01-aa-bb-cc-dd-ee-ff`;
/// lowercase with colons.
pub fn boot_mac(cmdline: &str) -> Option<String> {
    if let Some(m) = value(cmdline, MAC) {
        return Some(m.to_ascii_lowercase());
    }
    let b = value(cmdline, "BOOTIF")?;
    let hex = b.strip_prefix("01-").unwrap_or(b);
    (hex.len() == 17).then(|| hex.replace('-', ":").to_ascii_lowercase())
}

/// What the agent does once booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// Write the served image onto the disk (steps b and g).
    Restore,
    /// Upload the disk to the server (step f).
    Capture,
}

impl AgentMode {
    /// The kernel command-line switch the boot environment's init reads.
    pub fn cmdline_flag(self) -> String {
        match self {
            AgentMode::Restore => format!("{IMAGE}=1"),
            AgentMode::Capture => format!("{CAPTURE}=1"),
        }
    }
}

impl fmt::Display for AgentMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentMode::Restore => "restore",
            AgentMode::Capture => "capture",
        })
    }
}

/// The agent's parameters on a kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCmdline {
    /// `roomcast.server=`.
    pub server: String,
    /// `roomcast.token=`.
    pub token: String,
    /// `roomcast.capture=1` or `roomcast.image=1`.
    pub mode: AgentMode,
}

impl AgentCmdline {
    /// The words a boot script puts after the extra kernel command line (the mode comes with
    /// that extra line, [`AgentMode::cmdline_flag`]).
    pub fn words(server: &str, token: &str, mac: &str) -> String {
        format!(
            "{SERVER}={server} {TOKEN}={token} {MAC}={mac} {CONTRACT}={}",
            super::CONTRACT_VERSION
        )
    }

    /// Reads the parameters from a kernel command line; `None` without a server, a token or a
    /// mode (a facts-only boot).
    pub fn parse(cmdline: &str) -> Option<AgentCmdline> {
        let (mut server, mut token, mut mode) = (None, None, None);
        let (capture, image) = (
            AgentMode::Capture.cmdline_flag(),
            AgentMode::Restore.cmdline_flag(),
        );
        for word in cmdline.split_whitespace() {
            match word.split_once('=') {
                Some((SERVER, v)) => server = Some(v.to_string()),
                Some((TOKEN, v)) => token = Some(v.to_string()),
                _ if word == capture => mode = Some(AgentMode::Capture),
                _ if word == image => mode = mode.or(Some(AgentMode::Restore)),
                _ => {}
            }
        }
        Some(AgentCmdline {
            server: server?,
            token: token?,
            mode: mode?,
        })
    }

    /// Reads the parameters from an iPXE boot script's `kernel` line; `None` for a script that
    /// boots the local disk (a machine outside the session) or one without a mode.
    pub fn parse_script(script: &str) -> Option<AgentCmdline> {
        let kernel = script.lines().find(|l| l.starts_with("kernel "))?;
        Self::parse(kernel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_the_boot_mac() {
        let c = "console=tty0 roomcast.wait=5 BOOTIF=01-52-54-00-AA-BB-CC roomcast.wait=7";
        assert_eq!(value(c, WAIT), Some("7"));
        assert_eq!(value(c, SYSDISK), None);
        assert_eq!(boot_mac(c).as_deref(), Some("52:54:00:aa:bb:cc"));
        let c = format!("{c} {MAC}=52:54:00:00:00:01");
        assert_eq!(boot_mac(&c).as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(boot_mac("quiet"), None);
    }

    #[test]
    fn boot_scripts_give_mode_server_and_token_or_nothing() {
        let words = AgentCmdline::words("http://198.18.0.1:8080", "abc123", "52:54:00:00:00:01");
        let script = format!(
            "#!ipxe\necho x\nkernel http://198.18.0.1:8080/files/vmlinuz initrd=initrd.gz \
             console=ttyS0 roomcast.capture=1 {words}\ninitrd x\nboot\n"
        );
        assert_eq!(
            AgentCmdline::parse_script(&script),
            Some(AgentCmdline {
                server: "http://198.18.0.1:8080".into(),
                token: "abc123".into(),
                mode: AgentMode::Capture,
            })
        );
        let restore = script.replace("roomcast.capture=1", "roomcast.image=1");
        assert_eq!(
            AgentCmdline::parse_script(&restore).map(|c| c.mode),
            Some(AgentMode::Restore)
        );
        // Facts-only boot (no mode), and the local-disk script of a machine outside the session.
        let facts = script.replace("roomcast.capture=1 ", "");
        assert_eq!(AgentCmdline::parse_script(&facts), None);
        assert_eq!(
            AgentCmdline::parse_script("#!ipxe\nsanboot --no-describe --drive 0x80 || exit\n"),
            None
        );
    }
}
