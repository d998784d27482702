//! The Debian package, built the way docs/INSTALL.md says (`tests/server/build-deb.sh`), installed
//! into a fresh Debian 12 root (a cached debootstrap, `tests/server/debian-root.sh`) with apt
//! resolving its dependencies from the Debian mirror: an older build first, its conffile modified,
//! then the current one over it. There: `roomcast --version`, `roomcast validate` on the shipped
//! examples, `man roomcast-deploy`, `config show`; `systemd-analyze verify` on the installed units;
//! lintian without errors. Figures (seconds per stage, security scores) go to stderr
//! (docs/INSTALL.md records them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Debian root unpacked from the cached tarball, with /proc mounted; unmounted and removed
/// on drop, also when the test fails.
struct Root {
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
}

impl Root {
    fn unpack(tarball: &Path) -> Root {
        let dir = tempfile::Builder::new()
            .prefix("roomcast-deb-root-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let mut root = Root {
            dir,
            mounts: Vec::new(),
        };
        run(
            "unpack the Debian root",
            Command::new("tar")
                .arg("-C")
                .arg(root.path())
                .arg("-xzf")
                .arg(tarball),
        );
        // /proc only: debootstrap made the root's own /dev nodes (null, zero, urandom, ...), and
        // binding the host's /dev would put it under a folder this test removes.
        let proc_dir = root.path().join("proc");
        run(
            "mount /proc",
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(&proc_dir),
        );
        root.mounts.push(proc_dir);
        // apt resolves names like the host; the packaged services must not start in the chroot.
        std::fs::copy("/etc/resolv.conf", root.path().join("etc/resolv.conf")).unwrap();
        let policy = root.path().join("usr/sbin/policy-rc.d");
        std::fs::write(&policy, "#!/bin/sh\nexit 101\n").unwrap();
        run("chmod", Command::new("chmod").arg("755").arg(&policy));
        root
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn chroot(&self, args: &[&str]) -> Command {
        let mut c = Command::new("chroot");
        c.arg(self.path())
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C.UTF-8");
        c
    }

    fn install(&self, deb: &Path) {
        let name = deb.file_name().unwrap().to_str().unwrap();
        std::fs::copy(deb, self.path().join("tmp").join(name)).unwrap();
        let local = format!("/tmp/{name}");
        run(
            &format!("apt-get install {name}"),
            &mut self.chroot(&[
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                &local,
            ]),
        );
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        // Never remove a folder something is still mounted under: leave it (and say so) instead.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.path().display().to_string();
        if mounts.lines().any(|l| l.contains(&root)) {
            eprintln!("deb: {root} still has a mount: left in place");
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            let _ = dir.keep();
        }
    }
}

fn build_deb(out: &Path, version: Option<&str>) -> PathBuf {
    let mut c = Command::new("bash");
    c.arg(repo().join("tests/server/build-deb.sh"))
        .arg(out)
        .env("DEB_FAST", "1")
        .env("DEB_PROFILE", "dev");
    if let Some(v) = version {
        c.arg(v);
    }
    PathBuf::from(stdout(&run("build the .deb", &mut c)).trim())
}

#[test]
fn the_deb_installs_into_a_fresh_debian_12_and_an_upgrade_keeps_a_modified_conffile() {
    let t = Instant::now();
    let tarball = stdout(&run(
        "debian root",
        Command::new("bash").arg(repo().join("tests/server/debian-root.sh")),
    ));
    eprintln!("deb: cached Debian 12 root ready in {:.0?}", t.elapsed());
    let t = Instant::now();
    let debs = tempfile::tempdir().unwrap();
    let old = build_deb(&debs.path().join("old"), Some("0.0.9-1"));
    let new = build_deb(&debs.path().join("new"), None);
    eprintln!("deb: two packages built in {:.0?}", t.elapsed());

    // lintian: no error (its warnings are listed with why in docs/INSTALL.md).
    let lint = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--allow-root"])
        .arg(&new)
        .output()
        .unwrap();
    let report = stdout(&lint);
    eprintln!("deb: lintian:\n{report}");
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));

    let t = Instant::now();
    let root = Root::unpack(Path::new(tarball.trim()));
    root.install(&old);
    eprintln!(
        "deb: unpacked the root and installed the package with its dependencies in {:.0?}",
        t.elapsed()
    );
    // The technician's edit of the conffile survives the upgrade.
    let conf = root.path().join("etc/roomcast/roomcast.toml");
    let edited = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("/var/lib/roomcast/store", "/srv/images/store");
    assert!(edited.contains("/srv/images/store"));
    std::fs::write(&conf, &edited).unwrap();
    root.install(&new);
    let version = stdout(&run(
        "dpkg-query",
        &mut root.chroot(&["dpkg-query", "-W", "-f=${Version}", "roomcast"]),
    ));
    assert_ne!(version, "0.0.9-1", "the upgrade did not happen");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);

    let out = stdout(&run(
        "--version",
        &mut root.chroot(&["roomcast", "--version"]),
    ));
    assert_eq!(
        out.trim(),
        format!("roomcast {}", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let shown = stdout(&run(
        "config show",
        &mut root.chroot(&["roomcast", "config", "show"]),
    ));
    assert!(
        shown.lines().any(|l| l.starts_with("store ")
            && l.ends_with("= /srv/images/store    # /etc/roomcast/roomcast.toml:9")),
        "{shown}"
    );
    let out = stdout(&run(
        "validate the examples",
        &mut root.chroot(&[
            "sh",
            "-c",
            "cd /usr/share/roomcast/examples && roomcast validate",
        ]),
    ));
    assert!(out.contains(" 0 error(s)"), "{out}");
    let page = stdout(&run(
        "man roomcast-deploy",
        root.chroot(&["man", "roomcast-deploy"])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
    ));
    assert!(page.contains("roomcast-deploy"), "{page}");
    assert!(page.contains("--image"), "{page}");
    for f in [
        "usr/bin/roomcast-agent",
        "usr/share/bash-completion/completions/roomcast",
        "usr/share/zsh/vendor-completions/_roomcast",
        "usr/share/fish/vendor_completions.d/roomcast.fish",
        "usr/share/roomcast/templates/boot/init.sh",
        "usr/share/doc/roomcast/INSTALL.md",
        "var/lib/roomcast/store",
        "etc/systemd/system/multi-user.target.wants/roomcast-resume.service",
    ] {
        // symlink_metadata: the enablement link points at an absolute path inside the root.
        assert!(
            std::fs::symlink_metadata(root.path().join(f)).is_ok(),
            "{f} not installed"
        );
    }

    // systemd-analyze accepts the installed units, in the root where systemd is installed (a
    // school server runs it; minbase has none): their ExecStart binary is the installed one, the
    // targets they name are systemd's. The man pages they point to were checked above (`man`);
    // the host's `man` cannot see the root's, hence --man=no.
    run(
        "apt-get install systemd",
        &mut root.chroot(&[
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "systemd",
        ]),
    );
    for page in [
        "roomcast-serve",
        "roomcast-campaign-resume",
        "roomcast-inventory-sync",
    ] {
        assert!(
            root.path()
                .join(format!("usr/share/man/man1/{page}.1.gz"))
                .exists(),
            "{page}(1), named by a unit, is not installed"
        );
    }
    let units = [
        "roomcast-serve@B204.service",
        "roomcast-resume.service",
        "roomcast-inventory-sync.service",
        "roomcast-inventory-sync.timer",
    ];
    let mut verify = Command::new("systemd-analyze");
    verify
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.path().display()))
        .args(units);
    let out = verify.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("roomcast"), "systemd-analyze verify: {said}");
    for unit in [
        "roomcast-serve@.service",
        "roomcast-resume.service",
        "roomcast-inventory-sync.service",
    ] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(root.path().join("usr/lib/systemd/system").join(unit))
            .output()
            .unwrap();
        let overall = stdout(&out)
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("")
            .to_string();
        eprintln!("deb: systemd-analyze security {unit}: {}", overall.trim());
    }
}
