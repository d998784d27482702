//! Wake-on-LAN from the server namespace reaches a PC namespace both as a UDP broadcast and as a raw
//! EtherType 0x0842 frame.

use roomcast::net::wol::Waker;
use roomcast_lab::Lab;
use roomcast_proto::mac::Mac;
use roomcast_proto::wol::find_target;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn magic_packets_reach_the_pc_both_ways() {
    let lab = Lab::builder().pcs(1).build().expect("lab");
    let pc = lab.pc(0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("wol.pcap");
    let mut tcpdump = pc
        .command("tcpdump")
        .args(["-i", pc.ifname(), "-U", "-c", "2", "-w"])
        .arg(&pcap)
        .arg("ether proto 0x0842 or udp port 9")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1500));
    let target: Mac = "6c:4b:90:0c:a8:01".parse().unwrap();
    let server_if = lab.server().ifname().to_string();
    lab.server()
        .run(move || {
            Waker::open(&server_if).and_then(|mut w| w.wake(target, Some([1, 2, 3, 4, 5, 6])))
        })
        .expect("enter the server namespace")
        .expect("send");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tcpdump.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let frames = super::pcap_frames(&pcap);
    let raw = frames
        .iter()
        .find(|f| f[12..14] == [0x08, 0x42])
        .expect("raw 0x0842 frame");
    assert_eq!(find_target(&raw[14..]), Some(target));
    assert_eq!(
        &raw[14 + 102..14 + 108],
        &[1, 2, 3, 4, 5, 6],
        "SecureOn password"
    );
    let udp = frames
        .iter()
        .find(|f| f[12..14] == [0x08, 0x00])
        .expect("UDP broadcast");
    assert_eq!(
        &udp[30..34],
        &[255, 255, 255, 255],
        "to the limited broadcast address"
    );
    assert_eq!(&udp[36..38], &9u16.to_be_bytes(), "to port 9");
    assert_eq!(find_target(&udp[42..]), Some(target));
}

/// `roomcast wake` repeats each PC's packet every `--repeat-every` seconds until `--deadline`, in
/// stagger order.
#[test]
fn wake_command_staggers_and_repeats() {
    let lab = Lab::builder().pcs(1).build().expect("lab");
    let pc = lab.pc(0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("wake.pcap");
    let mut tcpdump = pc
        .command("tcpdump")
        .args(["-i", pc.ifname(), "-U", "-w"])
        .arg(&pcap)
        .arg("ether proto 0x0842")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1500));
    let server = lab.server();
    let out = server
        .command(env!("CARGO_BIN_EXE_roomcast"))
        .args(["wake", "--interface", server.ifname(), "--per-second", "2"])
        .args(["--repeat-every", "1", "--deadline", "2"])
        .args([
            "--machine",
            "6c:4b:90:0c:a8:01",
            "--machine",
            "6c:4b:90:0c:a8:02",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let targets: Vec<String> = super::pcap_frames(&pcap)
        .iter()
        .filter_map(|f| find_target(&f[14..]))
        .map(|m| m.to_string())
        .collect();
    // Sends at 0 s (a8:01), 0.5 s (a8:02), 1 s (a8:01), 1.5 s (a8:02); the deadline stops the rest.
    assert_eq!(
        targets,
        [
            "6c:4b:90:0c:a8:01",
            "6c:4b:90:0c:a8:02",
            "6c:4b:90:0c:a8:01",
            "6c:4b:90:0c:a8:02"
        ]
    );
}

/// `roomcast serve --wake`: a machine stops getting magic packets once proxyDHCP has seen it ask,
/// the other keeps getting them until the deadline.
#[test]
fn serve_stops_waking_a_machine_once_it_asks_for_its_boot_file() {
    let lab = Lab::builder().pcs(1).build().expect("lab");
    let pc = lab.pc(0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("wake.pcap");
    let mut tcpdump = pc
        .command("tcpdump")
        .args(["-i", pc.ifname(), "-U", "-w"])
        .arg(&pcap)
        .arg("ether proto 0x0842")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1500));
    let (seen_mac, other_mac) = ("52:54:00:18:00:07", "52:54:00:18:00:08");
    let server = lab.server();
    let mut serve = server
        .command(env!("CARGO_BIN_EXE_roomcast"))
        .args([
            "serve",
            "--interface",
            server.ifname(),
            "--subnet",
            "198.18.0.0/16",
        ])
        .args(["--machine", seen_mac, "--machine", other_mac])
        .args(["--wake", "6", "--wake-every", "1"])
        .arg("--boot-dir")
        .arg(dir.path())
        .arg("--reports")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // The captured OVMF DISCOVER of 52:54:00:18:00:07, broadcast from the PC's port 68.
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/proto/tests/fixtures/dhcp/uefi-01-discover-67.bin"
    );
    let send = pc
        .command("python3")
        .args([
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); \
             s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1); s.bind(('0.0.0.0',68)); \
             s.sendto(open(sys.argv[1],'rb').read(),('255.255.255.255',67))",
            fixture,
        ])
        .output()
        .unwrap();
    assert!(send.status.success(), "{send:?}");
    std::thread::sleep(Duration::from_secs(6));
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let targets: Vec<String> = super::pcap_frames(&pcap)
        .iter()
        .filter_map(|f| find_target(&f[14..]))
        .map(|m| m.to_string())
        .collect();
    let count = |m: &str| targets.iter().filter(|t| *t == m).count();
    assert!(count(seen_mac) >= 1, "{targets:?}");
    assert!(
        count(seen_mac) <= 3,
        "woken again after it was seen: {targets:?}"
    );
    assert!(
        count(other_mac) >= 5,
        "the unseen machine is woken every second: {targets:?}"
    );
}
