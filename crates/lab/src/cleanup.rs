//! Finding and removing labs by prefix: what a [`super::Lab`]'s `Drop` does, and what
//! `roomcast lab cleanup` does for the leftovers of a run that was killed before it could drop.
//!
//! Every lab writes `/run/roomcast-lab/<prefix>` (its owner's pid) before it creates anything and
//! removes it last, so a lab whose owner is gone is recognisably stale.

use super::{LabError, cmd};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Where labs record their owner process (tmpfs: cleared at boot, like the namespaces themselves).
pub const STATE_DIR: &str = "/run/roomcast-lab";

/// A lab's name prefix: `rc` followed by 4 lowercase letters or digits, e.g. `rc7k2q`.
///
/// The fixed shape keeps every derived interface name within Linux's 15 characters and makes it
/// impossible for a cleanup to match a real interface such as `eth0` or `docker0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabPrefix(String);

impl LabPrefix {
    /// Length of every prefix.
    pub const LEN: usize = 6;

    /// Checks the shape of `s`.
    pub fn new(s: &str) -> Result<Self, LabError> {
        let ok = s.len() == Self::LEN
            && s.starts_with("rc")
            && s[2..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(LabError::BadPrefix {
                prefix: s.to_owned(),
            })
        }
    }

    /// A fresh random prefix that no existing lab uses.
    pub fn random() -> Result<Self, LabError> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let taken: Vec<LabPrefix> = list()?.into_iter().map(|l| l.prefix).collect();
        loop {
            let tail: String = (0..4)
                .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                .collect();
            let p = Self(format!("rc{tail}"));
            if !taken.contains(&p) && !state_file(&p).exists() {
                return Ok(p);
            }
        }
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix of a lab object name, if it is one: namespaces are `<prefix>-<role>`, host-side
    /// links `<prefix>br`, `<prefix>s`, `<prefix>p<N>`, `<prefix>x<N>`, `<prefix>t<N>`.
    fn of_name(name: &str) -> Option<Self> {
        let head = name.get(..Self::LEN)?;
        let prefix = Self::new(head).ok()?;
        let rest = &name[Self::LEN..];
        let is_link = rest == "br"
            || rest == "s"
            || (rest.len() > 1
                && matches!(rest.as_bytes()[0], b'p' | b'x' | b't')
                && rest[1..].bytes().all(|b| b.is_ascii_digit()));
        (rest.starts_with('-') || is_link).then_some(prefix)
    }
}

impl fmt::Display for LabPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state file of a lab.
pub fn state_file(prefix: &LabPrefix) -> PathBuf {
    PathBuf::from(STATE_DIR).join(prefix.as_str())
}

/// What exists on this machine for one lab prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabRemains {
    /// The lab.
    pub prefix: LabPrefix,
    /// Pid recorded in its state file, if the file exists.
    pub owner: Option<u32>,
    /// Network namespaces `<prefix>-*`.
    pub namespaces: Vec<String>,
    /// Host-side links (bridge, veth ends, taps).
    pub links: Vec<String>,
}

impl LabRemains {
    /// True when the owner process is gone (or never recorded): nobody will drop this lab.
    pub fn is_stale(&self) -> bool {
        match self.owner {
            Some(pid) => !PathBuf::from(format!("/proc/{pid}")).exists(),
            None => true,
        }
    }
}

/// Names of all network namespaces.
pub fn netns_names() -> Result<Vec<String>, LabError> {
    let out = cmd::run("listing network namespaces", "ip", &["netns", "list"])?;
    // Lines look like `name (id: 3)` or just `name`.
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Names of all links of the current (root) namespace.
pub fn link_names() -> Result<Vec<String>, LabError> {
    let out = cmd::run("listing links", "ip", &["-o", "link", "show"])?;
    // Lines look like `12: rcab12p0@if11: <BROADCAST,...`.
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect())
}

/// Every lab that has a namespace, a link or a state file on this machine.
pub fn list() -> Result<Vec<LabRemains>, LabError> {
    let mut labs: BTreeMap<LabPrefix, LabRemains> = BTreeMap::new();
    fn slot(labs: &mut BTreeMap<LabPrefix, LabRemains>, p: LabPrefix) -> &mut LabRemains {
        labs.entry(p.clone()).or_insert_with(|| LabRemains {
            prefix: p,
            owner: None,
            namespaces: Vec::new(),
            links: Vec::new(),
        })
    }
    for ns in netns_names()? {
        if let Some(p) = LabPrefix::of_name(&ns).filter(|_| ns.contains('-')) {
            slot(&mut labs, p).namespaces.push(ns);
        }
    }
    for link in link_names()? {
        if let Some(p) = LabPrefix::of_name(&link).filter(|_| !link.contains('-')) {
            slot(&mut labs, p).links.push(link);
        }
    }
    if let Ok(dir) = std::fs::read_dir(STATE_DIR) {
        for f in dir.flatten() {
            let Ok(p) = LabPrefix::new(&f.file_name().to_string_lossy()) else {
                continue;
            };
            slot(&mut labs, p).owner = std::fs::read_to_string(f.path())
                .ok()
                .and_then(|s| s.trim().parse().ok());
        }
    }
    Ok(labs.into_values().collect())
}

/// Kills every process inside namespace `ns` (SIGKILL), except this process itself, which may have a
/// thread in there.
///
/// A program started by `ip netns exec <ns> ...` is first outside `ns` under that command line, then
/// inside it under its own: the programs on their way in are listed before the namespace's own, so
/// that none falls between the two lists, and both are listed again until a pass finds nobody new.
pub fn kill_processes_in(ns: &str) -> Result<Vec<u32>, LabError> {
    /// Enough for a program that keeps starting others in the namespace while it dies.
    const MAX_PASSES: usize = 20;
    let me = std::process::id();
    let mut killed = Vec::new();
    for _ in 0..MAX_PASSES {
        let on_the_way = entering(ns);
        let out = cmd::run(
            &format!("listing processes in namespace {ns}"),
            "ip",
            &["netns", "pids", ns],
        )?;
        let inside = out.lines().filter_map(|l| l.trim().parse::<u32>().ok());
        let mut new = 0;
        for pid in on_the_way.into_iter().chain(inside) {
            if pid == me || killed.contains(&pid) {
                continue;
            }
            let Ok(raw) = libc::pid_t::try_from(pid) else {
                continue;
            };
            // SAFETY: kill(2) has no memory-safety preconditions; the pid was just read from the kernel.
            if unsafe { libc::kill(raw, libc::SIGKILL) } == 0 {
                killed.push(pid);
                new += 1;
            }
        }
        if new == 0 {
            break;
        }
    }
    Ok(killed)
}

/// Processes on their way into namespace `ns`: `ip netns exec <ns> ...` (how
/// [`crate::Node::command`] starts a program) runs in the caller's namespace until it enters `ns`,
/// so a program spawned just before the lab drops is not yet among `ip netns pids`.
fn entering(ns: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                args.len() > 4 && args[1..4] == [&b"netns"[..], b"exec", ns.as_bytes()]
            })
        })
        .collect()
}

/// Removes everything of lab `prefix`: kills its processes, deletes its namespaces, links and state
/// file, then checks that nothing is left. Idempotent: removing an absent lab is not an error.
pub fn remove(prefix: &LabPrefix) -> Result<(), LabError> {
    let mine = |names: Vec<String>, ns: bool| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| LabPrefix::of_name(n).as_ref() == Some(prefix) && n.contains('-') == ns)
            .collect()
    };
    let mut first_error = None;
    for ns in mine(netns_names()?, true) {
        if let Err(e) = kill_processes_in(&ns) {
            first_error.get_or_insert(e);
        }
        if let Err(e) = cmd::run(
            &format!("lab {prefix}: deleting namespace {ns}"),
            "ip",
            &["netns", "del", &ns],
        ) {
            first_error.get_or_insert(e);
        }
    }
    // Deleting one veth end deletes its peer; a namespace's deletion may already have taken some.
    // Bridge last, so that ports never dangle on a half-removed switch.
    let mut links = mine(link_names()?, false);
    links.sort_by_key(|l| l.ends_with("br"));
    for link in links {
        let step = format!("lab {prefix}: deleting link {link}");
        if let Err(e) = cmd::run(&step, "ip", &["link", "del", &link])
            && link_names()?.contains(&link)
        {
            first_error.get_or_insert(e);
        }
    }
    let state = state_file(prefix);
    if state.exists()
        && let Err(source) = std::fs::remove_file(&state)
    {
        first_error.get_or_insert(LabError::Io {
            step: format!("lab {prefix}: removing {}", state.display()),
            source,
        });
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let left: Vec<String> = mine(netns_names()?, true)
        .into_iter()
        .chain(mine(link_names()?, false))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(LabError::Invalid {
            prefix: prefix.to_string(),
            reason: format!("still present after cleanup: {}", left.join(", ")),
        })
    }
}

/// Removes every lab whose owner process is gone; returns the prefixes removed.
pub fn remove_stale() -> Result<Vec<LabPrefix>, LabError> {
    let mut removed = Vec::new();
    for lab in list()? {
        if lab.is_stale() {
            remove(&lab.prefix)?;
            removed.push(lab.prefix);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_shape() {
        assert!(LabPrefix::new("rcab12").is_ok());
        for bad in [
            "eth0", "rc", "rcab1", "rcab123", "rcAB12", "rcab-1", "xxab12", "",
        ] {
            assert!(LabPrefix::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn object_names_map_to_their_lab_only() {
        let p = LabPrefix::new("rcab12").unwrap();
        for name in [
            "rcab12br",
            "rcab12s",
            "rcab12p0",
            "rcab12p29",
            "rcab12x1",
            "rcab12t3",
            "rcab12-srv",
            "rcab12-pc3",
        ] {
            assert_eq!(LabPrefix::of_name(name), Some(p.clone()), "{name}");
        }
        for name in [
            "eth0",
            "rcab12",
            "rcab12q1",
            "rcab12p",
            "rcab12brx",
            "docker0",
            "rcAB12br",
            "lo",
        ] {
            assert_eq!(LabPrefix::of_name(name), None, "{name}");
        }
    }
}
