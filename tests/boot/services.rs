//! `roomcast serve` in a server namespace, probed from a PC namespace with busybox's TFTP and HTTP
//! clients: nothing outside the boot root is served, boot scripts follow the allowlist, a token goes
//! only to the address proxyDHCP saw the PC take (PXE requests sent from the PC's namespace), once
//! per boot, and is one-time; and it refuses to start on an interface without an address in the room subnet.

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
    let lab = Lab::builder().pcs(2).build().expect("lab");
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
    let script_path = format!("/boot/{}.ipxe", CAMPAIGN_MAC.replace(':', "-"));
    let stranger_pc = lab.pc(1).unwrap();
    let get_from = |node: &roomcast_lab::Node| {
        let o = run(node.command("busybox").args([
            "wget",
            "-q",
            "-O",
            "-",
            &format!("{base}{script_path}"),
        ]));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let token_of = |script: &str| {
        script
            .split_whitespace()
            .find_map(|w| w.strip_prefix("roomcast.token="))
            .map(str::to_string)
    };
    // Knowing a listed MAC is not enough: nobody gets a token before proxyDHCP saw the PC boot.
    assert_eq!(token_of(&get(&script_path).1), None, "the PC, not seen yet");
    assert_eq!(
        token_of(&get_from(stranger_pc)),
        None,
        "a host not in the campaign"
    );
    // The PC's PXE exchange as its firmware sends it: DISCOVER, then the port-4011 request from
    // the address it took (ciaddr). Seen taking another address first: its own gets nothing.
    let pc_addr = pc.addr().addr();
    let elsewhere: std::net::Ipv4Addr = "198.18.3.77".parse().unwrap();
    pxe_exchange(pc, srv_ip(&srv), Some(elsewhere));
    assert_eq!(
        token_of(&get(&script_path).1),
        None,
        "the listed PC asking from an address it was not seen taking"
    );
    pxe_exchange(pc, srv_ip(&srv), Some(pc_addr));
    let (ok, script) = get(&script_path);
    assert!(
        ok && script.contains(&format!("{base}/files/vmlinuz initrd=initrd.gz")),
        "{script}"
    );
    let token = token_of(&script).expect("token on the kernel command line");
    assert_eq!(
        token_of(&get(&script_path).1).as_deref(),
        Some(token.as_str()),
        "asking again in the same boot: the same token"
    );
    assert_eq!(
        token_of(&get_from(stranger_pc)),
        None,
        "another address in the same boot gets nothing"
    );
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
    // The PC reboots: a new exchange, a new token through the same path.
    pxe_exchange(pc, srv_ip(&srv), Some(pc_addr));
    let again = token_of(&get(&script_path).1).expect("a new boot gets a token");
    assert_ne!(again, token, "every boot gets a new token");
    assert!(post(&again));
}

fn srv_ip(s: &str) -> std::net::Ipv4Addr {
    s.parse().unwrap()
}

/// What a PC's PXE firmware sends proxyDHCP, from the PC's namespace: a DISCOVER (broadcast on the
/// lab's bridge, port 67), then, when it has an address, the port-4011 boot-server REQUEST naming
/// it (`ciaddr`). Waits for the proxy's ACK to that request, so the server has seen it.
fn pxe_exchange(
    pc: &roomcast_lab::Node,
    server: std::net::Ipv4Addr,
    taken: Option<std::net::Ipv4Addr>,
) {
    use dhcproto::v4::{DhcpOption, Encodable, Message, MessageType, Opcode};
    let mac: roomcast_proto::mac::Mac = CAMPAIGN_MAC.parse().unwrap();
    let packet = |kind, ciaddr: std::net::Ipv4Addr| {
        let mut m = Message::new_with_id(
            rand::random(),
            ciaddr,
            std::net::Ipv4Addr::UNSPECIFIED,
            std::net::Ipv4Addr::UNSPECIFIED,
            std::net::Ipv4Addr::UNSPECIFIED,
            &mac.0,
        );
        m.set_opcode(Opcode::BootRequest);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ));
        m.to_vec().unwrap()
    };
    pc.run(move || {
        // Port 68, as firmware: the proxy's OFFER is broadcast there.
        let s = std::net::UdpSocket::bind("0.0.0.0:68").unwrap();
        s.set_broadcast(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let discover = packet(MessageType::Discover, std::net::Ipv4Addr::UNSPECIFIED);
        let mut buf = [0u8; 1500];
        let offered = (0..5).any(|_| {
            s.send_to(&discover, (std::net::Ipv4Addr::BROADCAST, 67))
                .unwrap();
            s.recv_from(&mut buf).is_ok()
        });
        assert!(offered, "proxyDHCP never answered the DISCOVER");
        let Some(taken) = taken else { return };
        let request = packet(MessageType::Request, taken);
        for _ in 0..5 {
            s.send_to(&request, (server, 4011)).unwrap();
            if s.recv_from(&mut buf).is_ok_and(|(n, _)| n > 0) {
                return;
            }
        }
        panic!("proxyDHCP never answered the port-4011 request");
    })
    .unwrap();
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
