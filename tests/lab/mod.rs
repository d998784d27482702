//! The virtual room (`roomcast_lab`) with real namespaces, bridges, tbf, nftables and Debian's
//! udpcast. These tests need root (CI runs as root) and remove what they create.

mod basics;
mod bench;
mod loss;
mod network;
mod shaping;
mod udpcast;

use std::process::Output;

/// Runs a command to completion; panics with its stderr if it could not start.
pub fn output(cmd: &mut std::process::Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// True when `ip netns list` or `ip link` still shows anything named after `prefix`.
pub fn anything_left(prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    for args in [&["netns", "list"][..], &["-o", "link", "show"][..]] {
        let out = output(std::process::Command::new("ip").args(args));
        let text = String::from_utf8_lossy(&out.stdout);
        left.extend(
            text.lines()
                .filter(|l| l.contains(prefix))
                .map(str::to_owned),
        );
    }
    left
}
