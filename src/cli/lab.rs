//! `roomcast lab`: a virtual room for trying roomcast by hand, and cleanup after crashed tests.

use super::exit::{self, CliError};
use clap::Subcommand;
use roomcast_lab::{Lab, LabPrefix, Tbf, cleanup};

/// What to do with virtual rooms.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build a virtual room (bridge, server and PC namespaces) and keep it until Ctrl-C.
    Up {
        /// Number of PCs.
        #[arg(long, default_value_t = 3)]
        pcs: usize,
        /// Rate limit of every link in Mbit/s (both directions); none by default.
        #[arg(long)]
        mbit: Option<u64>,
        /// IGMP snooping on the bridge.
        #[arg(long)]
        snooping: bool,
    },
    /// List the labs present on this machine.
    List,
    /// Remove a lab's namespaces, links and processes (a crashed test or benchmark's leftovers).
    Cleanup {
        /// The lab to remove (`rc` + 4 characters, as `lab list` shows).
        #[arg(long, conflicts_with = "stale", required_unless_present = "stale")]
        prefix: Option<String>,
        /// Remove every lab whose owner process is gone.
        #[arg(long)]
        stale: bool,
    },
}

/// Runs one `roomcast lab` command.
pub fn run(cmd: LabCommand) -> Result<u8, CliError> {
    match cmd {
        LabCommand::Up {
            pcs,
            mbit,
            snooping,
        } => up(pcs, mbit, snooping),
        LabCommand::List => match cleanup::list() {
            Ok(labs) => {
                for l in labs {
                    let owner = l.owner.map_or("-".to_owned(), |p| p.to_string());
                    let state = if l.is_stale() { "stale" } else { "live" };
                    println!(
                        "{} owner {owner} ({state}): {} namespaces, {} links",
                        l.prefix,
                        l.namespaces.len(),
                        l.links.len()
                    );
                }
                Ok(exit::OK)
            }
            Err(e) => fail(e),
        },
        LabCommand::Cleanup { prefix, stale } => {
            let result = match prefix {
                Some(p) => LabPrefix::new(&p).and_then(|p| cleanup::remove(&p).map(|()| vec![p])),
                None if stale => cleanup::remove_stale(),
                None => Ok(Vec::new()),
            };
            match result {
                Ok(removed) => {
                    for p in &removed {
                        println!("removed lab {p}");
                    }
                    if removed.is_empty() {
                        println!("nothing to remove");
                    }
                    Ok(exit::OK)
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn fail(e: roomcast_lab::LabError) -> Result<u8, CliError> {
    Err(CliError::UsageOrIo(format!("roomcast lab: {e}")))
}

fn up(pcs: usize, mbit: Option<u64>, snooping: bool) -> Result<u8, CliError> {
    let mut b = Lab::builder().pcs(pcs).multicast_snooping(snooping);
    if let Some(m) = mbit {
        b = b.rate(Tbf::mbit(m));
    }
    let lab = match b.build() {
        Ok(lab) => lab,
        Err(e) => return fail(e),
    };
    println!("lab {} up on bridge {}", lab.prefix(), lab.bridge());
    for n in std::iter::once(lab.server()).chain(lab.pcs()) {
        println!(
            "  {:<5} {:<15} {:<6} {}   ip netns exec {} bash",
            n.role(),
            n.addr(),
            n.ifname(),
            n.netns(),
            n.netns()
        );
    }
    println!("Ctrl-C removes it.");
    let waited = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .and_then(|rt| rt.block_on(tokio::signal::ctrl_c()));
    match (waited, lab.teardown()) {
        (_, Err(e)) => fail(e),
        (Err(e), Ok(())) => Err(CliError::UsageOrIo(format!(
            "roomcast lab: waiting for Ctrl-C: {e}"
        ))),
        (Ok(()), Ok(())) => {
            println!("lab removed");
            Ok(exit::OK)
        }
    }
}
