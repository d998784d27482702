//! What `serve` and `deploy` share: the room and machine options (a checked room file, or flags
//! for a room not written down yet), the data-plane flags, and the tracing set-up of the
//! long-running commands.

use super::exit::CliError;
use crate::model::checked::load_room;
use crate::net::proxydhcp::Subnet;
use crate::serve::DataPlane;
use clap::Args;
use roomcast_proto::mac::Mac;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The room flags: a room file, then flags that override it.
#[derive(Debug, Args, Clone)]
pub struct RoomArgs {
    /// The room file `rooms/<UAI>/<room>.yaml`: interface, subnet, machines, multicast group and
    /// link speed. Checked with its profile and catalog entries first: any error refuses it.
    #[arg(long)]
    pub room: Option<PathBuf>,
    /// The room's interface: the only one anything is bound to (overrides the room file).
    #[arg(long)]
    pub interface: Option<String>,
    /// The room's subnet; the interface must have an address inside it (overrides the room file).
    #[arg(long)]
    pub subnet: Option<Subnet>,
    /// A machine, `MAC` or `MAC=hostname` (repeat; replaces the room's machines).
    #[arg(long = "machine")]
    pub machines: Vec<String>,
}

/// Interface, subnet and machines (MAC, hostname) of a room: the room file's, then the flags'.
#[derive(Debug, Clone, Default)]
pub struct RoomTarget {
    /// The room interface (empty when neither the room file nor a flag names it).
    pub interface: String,
    /// The room subnet, when known.
    pub subnet: Option<Subnet>,
    /// The machines; no other machine is served.
    pub machines: Vec<(Mac, String)>,
    /// The room's multicast group (`network.multicast_group`), when from a room file.
    pub group: Option<String>,
    /// The room's link speed in Mbit/s, when from a room file.
    pub link_mbps: Option<u32>,
    /// The system-disk rule (the room's, else its profile's), when from a room file.
    pub system_disk: Option<roomcast_proto::contract::DiskRule>,
    /// What the room file expects of each PC (the profile's model, the machine's
    /// `model_exception`, its serial), checked on the PC's facts; empty without a room file.
    pub expected: std::collections::BTreeMap<Mac, roomcast_proto::contract::PcExpected>,
    /// The profile's `grow_last_partition` (issue 23), when from a room file.
    pub grow_last: bool,
    /// The room's `secure_boot` (issue 20), when from a room file.
    pub secure_boot: bool,
}

impl RoomArgs {
    /// The room file's target (refused on any error in it, its profile or its catalog entries),
    /// overridden by the flags.
    pub fn resolve(&self) -> Result<RoomTarget, CliError> {
        let mut t = match &self.room {
            Some(path) => from_room(path)?,
            None => RoomTarget::default(),
        };
        if let Some(i) = &self.interface {
            t.interface = i.clone();
        }
        if let Some(s) = self.subnet {
            t.subnet = Some(s);
        }
        if !self.machines.is_empty() {
            t.machines = parse_machines(&self.machines)?;
        }
        Ok(t)
    }
}

/// The target of a checked room file (licences as of today, UTC).
fn from_room(path: &Path) -> Result<RoomTarget, CliError> {
    // A room that cannot be used is unusable input for these commands (exit 2), as a missing one.
    let checked = load_room(path, super::validate::today_utc())
        .map_err(|e| format!("{}: not serving it: {e}", path.display()))?;
    let (room, file) = (checked.room(), &checked.path);
    let net = &room.doc.network;
    let subnet: Subnet = net
        .subnet
        .value
        .parse()
        .map_err(|e| format!("{file}: network.subnet: {e}"))?;
    let profile = checked
        .validation
        .region
        .profiles
        .get(&room.doc.profile.value);
    let mut machines = Vec::new();
    let mut expected = std::collections::BTreeMap::new();
    for (i, m) in room.doc.machines.value.iter().enumerate() {
        let mac: Mac = m
            .mac
            .value
            .parse()
            .map_err(|e| format!("{file}: machines[{i}].mac: {e}"))?;
        if let Some(p) = profile {
            expected.insert(mac, m.expected(&p.doc.pc_model));
        }
        let host = m
            .hostname
            .as_ref()
            .map_or_else(|| mac.hyphenated(), |h| h.value.clone());
        machines.push((mac, host));
    }
    Ok(RoomTarget {
        interface: net.interface.clone(),
        subnet: Some(subnet),
        machines,
        group: Some(net.multicast_group.value.clone()),
        link_mbps: Some(net.link_speed_mbps.value),
        system_disk: room
            .doc
            .system_disk
            .as_ref()
            .or_else(|| profile.and_then(|p| p.doc.system_disk.as_ref()))
            .map(|d| d.rule()),
        expected,
        grow_last: checked
            .validation
            .region
            .profiles
            .get(&room.doc.profile.value)
            .is_some_and(|p| p.doc.grow_last_partition),
        secure_boot: room.doc.secure_boot,
    })
}

/// `MAC` or `MAC=hostname` flags; a machine without a name is named after its MAC.
fn parse_machines(flags: &[String]) -> Result<Vec<(Mac, String)>, String> {
    flags
        .iter()
        .map(|m| {
            let (mac, host) = m.split_once('=').unwrap_or((m, ""));
            let mac: Mac = mac.parse().map_err(|e| format!("--machine {m}: {e}"))?;
            let host = if host.is_empty() {
                mac.hyphenated()
            } else {
                host.to_string()
            };
            Ok((mac, host))
        })
        .collect()
}

/// Log lines (tracing) on stderr, `RUST_LOG` or `roomcast=info`: the agent's set-up, shared.
pub fn init_tracing() {
    roomcast_agent::cli::init_tracing();
}

/// The data-plane flags shared by `deploy` and `serve --multicast`.
#[derive(Debug, Args, Clone)]
pub struct DataPlaneArgs {
    /// Highest stream rate on the wire, e.g. `950M`, `190M`, `1G` (bits per second). Default: 95 %
    /// of the room's link speed, or 950M.
    #[arg(long)]
    rate: Option<String>,
    /// Multicast group and port, in 239.255.0.0/16. Default: the room's group (or 239.255.0.1),
    /// port 9000.
    #[arg(long)]
    group: Option<String>,
    /// TCP port of the control channel.
    #[arg(long, default_value_t = 9500)]
    control_port: u16,
    /// Seconds of silence after which a PC is declared dead (it may still catch up over HTTP).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    dead_after: u64,
    /// Longest wait, in seconds, for `--expect` PCs before the stream starts.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    start_wait: u64,
    /// After the stream, seconds to wait for PCs catching up over HTTP to report.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    catch_up_wait: u64,
}

impl DataPlaneArgs {
    /// The data plane from these flags and the room's group and link speed.
    pub(super) fn data_plane(
        &self,
        room_group: Option<&str>,
        link_mbps: Option<u32>,
    ) -> Result<DataPlane, String> {
        let mut d = DataPlane {
            control_port: self.control_port,
            dead_after: Duration::from_secs(self.dead_after),
            start_wait: Duration::from_secs(self.start_wait),
            ..DataPlane::default()
        };
        if let Some(mbps) = link_mbps {
            d.rate_bps = u64::from(mbps) * 950_000;
        }
        if let Some(r) = &self.rate {
            d.rate_bps = parse_rate(r).ok_or_else(|| {
                format!("--rate {r:?}: want bits per second, e.g. 950M, 190M or 1G")
            })?;
        }
        d.min_rate_bps = d.min_rate_bps.min(d.rate_bps / 4);
        let group = self.group.as_deref().or(room_group);
        if let Some(g) = group {
            d.group = match g.parse::<SocketAddrV4>() {
                Ok(a) => a,
                Err(_) => SocketAddrV4::new(
                    g.parse()
                        .map_err(|_| format!("multicast group {g:?}: want IP or IP:port"))?,
                    d.group.port(),
                ),
            };
        }
        d.check().map_err(|e| e.to_string())?;
        Ok(d)
    }

    pub(super) fn catch_up_wait(&self) -> Duration {
        Duration::from_secs(self.catch_up_wait)
    }
}

/// `950M`, `1G`, `190Mbit`, `2500k` or plain bits per second.
pub(super) fn parse_rate(s: &str) -> Option<u64> {
    let t = s.trim().trim_end_matches("bit").trim_end_matches("bps");
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1e3),
        'm' | 'M' => (&t[..t.len() - 1], 1e6),
        'g' | 'G' => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_in_bits_per_second() {
        assert_eq!(parse_rate("950M"), Some(950_000_000));
        assert_eq!(parse_rate("1G"), Some(1_000_000_000));
        assert_eq!(parse_rate("190Mbit"), Some(190_000_000));
        assert_eq!(parse_rate("2500k"), Some(2_500_000));
        assert_eq!(parse_rate("12345"), Some(12_345));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate("-3M"), None);
    }
}
