//! `roomcast bootenv build`: the boot environment a PC of the campaign PXE-boots into — the iPXE
//! binaries (Debian's `ipxe`), a kernel (Debian's `linux-image-amd64`) and an initramfs built here
//! (busybox-static, the PC agent's own binary `roomcast-agent` and the libraries `ldd` lists, the
//! network and disk drivers of real PCs with the tables the agent loads them by ([`modules`]),
//! a technician's firmware files and extra modules, an init). The agent binary is built from the `roomcast-agent` crate alone: none of the
//! tool's campaign, lab, SQLite, SSH, HTTP server or templates reaches a PC.

pub mod cpio;
pub mod modules;
pub mod secureboot;

use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The init script (PID 1), see `templates/boot/init.sh`; `@CONTRACT@` stands for the contract
/// version of the agent built in ([`init_script`]).
pub const INIT: &str = include_str!("../../templates/boot/init.sh");

/// The init script as it goes into the initramfs: the contract version of the agent it runs baked
/// in, so that even its shell-made facts report says which contract it speaks.
pub fn init_script() -> String {
    INIT.replace(
        "@CONTRACT@",
        &roomcast_proto::contract::CONTRACT_VERSION.to_string(),
    )
}

/// File name of the agent's binary, next to `roomcast` and inside the initramfs (`/bin`).
pub const AGENT_BINARY: &str = "roomcast-agent";
const UDHCPC_SCRIPT: &str = include_str!("../../templates/boot/udhcpc.script");
/// File names of the result inside the output folder.
pub const KERNEL: &str = "vmlinuz";
/// See [`KERNEL`].
pub const INITRD: &str = "initrd.gz";
/// The file in the boot folder saying which roomcast built it ([`version_stamp`]): `roomcast
/// doctor` compares it with the running binary.
pub const VERSION_FILE: &str = "roomcast-version";

/// What [`VERSION_FILE`] holds: the tool's version and the agent contract baked in.
pub fn version_stamp() -> String {
    format!(
        "roomcast {} contract {}\n",
        env!("CARGO_PKG_VERSION"),
        roomcast_proto::contract::CONTRACT_VERSION
    )
}

/// Inputs of a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output folder: becomes the boot root served by TFTP and HTTP.
    pub out: PathBuf,
    /// An unpacked `linux-image-*` package (`dpkg -x`); when absent it is downloaded into
    /// `<out>/.kernel` with `apt-get download`.
    pub kernel_dir: Option<PathBuf>,
    /// The agent binary to put in the initramfs (`roomcast-agent`).
    pub agent: PathBuf,
    /// Where Debian's `ipxe` package put its binaries.
    pub ipxe_dir: PathBuf,
    /// A static busybox.
    pub busybox: PathBuf,
    /// The image signers' public keys the agent trusts (the school's, and the region's when a
    /// profile's base image comes from the region), baked in together as
    /// `/etc/roomcast/trusted.pub` (trust comes with the boot environment, never from the network).
    pub trusted_keys: Vec<PathBuf>,
    /// Kernel modules to add to [`modules::DRIVERS`] (`--modules a,b`), with their dependencies.
    pub extra_modules: Vec<String>,
    /// Modules of [`modules::DRIVERS`] to leave out (`--without-modules a,b`): a driver that
    /// misbehaves on some PC, or a test of a card without a driver. One another module depends on
    /// still comes in with it.
    pub without_modules: Vec<String>,
    /// A folder of firmware files copied as is under `/lib/firmware` (`--firmware DIR`), for the
    /// cards whose driver asks for one (some Realtek, Broadcom, Intel chips).
    pub firmware: Option<PathBuf>,
    /// Programs the agent runs, put in `/bin` with the libraries `ldd` lists: ntfs-3g's `ntfscp`
    /// (Debian package `ntfs-3g`), which writes a Windows PC's unattend.xml at step h
    /// (docs/DECISIONS.md, D17).
    pub tools: Vec<PathBuf>,
    /// The Secure Boot chain (`--secure-boot`): the root Debian's `shim-signed` and
    /// `grub-efi-amd64-signed` are installed or unpacked into ([`secureboot::install`]).
    pub secure_boot: Option<PathBuf>,
}

/// ntfs-3g's copy tool on a Debian deploy server (package `ntfs-3g`).
pub const NTFSCP: &str = "/usr/sbin/ntfscp";

impl BuildOptions {
    /// Debian's paths and the `roomcast-agent` next to the running roomcast binary.
    pub fn new(out: PathBuf) -> std::io::Result<Self> {
        Ok(BuildOptions {
            out,
            kernel_dir: None,
            agent: std::env::current_exe()?.with_file_name(AGENT_BINARY),
            ipxe_dir: PathBuf::from("/usr/lib/ipxe"),
            busybox: PathBuf::from("/bin/busybox"),
            trusted_keys: Vec::new(),
            extra_modules: Vec::new(),
            without_modules: Vec::new(),
            firmware: None,
            tools: vec![PathBuf::from(NTFSCP)],
            secure_boot: None,
        })
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BootEnv {
    /// The kernel.
    pub kernel: PathBuf,
    /// The gzip'd cpio initramfs.
    pub initrd: PathBuf,
    /// Kernel release of the modules inside.
    pub release: String,
    /// Every file of the initramfs, for the report.
    pub initrd_files: Vec<String>,
    /// The kernel modules inside (normalized names).
    pub modules: Vec<String>,
    /// The signed chain, with `--secure-boot`.
    pub signed: Option<secureboot::SignedChain>,
}

/// A build step that failed.
#[derive(Debug, thiserror::Error)]
pub enum BootEnvError {
    /// Reading or writing a file.
    #[error("bootenv: {step}: {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A module asked for is not in the kernel package.
    #[error("bootenv: {0}")]
    Module(#[from] modules::UnknownModule),
    /// An external tool failed (apt-get, dpkg, ldd).
    #[error("bootenv: {step}: {detail}")]
    Tool {
        /// What was being done.
        step: &'static str,
        /// Its error output.
        detail: String,
    },
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BootEnvError {
    let path = path.to_path_buf();
    move |source| BootEnvError::Io { step, path, source }
}

fn run(step: &'static str, cmd: &mut Command) -> Result<String, BootEnvError> {
    let out = cmd.output().map_err(|e| BootEnvError::Tool {
        step,
        detail: format!("{cmd:?}: {e}"),
    })?;
    if !out.status.success() {
        return Err(BootEnvError::Tool {
            step,
            detail: format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the boot environment into `opts.out`.
pub fn build(opts: &BuildOptions) -> Result<BootEnv, BootEnvError> {
    std::fs::create_dir_all(&opts.out).map_err(io("creating the output folder", &opts.out))?;
    for name in ["undionly.kpxe", "snponly.efi", "ipxe.efi"] {
        let from = opts.ipxe_dir.join(name);
        std::fs::copy(&from, opts.out.join(name))
            .map_err(io("copying iPXE (apt-get install ipxe)", &from))?;
    }
    let kernel_dir = match &opts.kernel_dir {
        Some(d) => d.clone(),
        None => fetch_kernel(&opts.out.join(".kernel"))?,
    };
    let (vmlinuz, release) = find_kernel(&kernel_dir)?;
    let kernel = opts.out.join(KERNEL);
    std::fs::copy(&vmlinuz, &kernel).map_err(io("copying the kernel", &vmlinuz))?;
    let signed = match &opts.secure_boot {
        Some(packages) => Some(secureboot::install(packages, &opts.out, &kernel)?),
        None => None,
    };
    let initrd = opts.out.join(INITRD);
    let (initrd_files, modules) = write_initramfs(opts, &kernel_dir, &release, &initrd)?;
    let stamp = opts.out.join(VERSION_FILE);
    std::fs::write(&stamp, version_stamp()).map_err(io("writing the version stamp", &stamp))?;
    Ok(BootEnv {
        kernel,
        initrd,
        release,
        initrd_files,
        modules,
        signed,
    })
}

/// `apt-get download` of the kernel package `linux-image-amd64` depends on, unpacked with `dpkg -x`.
fn fetch_kernel(dir: &Path) -> Result<PathBuf, BootEnvError> {
    if dir.join("boot").is_dir() {
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir).map_err(io("creating the kernel folder", dir))?;
    let deps = run(
        "apt-cache depends linux-image-amd64",
        Command::new("apt-cache").args(["depends", "linux-image-amd64"]),
    )?;
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| {
            p.starts_with("linux-image-") && p.as_bytes().get(12).is_some_and(u8::is_ascii_digit)
        })
        .ok_or_else(|| BootEnvError::Tool {
            step: "finding the kernel package",
            detail: deps.clone(),
        })?
        .to_string();
    run(
        "apt-get download",
        Command::new("apt-get")
            .args(["download", "-qq", &package])
            .current_dir(dir),
    )?;
    let deb = std::fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| BootEnvError::Tool {
            step: "apt-get download",
            detail: "no .deb".into(),
        })?;
    run("dpkg -x", Command::new("dpkg").arg("-x").arg(&deb).arg(dir))?;
    Ok(dir.to_path_buf())
}

fn find_kernel(dir: &Path) -> Result<(PathBuf, String), BootEnvError> {
    let boot = dir.join("boot");
    let entries = std::fs::read_dir(&boot).map_err(io("looking for vmlinuz", &boot))?;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            return Ok((e.path(), release.to_string()));
        }
    }
    Err(BootEnvError::Io {
        step: "looking for vmlinuz",
        path: boot,
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// The shared libraries `ldd` lists for `binary` (absolute paths).
pub fn libraries(binary: &Path) -> Result<Vec<PathBuf>, BootEnvError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| BootEnvError::Tool {
            step: "ldd",
            detail: e.to_string(),
        })?;
    // A static binary makes ldd fail with "not a dynamic executable": no libraries.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim().split(' ').next()?,
                None => l.split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Host tools copied into the boot environment (with their libraries): `resize2fs` and
/// `ntfsresize`, for a PC whose disk is not the image's size (`store::fit`), and `dmsetup`
/// (Debian package dmsetup), for the device-mapper view an NTFS is shrunk on.
pub const FS_TOOLS: [&str; 3] = ["resize2fs", "ntfsresize", "dmsetup"];

fn write_initramfs(
    opts: &BuildOptions,
    kernel_dir: &Path,
    release: &str,
    to: &Path,
) -> Result<(Vec<String>, Vec<String>), BootEnvError> {
    // (path inside, permission bits, contents)
    let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
    let read = |p: &Path| std::fs::read(p).map_err(io("reading", p));
    files.push(("init".into(), 0o755, init_script().into_bytes()));
    files.push((
        "etc/udhcpc.script".into(),
        0o755,
        UDHCPC_SCRIPT.as_bytes().to_vec(),
    ));
    files.push(("bin/busybox".into(), 0o755, read(&opts.busybox)?));
    if !opts.trusted_keys.is_empty() {
        let mut pem = Vec::new();
        for key in &opts.trusted_keys {
            // Parsed here so a wrong file fails the build, not every PC at night.
            roomcast_store::keys::load_public(key).map_err(|e| BootEnvError::Io {
                step: "reading the trusted key",
                path: key.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let mut text = read(key)?;
            if !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            pem.extend(text);
        }
        let inside = roomcast_agent::TRUSTED_KEY
            .trim_start_matches('/')
            .to_string();
        files.push((inside, 0o644, pem));
    }
    // A stripped copy: the debug binary is ~10x larger, and every byte crosses the network at boot.
    let stripped = opts.out.join(".roomcast-agent.stripped");
    let agent = match run(
        "strip",
        Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&opts.agent),
    ) {
        Ok(_) => read(&stripped)?,
        Err(e) => {
            tracing::warn!(%e, "strip failed, using the binary as is");
            read(&opts.agent)?
        }
    };
    let _ = std::fs::remove_file(&stripped);
    files.push((format!("bin/{AGENT_BINARY}"), 0o755, agent));
    let mut libs: BTreeSet<PathBuf> = libraries(&opts.agent)?.into_iter().collect();
    // The file-system tools the agent runs on a disk of another size than the image's (issue 23):
    // the host's, with their libraries. Missing on the host: left out (a grow or shrink then
    // fails on the PC naming the tool; a same-size or table-only restore needs none).
    for tool in FS_TOOLS {
        let Some(path) = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file())
        else {
            tracing::warn!(
                tool,
                "not found on this host: left out of the boot environment"
            );
            continue;
        };
        files.push((format!("bin/{tool}"), 0o755, read(&path)?));
        libs.extend(libraries(&path)?);
    }
    for lib in libs {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.push((inside, 0o755, read(&lib)?));
    }
    for tool in &opts.tools {
        let name = tool.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.ok_or_else(|| BootEnvError::Io {
            step: "adding a tool",
            path: tool.clone(),
            source: std::io::Error::other("no file name"),
        })?;
        let bytes = std::fs::read(tool).map_err(io(
            "reading a program the agent runs (ntfscp: Debian package ntfs-3g)",
            tool,
        ))?;
        files.push((format!("bin/{name}"), 0o755, bytes));
        for lib in libraries(tool)? {
            let inside = lib.to_string_lossy().trim_start_matches('/').to_string();
            if !files.iter().any(|(p, _, _)| *p == inside) {
                files.push((inside, 0o755, read(&lib)?));
            }
        }
    }
    let mdir = kernel_dir.join("lib/modules").join(release);
    let index = modules::KernelModules::index(&mdir).map_err(io("listing the modules", &mdir))?;
    let without: BTreeSet<String> = opts
        .without_modules
        .iter()
        .map(|m| modules::normalize(m))
        .collect();
    let wanted: Vec<String> = modules::DRIVERS
        .iter()
        .map(|s| s.to_string())
        .filter(|m| !without.contains(m))
        .chain(opts.extra_modules.iter().cloned())
        .collect();
    let sel = index.select(&wanted)?;
    let inside = format!("lib/modules/{release}");
    for (rel, _) in sel.modules.values() {
        let from = mdir.join(rel);
        files.push((format!("{inside}/{rel}"), 0o644, read(&from)?));
    }
    files.push((
        format!("{inside}/modules.dep"),
        0o644,
        sel.modules_dep().into_bytes(),
    ));
    files.push((
        format!("{inside}/modules.alias"),
        0o644,
        sel.modules_alias().into_bytes(),
    ));
    files.push((
        format!("{inside}/{}", modules::ABSENT_ALIAS),
        0o644,
        index.absent_aliases(&sel).into_bytes(),
    ));
    for extra in ["modules.builtin", "modules.order"] {
        let from = mdir.join(extra);
        if from.exists() {
            files.push((format!("{inside}/{extra}"), 0o644, read(&from)?));
        }
    }
    if let Some(fw) = &opts.firmware {
        for (rel, data) in tree(fw)? {
            files.push((format!("lib/firmware/{rel}"), 0o644, data));
        }
    }
    let mut dirs: BTreeSet<String> = ["dev", "proc", "sys", "tmp", "run", "bin", "etc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (name, _, _) in &files {
        let mut p = Path::new(name).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_string_lossy().into_owned());
            p = d.parent();
        }
    }
    let file = std::fs::File::create(to).map_err(io("creating the initramfs", to))?;
    let mut cpio = cpio::Cpio::new(GzEncoder::new(
        std::io::BufWriter::new(file),
        Compression::new(6),
    ));
    let w = |e| BootEnvError::Io {
        step: "writing the initramfs",
        path: to.to_path_buf(),
        source: e,
    };
    // BTreeSet order puts parents before children.
    for d in &dirs {
        cpio.dir(d).map_err(w)?;
    }
    for (name, perm, data) in &files {
        cpio.file(name, *perm, data).map_err(w)?;
    }
    cpio.symlink("bin/sh", "busybox").map_err(w)?;
    cpio.chardev("dev/console", 0o600, 5, 1).map_err(w)?;
    let gz = cpio.finish().map_err(w)?;
    let buf = gz.finish().map_err(w)?;
    buf.into_inner()
        .map_err(|e| w(e.into_error()))?
        .sync_all()
        .map_err(w)?;
    Ok((
        files.into_iter().map(|(n, _, _)| n).collect(),
        sel.modules.into_keys().collect(),
    ))
}

/// Every file under `dir` (relative path, contents); a missing folder is an error.
fn tree(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, BootEnvError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(io("reading the firmware folder", &d))?;
        for e in entries {
            let e = e.map_err(io("reading the firmware folder", &d))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.push((
                    rel,
                    std::fs::read(&p).map_err(io("reading a firmware file", &p))?,
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::contract::{CONTRACT_HEADER, CONTRACT_VERSION, cmdline};

    #[test]
    fn the_init_speaks_the_contract_of_the_agent_it_runs() {
        let init = init_script();
        for key in cmdline::KEYS {
            assert!(
                init.contains(&format!("{key}=*)")),
                "init does not read {key}"
            );
        }
        assert!(init.contains(&format!("contract={CONTRACT_VERSION}\n")));
        assert!(!init.contains("@CONTRACT@"));
        assert!(
            init.to_ascii_lowercase()
                .contains(&format!("--header \"{CONTRACT_HEADER}: $contract\""))
        );
        assert!(init.contains(&format!("if {AGENT_BINARY} pc; then")));
    }
}
