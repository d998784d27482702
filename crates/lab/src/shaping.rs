//! Link rate limits. This kernel has no `netem`, so a link's speed is a token bucket filter (`tbf`)
//! on both ends of its veth pair: the host end limits what the switch delivers to the machine, the
//! namespace end what the machine sends.

use super::{LabError, cmd};

/// A token bucket: rate, burst and queueing latency, as given to `tc qdisc ... tbf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Rate in bits per second.
    pub rate_bit: u64,
    /// Bucket size in bytes: how much may leave at once after an idle period.
    pub burst_bytes: u32,
    /// Longest a packet may wait in the queue before tbf drops it, in milliseconds.
    pub latency_ms: u32,
}

impl Tbf {
    /// `mbit` Mbit/s with the burst (64 KiB) and latency (20 ms) measured to hold the rate here.
    pub fn mbit(mbit: u64) -> Self {
        Self {
            rate_bit: mbit * 1_000_000,
            burst_bytes: 64 * 1024,
            latency_ms: 20,
        }
    }

    /// Seconds that `bytes` take at this rate: the "line-rate time" benchmarks compare against.
    pub fn line_rate_secs(&self, bytes: u64) -> f64 {
        bytes as f64 * 8.0 / self.rate_bit as f64
    }
}

/// Puts `tbf` on `dev`, in namespace `netns` or in the root namespace when `None`.
pub fn apply(prefix: &str, netns: Option<&str>, dev: &str, tbf: &Tbf) -> Result<(), LabError> {
    let rate = format!("{}bit", tbf.rate_bit);
    let burst = tbf.burst_bytes.to_string();
    let latency = format!("{}ms", tbf.latency_ms);
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend([
        "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst, "latency",
        &latency,
    ]);
    cmd::run(&format!("lab {prefix}: rate-limiting {dev}"), "tc", &args).map(drop)
}

/// Removes any root qdisc of `dev` (back to the default, unlimited).
pub fn clear(prefix: &str, netns: Option<&str>, dev: &str) -> Result<(), LabError> {
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["qdisc", "del", "dev", dev, "root"]);
    match cmd::run(
        &format!("lab {prefix}: removing the rate limit of {dev}"),
        "tc",
        &args,
    ) {
        Ok(_) => Ok(()),
        // No root qdisc to delete: already unlimited.
        Err(LabError::Command { stderr, .. })
            if stderr.contains("Cannot delete qdisc with handle of zero")
                || stderr.contains("No such file or directory") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// What `tc qdisc show dev DEV` prints, for tests and diagnostics.
pub fn show(prefix: &str, netns: Option<&str>, dev: &str) -> Result<String, LabError> {
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["qdisc", "show", "dev", dev]);
    cmd::run(
        &format!("lab {prefix}: showing qdiscs of {dev}"),
        "tc",
        &args,
    )
}
