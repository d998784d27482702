//! `roomcast serve` in a server namespace, probed from a PC namespace with busybox's TFTP and HTTP
//! clients: nothing outside the boot root is served, boot scripts follow the allowlist, tokens are
//! one-time; and it refuses to start on an interface without an address in the room subnet.

use roomcast_lab::Lab;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const CAMPAIGN_MAC: &str = "52:54:00:18:03:01";

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tftp_and_http_serve_only_the_boot_root_and_tokens_are_one_time() {
    let lab = Lab::builder().pcs(1).build().expect("lab");
    let work = tempfile::tempdir().unwrap();
    let boot = work.path().join("boot");
    std::fs::create_dir(&boot).unwrap();
    std::fs::write(boot.join("undionly.kpxe"), b"ipxe-binary").unwrap();
    std::fs::write(work.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(work.path().join("secret"), boot.join("link-out")).unwrap();
    let server = lab.server();
    let _serve = Serve(
        server
            .command(env!("CARGO_BIN_EXE_roomcast"))
            .args([
                "serve",
                "--interface",
                server.ifname(),
                "--subnet",
                "198.18.0.0/16",
            ])
            .args(["--machine", CAMPAIGN_MAC, "--http-port", "8080"])
            .arg("--boot-dir")
            .arg(&boot)
            .arg("--reports")
            .arg(work.path().join("reports"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let pc = lab.pc(0).unwrap();
    let srv = server.addr().to_string();
    let out = work.path().join("got");
    let tftp = |name: &str| {
        let _ = std::fs::remove_file(&out);
        let o = run(pc
            .command("busybox")
            .args(["tftp", "-g", "-r", name, "-l"])
            .arg(&out)
            .arg(&srv));
        (o.status.success(), std::fs::read(&out).unwrap_or_default())
    };
    assert_eq!(tftp("undionly.kpxe"), (true, b"ipxe-binary".to_vec()));
    assert_eq!(tftp("/undionly.kpxe"), (true, b"ipxe-binary".to_vec()));
    for bad in ["../../etc/passwd", "/etc/passwd", "../secret", "link-out"] {
        let (ok, bytes) = tftp(bad);
        assert!(
            !ok && !bytes.starts_with(b"root:") && bytes != b"outside",
            "TFTP served {bad}"
        );
    }

    let base = format!("http://{srv}:8080");
    let get = |path: &str| {
        let o =
            run(pc
                .command("busybox")
                .args(["wget", "-q", "-O", "-", &format!("{base}{path}")]));
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, body) = get("/files/undionly.kpxe");
    assert!(ok && body == "ipxe-binary");
    for bad in [
        "/files/..%2F..%2Fetc%2Fpasswd",
        "/files/%2Fetc%2Fpasswd",
        "/files/link-out",
        "/files/../secret",
    ] {
        let (ok, body) = get(bad);
        assert!(
            !ok && !body.contains("root:") && !body.contains("outside"),
            "HTTP served {bad}: {body}"
        );
    }
    let (ok, stranger) = get("/boot/52-54-00-18-03-99.ipxe");
    assert!(ok && stranger.starts_with("#!ipxe"), "{stranger}");
    assert!(
        stranger.contains("sanboot --no-describe --drive 0x80") && !stranger.contains("kernel"),
        "{stranger}"
    );
    let (ok, script) = get(&format!("/boot/{}.ipxe", CAMPAIGN_MAC.replace(':', "-")));
    assert!(
        ok && script.contains(&format!("{base}/files/vmlinuz initrd=initrd.gz")),
        "{script}"
    );
    let token = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roomcast.token="))
        .expect("token on the kernel command line")
        .to_string();
    let post = |token: &str| {
        run(pc.command("busybox").args([
            "wget",
            "-q",
            "-O",
            "-",
            "--header",
            &format!("X-Roomcast-Token: {token}"),
            "--header",
            &format!(
                "X-Roomcast-Contract: {}",
                roomcast_proto::contract::CONTRACT_VERSION
            ),
            "--post-data",
            "{}",
            &format!("{base}/agent/report"),
        ]))
        .status
        .success()
    };
    assert!(
        !post("0123456789abcdef0123456789abcdef"),
        "an invented token is refused"
    );
    assert!(post(&token), "the token works once");
    assert!(!post(&token), "a replayed token is refused");
    let (_, again) = get(&format!("/boot/{}.ipxe", CAMPAIGN_MAC.replace(':', "-")));
    assert!(!again.contains(&token), "every boot gets a new token");
}

#[test]
fn serve_refuses_an_interface_outside_the_room_subnet() {
    let lab = Lab::builder().pcs(0).build().expect("lab");
    let server = lab.server();
    let work = tempfile::tempdir().unwrap();
    for (interface, subnet) in [
        (server.ifname(), "198.19.0.0/16"),
        ("nosuchif0", "198.18.0.0/16"),
    ] {
        let o = run(server
            .command(env!("CARGO_BIN_EXE_roomcast"))
            .args([
                "serve",
                "--interface",
                interface,
                "--subnet",
                subnet,
                "--machine",
                CAMPAIGN_MAC,
            ])
            .arg("--boot-dir")
            .arg(work.path())
            .arg("--reports")
            .arg(work.path()));
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(interface), "{err}");
    }
}
