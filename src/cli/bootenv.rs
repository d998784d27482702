//! `roomcast bootenv build --out DIR`: the iPXE binaries, kernel and initramfs PCs boot into.

use super::exit::{self, CliError};
use crate::bootenv::{self, BuildOptions};
use clap::Subcommand;
use std::path::PathBuf;

/// `roomcast bootenv ...`
#[derive(Debug, Subcommand)]
pub enum BootenvCommand {
    /// Build the boot root: undionly.kpxe, snponly.efi, ipxe.efi, vmlinuz, initrd.gz.
    Build {
        /// Output folder (the boot root `roomcast serve --boot-dir` serves).
        #[arg(long)]
        out: PathBuf,
        /// An unpacked linux-image package (dpkg -x); default: apt-get download into OUT/.kernel.
        #[arg(long, env = "ROOMCAST_KERNEL_DIR")]
        kernel_dir: Option<PathBuf>,
        /// The agent binary to include (default: `roomcast-agent` next to this roomcast).
        #[arg(long)]
        agent: Option<PathBuf>,
        /// The image signer's public key (`roomcast key generate`'s .pub) the agent will trust.
        #[arg(long)]
        trusted_key: Option<PathBuf>,
        /// Extra kernel modules to put in (comma-separated names, e.g. `e100,mlx4_en`), with their
        /// dependencies, on top of the built-in list of network and disk drivers.
        #[arg(long, value_delimiter = ',')]
        modules: Vec<String>,
        /// Built-in drivers to leave out (comma-separated), e.g. one that misbehaves on a PC model.
        #[arg(long, value_delimiter = ',')]
        without_modules: Vec<String>,
        /// A folder of firmware files, copied under /lib/firmware (e.g. `rtl_nic/rtl8168h-2.fw`).
        #[arg(long)]
        firmware: Option<PathBuf>,
    },
}

/// Runs a `bootenv` subcommand.
pub fn run(cmd: BootenvCommand) -> Result<u8, CliError> {
    let BootenvCommand::Build {
        out,
        kernel_dir,
        agent,
        trusted_key,
        modules,
        without_modules,
        firmware,
    } = cmd;
    let mut opts = BuildOptions::new(out)
        .map_err(|e| CliError::UsageOrIo(format!("roomcast bootenv: {e}")))?;
    opts.kernel_dir = kernel_dir;
    opts.trusted_key = trusted_key;
    opts.extra_modules = modules;
    opts.without_modules = without_modules;
    opts.firmware = firmware;
    if let Some(a) = agent {
        opts.agent = a;
    }
    match bootenv::build(&opts) {
        Ok(env) => {
            let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            println!(
                "kernel  {} ({} bytes, {})",
                env.kernel.display(),
                size(&env.kernel),
                env.release
            );
            println!(
                "initrd  {} ({} bytes, {} files)",
                env.initrd.display(),
                size(&env.initrd),
                env.initrd_files.len()
            );
            println!("modules {} ({})", env.modules.len(), env.modules.join(" "));
            Ok(exit::OK)
        }
        Err(e) => Err(CliError::UsageOrIo(format!("roomcast {e}"))),
    }
}
