//! The network cases of the lab's switch (`roomcast_lab::Network`, issue 22): each one's bridge
//! and port settings as the kernel reports them, and a PC cut off a group by `block_group`.

use roomcast_lab::{Lab, LabGroup, Network};
use std::net::Ipv4Addr;
use std::time::Duration;

fn sys(path: String) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_owned()
}

fn bridge(lab: &Lab, what: &str) -> String {
    sys(format!("/sys/class/net/{}/bridge/{what}", lab.bridge()))
}

fn port(if_name: &str, what: &str) -> String {
    sys(format!("/sys/class/net/{if_name}/brport/{what}"))
}

#[test]
fn each_network_case_sets_the_switch_as_it_says() {
    for case in Network::ALL {
        let lab = Lab::builder().pcs(2).network(case).build().unwrap();
        assert_eq!(lab.network(), case);
        let snooping = bridge(&lab, "multicast_snooping");
        let querier = bridge(&lab, "multicast_querier");
        let version = bridge(&lab, "multicast_igmp_version");
        let (want_snoop, want_querier, want_version) = match case {
            Network::Flood | Network::PcMtu(_) => ("0", None, None),
            Network::SnoopingNoQuerier | Network::RouterPort => ("1", Some("0"), None),
            Network::QuerierV2 | Network::FastLeave | Network::UnreachedPc => {
                ("1", Some("1"), Some("2"))
            }
            Network::QuerierV3 => ("1", Some("1"), Some("3")),
        };
        assert_eq!(snooping, want_snoop, "{case}");
        if let Some(q) = want_querier {
            assert_eq!(querier, q, "{case}");
        }
        if let Some(v) = want_version {
            assert_eq!(version, v, "{case}");
        }
        let router = port(lab.server().host_if(), "multicast_router");
        assert_eq!(
            router == "2",
            case == Network::RouterPort,
            "{case}: {router}"
        );
        for pc in lab.pcs() {
            let fast = port(pc.host_if(), "multicast_fast_leave");
            assert_eq!(fast == "1", case == Network::FastLeave, "{case}: {fast}");
            let mtu = sys(format!("/sys/class/net/{}/mtu", pc.host_if()));
            let want = if let Network::PcMtu(m) = case {
                m
            } else {
                1500
            };
            assert_eq!(mtu, want.to_string(), "{case}");
        }
        lab.teardown().unwrap();
    }
}

#[test]
fn a_pc_cut_off_the_group_gets_nothing_and_the_other_gets_it() {
    let lab = Lab::builder().pcs(2).build().unwrap();
    let group = LabGroup::from_low(7, 9).addr();
    lab.block_group(lab.pc(1).unwrap(), group).unwrap();
    let receivers: Vec<_> = lab
        .pcs()
        .iter()
        .map(|pc| {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let h = pc.spawn(move || -> std::io::Result<usize> {
                let s = std::net::UdpSocket::bind("0.0.0.0:9401")?;
                s.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
                s.set_read_timeout(Some(Duration::from_millis(1500)))?;
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 64];
                let mut got = 0;
                while s.recv(&mut buf).is_ok() {
                    got += 1;
                }
                Ok(got)
            });
            ready_rx.recv().unwrap();
            h
        })
        .collect();
    lab.server()
        .run(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_multicast_ttl_v4(1).unwrap();
            for _ in 0..5 {
                s.send_to(b"room", (group, 9401)).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .unwrap();
    let got: Vec<usize> = receivers
        .into_iter()
        .map(|r| r.join().unwrap().unwrap().unwrap())
        .collect();
    assert_eq!(got, vec![5, 0]);
}
