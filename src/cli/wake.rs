//! `roomcast wake`: Wake-on-LAN for the machines of a room, staggered, on the room interface.
//!
//! Until the room model is wired in, the interface and MACs come from flags. Without a running
//! `roomcast serve` in the same process nobody reports PCs as seen, so each PC gets its packet every
//! `--repeat-every` seconds until `--deadline`.

use super::exit::{self, CliError};
use crate::net::wol::Waker;
use clap::Args;
use roomcast_proto::mac::Mac;
use roomcast_proto::wol::WakePlan;
use std::collections::BTreeSet;
use std::time::Duration;

/// `roomcast wake` flags.
#[derive(Debug, Args)]
pub struct WakeArgs {
    /// The room's interface (packets leave by this one only).
    #[arg(long)]
    interface: String,
    /// A machine to wake (repeat), in wake order.
    #[arg(long = "machine", required = true)]
    machines: Vec<Mac>,
    /// PCs woken per second (inrush current of a room).
    #[arg(long, default_value_t = 5)]
    per_second: u32,
    /// Seconds between two packets to the same PC.
    #[arg(long, default_value_t = 30)]
    repeat_every: u64,
    /// Seconds after which no more packets are sent.
    #[arg(long, default_value_t = 1)]
    deadline: u64,
    /// SecureOn password, 12 hex digits.
    #[arg(long)]
    secure_on: Option<String>,
}

/// Runs `roomcast wake`.
pub fn run(a: WakeArgs) -> Result<u8, CliError> {
    let secure_on = match a.secure_on.as_deref().map(hex::decode) {
        None => None,
        Some(Ok(b)) if b.len() == 6 => Some([b[0], b[1], b[2], b[3], b[4], b[5]]),
        Some(_) => {
            return Err(CliError::UsageOrIo(
                "roomcast wake: --secure-on wants 12 hex digits".into(),
            ));
        }
    };
    let plan = WakePlan {
        machines: a.machines,
        per_second: a.per_second,
        repeat_every: Duration::from_secs(a.repeat_every),
        deadline: Duration::from_secs(a.deadline.max(1)),
    };
    let result = Waker::open(&a.interface).and_then(|mut w| w.run(&plan, secure_on, BTreeSet::new));
    match result {
        Ok(_) => {
            println!(
                "sent magic packets to {} machine(s) on {}",
                plan.machines.len(),
                a.interface
            );
            Ok(exit::OK)
        }
        Err(e) => Err(CliError::UsageOrIo(format!("roomcast {e}"))),
    }
}
