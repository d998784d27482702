//! Lab errors: each names the step, the command and what the tool said, so a failed setup on a CI
//! machine can be understood from the message alone.

use std::net::Ipv4Addr;

/// Everything that can go wrong while building, using or removing a virtual room.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An address outside 198.18.0.0/15: network tests never use any other unicast range.
    #[error("{addr} is outside the lab range 198.18.0.0/15 (network tests use no other address)")]
    AddressOutsideLab {
        /// The refused address.
        addr: Ipv4Addr,
    },
    /// A multicast group outside 239.255.0.0/16 (administratively scoped, never routed).
    #[error("{addr} is outside the lab multicast range 239.255.0.0/16")]
    MulticastOutsideLab {
        /// The refused group.
        addr: Ipv4Addr,
    },
    /// A prefix that does not look like a lab's, refused so that cleanup can never touch a real
    /// interface such as `eth0`.
    #[error(
        "{prefix:?} is not a lab prefix (expected `rc` followed by 4 lowercase letters or digits)"
    )]
    BadPrefix {
        /// The refused prefix.
        prefix: String,
    },
    /// A request the lab cannot honour (bad PC index, loss above 100 %, ...).
    #[error("lab {prefix}: {reason}")]
    Invalid {
        /// The lab concerned.
        prefix: String,
        /// What was wrong with the request.
        reason: String,
    },
    /// A tool (`ip`, `tc`, `nft`) ran and failed.
    #[error("{step}: `{command}` failed ({status}): {stderr}")]
    Command {
        /// What the lab was doing, e.g. "lab rcab12: adding pc3's address".
        step: String,
        /// The command line.
        command: String,
        /// Exit status as printed by the OS.
        status: String,
        /// What the tool wrote on stderr (trimmed).
        stderr: String,
    },
    /// A tool could not be started at all (not installed, not root, ...).
    #[error(
        "{step}: cannot run `{command}`: {source} (is iproute2/nftables installed, are we root?)"
    )]
    Spawn {
        /// What the lab was doing.
        step: String,
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file or system call failed (state file, setns, ...).
    #[error("{step}: {source}")]
    Io {
        /// What the lab was doing.
        step: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Output of a tool that the lab could not understand.
    #[error("{step}: cannot parse the output of `{command}`: {output}")]
    Parse {
        /// What the lab was doing.
        step: String,
        /// The command line.
        command: String,
        /// The unexpected output.
        output: String,
    },
}
