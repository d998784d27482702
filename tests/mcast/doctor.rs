//! `roomcast doctor` in the lab (issue 22): the server and `doctor --listen` on every PC, real
//! binaries; the verdict names the PC the group never reaches, and a path whose MTU is too small
//! for full-size datagrams.

use roomcast_lab::{Lab, Network, Node};
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_roomcast");
const GROUP: &str = "239.255.77.9:9000";

fn mac(pc: &Node) -> String {
    let out = pc
        .command("cat")
        .arg(format!("/sys/class/net/{}/address", pc.ifname()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs the doctor on the server and a listener on every PC; returns the server's output.
fn doctor(lab: &Lab) -> (Output, Vec<Output>) {
    let server = lab.server();
    let listeners: Vec<_> = lab
        .pcs()
        .iter()
        .map(|pc| {
            pc.command(BIN)
                .args(["doctor", "--listen", &server.addr().addr().to_string()])
                .args(["--group", GROUP, "--wait", "30"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut cmd: Command = server.command(BIN);
    cmd.args(["doctor", "--interface", server.ifname()]).args([
        "--group",
        GROUP,
        "--seconds",
        "2",
        "--wait",
        "30",
    ]);
    for pc in lab.pcs() {
        cmd.args(["--machine", &format!("{}={}", mac(pc), pc.role())]);
    }
    let out = cmd.output().unwrap();
    let pcs = listeners
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    (out, pcs)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn line_of<'a>(out: &'a str, role: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(&format!("{role} (")))
        .unwrap_or_else(|| panic!("no line for {role}:\n{out}"))
}

#[test]
fn doctor_names_the_pc_the_group_never_reaches() {
    let lab = Lab::builder()
        .pcs(3)
        .network(Network::QuerierV2)
        .build()
        .unwrap();
    let group: Ipv4Addr = GROUP.split(':').next().unwrap().parse().unwrap();
    lab.block_group(&lab.pcs()[2], group).unwrap();
    let (out, pcs) = doctor(&lab);
    let t = text(&out);
    for p in &pcs {
        assert!(p.status.success(), "{}", text(p));
    }
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(line_of(&t, "pc0").contains("ok"), "{t}");
    assert!(line_of(&t, "pc1").contains("ok"), "{t}");
    let cut = line_of(&t, "pc2");
    assert!(
        cut.contains("FAIL") && cut.contains("receives nothing from the multicast group"),
        "{t}"
    );
}

#[test]
fn doctor_finds_a_path_mtu_too_small_for_full_datagrams() {
    let lab = Lab::builder()
        .pcs(1)
        .network(Network::PcMtu(1400))
        .build()
        .unwrap();
    let (out, pcs) = doctor(&lab);
    let t = text(&out);
    assert!(pcs[0].status.success(), "{}", text(&pcs[0]));
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(line_of(&t, "pc0").contains("small datagrams only"), "{t}");
}

#[test]
fn doctor_passes_a_room_the_stream_reaches() {
    let lab = Lab::builder()
        .pcs(2)
        .network(Network::QuerierV3)
        .build()
        .unwrap();
    let (out, _) = doctor(&lab);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(line_of(&t, "pc0").trim_start().starts_with("ok"), "{t}");
    assert!(line_of(&t, "pc1").trim_start().starts_with("ok"), "{t}");
}
