//! The server half of `roomcast doctor`: what a night run needs of this server, checked before the
//! night. Each check gives one [`Finding`] per thing it looked at: ok, or the problem and its fix.
//! Paths come from the options, hence from `/etc/roomcast/roomcast.toml` (`crate::config`); a check
//! whose setting is not configured says so and passes (nothing of it will be used).

use super::doctor::Finding;
use crate::net::proxydhcp::Subnet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the server checks look at.
pub struct ServerSetup {
    /// The room interface and subnet (from the room file).
    pub interface: String,
    /// The room's subnet.
    pub subnet: Option<Subnet>,
    /// The image store.
    pub store: Option<PathBuf>,
    /// Free bytes the store's file system must keep for the next capture, at least.
    pub min_free: u64,
    /// The SSH key for the PCs.
    pub ssh_key: Option<PathBuf>,
    /// The boot folder (`bootenv build --out`).
    pub boot_dir: Option<PathBuf>,
    /// GLPI, with resolved tokens.
    pub glpi: Option<crate::inventory::glpi::GlpiConfig>,
    /// Checks left out by name (`--skip clock`).
    pub skip: Vec<String>,
}

/// The names of the server checks, in order (for `--skip`).
pub const NAMES: &[&str] = &[
    "interface",
    "ports",
    "store",
    "disk",
    "clock",
    "ssh-key",
    "bootenv",
    "glpi",
];

fn ok(text: impl Into<String>) -> Finding {
    Finding {
        machine: None,
        ok: true,
        text: text.into(),
    }
}

fn problem(what: impl std::fmt::Display, fix: impl std::fmt::Display) -> Finding {
    Finding {
        machine: None,
        ok: false,
        text: format!("{what}. Fix: {fix}"),
    }
}

/// Runs every server check not skipped; returns `(name, findings)` in order.
pub fn run(s: &ServerSetup) -> Vec<(&'static str, Vec<Finding>)> {
    let mut out = Vec::new();
    for name in NAMES {
        if s.skip.iter().any(|k| k == name) {
            out.push((*name, vec![ok("skipped (--skip)")]));
            continue;
        }
        let findings = match *name {
            "interface" => interface(&s.interface, s.subnet),
            "ports" => ports(),
            "store" => store(s.store.as_deref()),
            "disk" => disk(s.store.as_deref(), s.min_free),
            "clock" => clock(),
            "ssh-key" => ssh_key(s.ssh_key.as_deref()),
            "bootenv" => bootenv(s.boot_dir.as_deref()),
            _ => glpi(s.glpi.as_ref()),
        };
        out.push((*name, findings));
    }
    out
}

/// The room interface exists, is up, and has an address in the room's subnet.
fn interface(name: &str, subnet: Option<Subnet>) -> Vec<Finding> {
    let sys = Path::new("/sys/class/net").join(name);
    if name.is_empty() || !sys.exists() {
        return vec![problem(
            format!("no interface `{name}` on this server"),
            "name the server's room interface in the room file (network.interface) or --interface",
        )];
    }
    let state = std::fs::read_to_string(sys.join("operstate")).unwrap_or_default();
    let state = state.trim();
    let mut findings = Vec::new();
    if state == "down" {
        findings.push(problem(
            format!("{name} is down"),
            format!("`ip link set {name} up` and check its cable and switch port"),
        ));
    }
    match subnet {
        None => findings.push(ok(format!(
            "{name} is {state}; no subnet given to check its address against"
        ))),
        Some(s) => match crate::net::proxydhcp::room_address(name, s) {
            Ok(a) => findings.push(ok(format!(
                "{name} is {state} with {a} in {}/{}",
                s.addr, s.prefix
            ))),
            Err(_) => findings.push(problem(
                format!(
                    "{name} has no address in the room's subnet {}/{}",
                    s.addr, s.prefix
                ),
                format!(
                    "give it one (`ip addr add <address>/{} dev {name}`, or in \
                     /etc/network/interfaces), or correct network.subnet in the room file",
                    s.prefix
                ),
            )),
        },
    }
    findings
}

/// Nothing else holds the UDP ports `roomcast serve` binds: 67 and 4011 (proxyDHCP), 69 (TFTP).
fn ports() -> Vec<Finding> {
    [(67, "DHCP/proxyDHCP"), (4011, "proxyDHCP"), (69, "TFTP")]
        .into_iter()
        .map(
            |(port, what)| match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
                Ok(_) => ok(format!("UDP {port} ({what}) is free")),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => problem(
                    format!("another program holds UDP {port} ({what}): a second PXE server would answer the PCs"),
                    format!(
                        "`ss -ulpn 'sport = :{port}'` names it; stop it (dnsmasq, tftpd-hpa, \
                         another roomcast serve) or keep it off the room network"
                    ),
                ),
                Err(e) => problem(
                    format!("cannot test UDP {port} ({what}): {e}"),
                    "run doctor as root, as the services run",
                ),
            },
        )
        .collect()
}

/// The store opens, is writable, and trusts at least one signing key.
fn store(path: Option<&Path>) -> Vec<Finding> {
    let Some(path) = path else {
        return vec![ok(
            "no store configured (store = ... in /etc/roomcast/roomcast.toml)",
        )];
    };
    let store = match roomcast_store::Store::open(path) {
        Ok(s) => s,
        Err(e) => {
            return vec![problem(
                format!("store {}: {e}", path.display()),
                "create it with `roomcast image capture`, or correct `store` in \
                 /etc/roomcast/roomcast.toml",
            )];
        }
    };
    let mut findings = Vec::new();
    let probe = store
        .tmp_dir()
        .join(format!(".doctor-{}", std::process::id()));
    match std::fs::create_dir_all(store.tmp_dir()).and_then(|()| std::fs::write(&probe, b"x")) {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            findings.push(ok(format!("store {} is writable", path.display())));
        }
        Err(e) => findings.push(problem(
            format!("store {} is not writable: {e}", path.display()),
            "check its owner and mode, and that its file system is mounted read-write",
        )),
    }
    match store.trusted() {
        Ok(t) if !t.keys().is_empty() => findings.push(ok(format!(
            "store trusts {} signing key(s)",
            t.keys().len()
        ))),
        Ok(_) => findings.push(problem(
            format!(
                "store {} trusts no signing key: no image would be restored",
                path.display()
            ),
            format!(
                "`roomcast key trust --store {} /etc/roomcast/signer.pub` (the public half of \
                 signer_key)",
                path.display()
            ),
        )),
        Err(e) => findings.push(problem(
            format!("store {}: its trusted keys: {e}", path.display()),
            "remove or replace the unreadable .pub file in its trusted/ folder",
        )),
    }
    findings
}

/// Free space on the store's file system for the next capture: the largest image stored, and at
/// least `min_free`.
fn disk(path: Option<&Path>, min_free: u64) -> Vec<Finding> {
    let Some(path) = path else {
        return vec![ok("no store configured")];
    };
    let largest = roomcast_store::Store::open(path)
        .ok()
        .and_then(|s| {
            let ids = s.image_ids().ok()?;
            ids.iter()
                .filter_map(|id| s.open_unverified(id).ok())
                .map(|m| m.manifest_unchecked().stored_bytes())
                .max()
        })
        .unwrap_or(0);
    let need = largest.max(min_free);
    match free_bytes(path) {
        Ok(free) if free >= need => vec![ok(format!(
            "{} free on the store's file system (need {} for the next capture)",
            gib(free),
            gib(need)
        ))],
        Ok(free) => vec![problem(
            format!(
                "{} free on the store's file system, {} needed for the next capture",
                gib(free),
                gib(need)
            ),
            "remove old images (`roomcast image rm`, then `roomcast image gc`) or grow the file system",
        )],
        Err(e) => vec![problem(
            format!("free space of {}: {e}", path.display()),
            "check the store's path",
        )],
    }
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("NUL in path"))?;
    // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// The kernel says the clock is synchronised (NTP): the `--at`/`--until` times and the licences'
/// dates depend on it.
fn clock() -> Vec<Finding> {
    // SAFETY: adjtimex with modes = 0 only reads the kernel's state into the struct we own.
    let state = unsafe {
        let mut t: libc::timex = std::mem::zeroed();
        libc::adjtimex(&mut t)
    };
    if state == libc::TIME_ERROR || state < 0 {
        vec![problem(
            "the kernel says the clock is not synchronised",
            "`apt-get install systemd-timesyncd` (or chrony) and point it at the school's NTP \
             server; `timedatectl` shows the state",
        )]
    } else {
        vec![ok("the clock is synchronised")]
    }
}

/// The SSH key for the PCs exists, is readable and not readable by others.
fn ssh_key(path: Option<&Path>) -> Vec<Finding> {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = path else {
        return vec![ok("no SSH key configured")];
    };
    match std::fs::metadata(path) {
        Err(e) => vec![problem(
            format!("SSH key {}: {e}", path.display()),
            format!(
                "`ssh-keygen -t ed25519 -N '' -f {}` and put its .pub on the masters, or correct \
                 `ssh_key` in /etc/roomcast/roomcast.toml",
                path.display()
            ),
        )],
        Ok(m) if m.permissions().mode() & 0o077 != 0 => vec![problem(
            format!(
                "SSH key {} is readable by others (mode {:o})",
                path.display(),
                m.permissions().mode() & 0o777
            ),
            format!("`chmod 600 {}`", path.display()),
        )],
        Ok(_) => vec![ok(format!("SSH key {} is there, mode 600", path.display()))],
    }
}

/// The boot environment is built and was built by this roomcast.
fn bootenv(dir: Option<&Path>) -> Vec<Finding> {
    let Some(dir) = dir else {
        return vec![ok("no boot folder configured")];
    };
    let fix = format!("`roomcast bootenv build --out {}`", dir.display());
    for f in [
        crate::bootenv::KERNEL,
        crate::bootenv::INITRD,
        "undionly.kpxe",
    ] {
        if !dir.join(f).is_file() {
            return vec![problem(
                format!("boot environment {}: no {f}", dir.display()),
                fix,
            )];
        }
    }
    let want = crate::bootenv::version_stamp();
    match std::fs::read_to_string(dir.join(crate::bootenv::VERSION_FILE)) {
        Ok(have) if have == want => vec![ok(format!(
            "boot environment {} built by {}",
            dir.display(),
            want.trim()
        ))],
        Ok(have) => vec![problem(
            format!(
                "boot environment {} was built by {}, this is {}",
                dir.display(),
                have.trim(),
                want.trim()
            ),
            fix,
        )],
        Err(_) => vec![problem(
            format!(
                "boot environment {} has no {} (built by an older roomcast)",
                dir.display(),
                crate::bootenv::VERSION_FILE
            ),
            fix,
        )],
    }
}

/// GLPI opens a session with the configured tokens (and it is closed again).
fn glpi(config: Option<&crate::inventory::glpi::GlpiConfig>) -> Vec<Finding> {
    let Some(config) = config else {
        return vec![ok("no GLPI configured (glpi_url)")];
    };
    let mut c = crate::inventory::glpi::GlpiClient::new(crate::inventory::glpi::GlpiConfig {
        timeout: config.timeout.min(Duration::from_secs(10)),
        ..config.clone()
    });
    match c.init_session() {
        Ok(()) => {
            let _ = c.kill_session();
            vec![ok(format!(
                "GLPI {} answers and accepts the tokens",
                config.url
            ))]
        }
        Err(e) => vec![problem(
            format!("GLPI {}: {e}", config.url),
            "check glpi_url, the tokens in the secrets file, and that this server reaches GLPI",
        )],
    }
}
