//! A minimal namespace lab for the campaign tests: a switch namespace holding a bridge, one namespace
//! per node (veth into the bridge, an address in 198.18.0.0/15), daemons started inside, and a Drop
//! that kills them and deletes every namespace (which deletes the veths and the bridge).
//!
//! Local to these tests until the shared `lab` module is merged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its stderr when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One test's lab; everything it creates carries its unique prefix.
pub struct Lab {
    /// Unique per test run and test.
    pub prefix: String,
    switch: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    ports: u32,
}

impl Lab {
    /// A new lab with an empty switch. `tag` is a short name of the test.
    pub fn new(tag: &str) -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("rcc{}{}{}", std::process::id() % 10000, tag, n);
        let switch = format!("{prefix}-sw");
        let mut lab = Lab {
            prefix,
            switch: switch.clone(),
            namespaces: Vec::new(),
            children: Vec::new(),
            ports: 0,
        };
        sh(&["ip", "netns", "add", &switch]);
        lab.namespaces.push(switch.clone());
        sh(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        lab
    }

    /// Adds a node namespace `<prefix>-<name>` with `eth0` at `addr` (CIDR in 198.18.0.0/15).
    pub fn node(&mut self, name: &str, addr: &str) -> String {
        assert!(addr.starts_with("198.18.") || addr.starts_with("198.19."));
        let ns = format!("{}-{name}", self.prefix);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.ports += 1;
        let port = format!("p{}", self.ports);
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        sh(&[
            "ip", "-n", &ns, "addr", "add", addr, "brd", "+", "dev", "eth0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Starts a daemon (killed on Drop).
    pub fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Stops one daemon started with [`Lab::spawn`].
    pub fn kill(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut c = self.children.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Processes still inside (daemons' own children) keep a namespace alive: kill them first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns` (threads and sockets it creates stay
/// there), so the test's own SSH client talks only inside the lab.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from("/var/run/netns").join(ns);
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
    .join()
    .expect("thread in namespace panicked")
}

fn enter(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: setns on a valid fd only changes this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}
