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
        /// An image signer's public key (`roomcast key generate`'s .pub) the agent will trust;
        /// repeat it for several (the school's key and the region's, for a profile whose base
        /// image comes from the region).
        #[arg(long)]
        trusted_key: Vec<PathBuf>,
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
        /// Also the Secure Boot chain: Debian's signed shim (shimx64.efi), network GRUB
        /// (grubx64.efi) and grub/grub.cfg, for `serve --secure-boot` / a room's `secure_boot`.
        #[arg(long)]
        secure_boot: bool,
        /// Where the packages shim-signed and grub-efi-amd64-signed are unpacked (`dpkg -x`) or
        /// installed (`/`, the default); ignored without --secure-boot.
        #[arg(long, env = "ROOMCAST_SECUREBOOT_DIR")]
        secure_boot_dir: Option<PathBuf>,
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
        secure_boot,
        secure_boot_dir,
    } = cmd;
    let mut opts = BuildOptions::new(out)
        .map_err(|e| CliError::UsageOrIo(format!("roomcast bootenv: {e}")))?;
    opts.kernel_dir = kernel_dir;
    opts.trusted_keys = trusted_key;
    opts.extra_modules = modules;
    opts.without_modules = without_modules;
    opts.firmware = firmware;
    opts.secure_boot = secure_boot.then(|| secure_boot_dir.unwrap_or_else(|| PathBuf::from("/")));
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
            for (file, names) in env.signed.iter().flat_map(|c| &c.signers) {
                println!("signed  {file} ({names})");
            }
            Ok(exit::OK)
        }
        Err(e) => Err(CliError::UsageOrIo(format!("roomcast {e}"))),
    }
}
