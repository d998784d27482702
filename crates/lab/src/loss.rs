//! Packet loss, injected by nftables inside a receiving namespace: `numgen random mod 100 < P drop`
//! on a UDP port range gives independent loss per receiver, which is what a multicast sender must
//! cope with. Two named counters tell a test how many packets were seen and how many dropped.

use super::{LabError, cmd};
use std::io::Write;
use std::ops::RangeInclusive;
use std::process::{Command, Stdio};

/// The nftables table the lab owns inside a namespace (nothing else is ever touched).
pub const TABLE: &str = "roomcast_lab";

/// Packets counted by the loss rule of one namespace since it was (re)installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossCounters {
    /// UDP packets that arrived for the port range.
    pub seen: u64,
    /// Of those, the packets the rule dropped.
    pub dropped: u64,
}

/// Installs (or replaces, atomically) the loss rule in namespace `netns`.
pub fn install(
    prefix: &str,
    netns: &str,
    percent: u8,
    ports: &RangeInclusive<u16>,
) -> Result<(), LabError> {
    let (lo, hi) = (ports.start(), ports.end());
    // The empty `table` line makes the `delete` valid when no table exists yet: one transaction.
    let script = format!(
        "table inet {TABLE} {{}}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tcounter seen {{}}\n\
         \tcounter dropped {{}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority 0; policy accept;\n\
         \t\tudp dport {lo}-{hi} counter name \"seen\"\n\
         \t\tudp dport {lo}-{hi} numgen random mod 100 < {percent} counter name \"dropped\" drop\n\
         \t}}\n\
         }}\n"
    );
    nft_script(
        &format!("lab {prefix}: installing {percent} % loss on UDP {lo}-{hi} in {netns}"),
        netns,
        &script,
    )
}

/// Removes the loss rule of `netns` (no error when there is none).
pub fn remove(prefix: &str, netns: &str) -> Result<(), LabError> {
    let script = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
    nft_script(
        &format!("lab {prefix}: removing loss in {netns}"),
        netns,
        &script,
    )
}

/// Reads the two counters of `netns`.
pub fn counters(prefix: &str, netns: &str) -> Result<LossCounters, LabError> {
    let mut c = LossCounters::default();
    for (name, slot) in [("seen", &mut c.seen), ("dropped", &mut c.dropped)] {
        let step = format!("lab {prefix}: reading loss counter {name} in {netns}");
        let args = [
            "netns", "exec", netns, "nft", "list", "counter", "inet", TABLE, name,
        ];
        let out = cmd::run(&step, "ip", &args)?;
        *slot = parse_packets(&out).ok_or_else(|| LabError::Parse {
            step,
            command: format!("ip {}", args.join(" ")),
            output: out.clone(),
        })?;
    }
    Ok(c)
}

/// The `packets N` figure of `nft list counter` output.
fn parse_packets(out: &str) -> Option<u64> {
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            return words.next()?.parse().ok();
        }
    }
    None
}

pub(crate) fn nft_script(step: &str, netns: &str, script: &str) -> Result<(), LabError> {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns, "nft", "-f", "-"]);
    let described = cmd::describe(&command);
    let spawn_err = |source| LabError::Spawn {
        step: step.to_owned(),
        command: described.clone(),
        source,
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(script.as_bytes())
        .map_err(spawn_err)?;
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            step: step.to_owned(),
            command: described,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_nft_counter_listing() {
        let out =
            "table inet roomcast_lab {\n\tcounter dropped {\n\t\tpackets 412 bytes 28016\n\t}\n}\n";
        assert_eq!(super::parse_packets(out), Some(412));
        assert_eq!(super::parse_packets("table inet x {}"), None);
    }
}
