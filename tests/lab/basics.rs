//! A lab comes up, its machines reach each other, two labs coexist, and dropping removes everything.

use super::{anything_left, output};
use roomcast_lab::{Lab, LabError, LabPrefix, Node};
use std::net::Ipv4Addr;

fn ping(from: &Node, to: Ipv4Addr) -> bool {
    let out = output(
        from.command("ping")
            .args(["-c", "1", "-W", "2", "-n", &to.to_string()]),
    );
    out.status.success()
}

#[test]
fn pcs_reach_the_server_and_each_other() {
    let lab = Lab::builder().pcs(3).build().unwrap();
    let server = lab.server();
    assert_eq!(server.addr().to_string(), "198.18.0.1");
    for pc in lab.pcs() {
        assert!(ping(pc, server.addr().addr()), "{} -> server", pc.role());
        for other in lab.pcs() {
            if other != pc {
                assert!(
                    ping(pc, other.addr().addr()),
                    "{} -> {}",
                    pc.role(),
                    other.role()
                );
            }
        }
    }
    assert!(ping(server, lab.pc(2).unwrap().addr().addr()));
    // An address nobody holds answers nothing: the room is closed, there is no way out.
    assert!(!ping(lab.pc(0).unwrap(), Ipv4Addr::new(198, 18, 9, 9)));
}

#[test]
fn every_address_has_a_broadcast_and_the_routes_for_broadcast_and_multicast() {
    let lab = Lab::builder().pcs(1).build().unwrap();
    let pc = lab.pc(0).unwrap();
    let addr = output(
        pc.command("ip")
            .args(["-4", "addr", "show", "dev", pc.ifname()]),
    );
    let addr = String::from_utf8_lossy(&addr.stdout);
    assert!(
        addr.contains("inet 198.18.1.1/16 brd 198.18.255.255"),
        "{addr}"
    );
    let routes = output(pc.command("ip").args(["route", "show"]));
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(routes.contains("default dev vc0"), "{routes}");
    assert!(routes.contains("224.0.0.0/4 dev vc0"), "{routes}");
    // A broadcast datagram is accepted by the kernel (no "network unreachable").
    let sent = pc
        .run(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
            s.set_broadcast(true)?;
            s.send_to(b"hello", "255.255.255.255:9")
        })
        .unwrap();
    assert_eq!(sent.unwrap(), 5);
}

#[test]
fn drop_removes_every_namespace_link_and_process() {
    let lab = Lab::builder().pcs(2).build().unwrap();
    let prefix = lab.prefix().to_string();
    assert!(!anything_left(&prefix).is_empty());
    // A process started in a PC namespace and never waited for.
    let mut sleeper = lab
        .pc(1)
        .unwrap()
        .command("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    drop(lab);
    assert_eq!(anything_left(&prefix), Vec::<String>::new());
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "sleep {pid} was not killed");
    assert!(!std::path::Path::new(&format!("/run/roomcast-lab/{prefix}")).exists());
}

#[test]
fn drop_cleans_up_after_a_panic() {
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::builder().pcs(1).build().unwrap();
        let prefix = lab.prefix().to_string();
        std::panic::panic_any(prefix);
    });
    let prefix = *result.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(anything_left(&prefix), Vec::<String>::new());
}

#[test]
fn two_labs_at_once_do_not_collide() {
    let a = Lab::builder().pcs(2).build().unwrap();
    let b = Lab::builder().pcs(2).build().unwrap();
    assert_ne!(a.prefix(), b.prefix());
    // Same addresses in both rooms, but separate switches: each PC reaches its own server only.
    let a_srv = a.server().addr().addr();
    assert!(ping(a.pc(1).unwrap(), a_srv));
    assert!(ping(b.pc(1).unwrap(), b.server().addr().addr()));
    let b_prefix = b.prefix().to_string();
    drop(b);
    assert!(anything_left(&b_prefix).is_empty());
    assert!(ping(a.pc(0).unwrap(), a_srv), "dropping b broke a");
}

#[test]
fn a_chosen_prefix_in_use_is_refused_and_cleanup_removes_a_crashed_lab() {
    let prefix = LabPrefix::random().unwrap();
    let lab = Lab::builder()
        .pcs(1)
        .prefix(prefix.clone())
        .build()
        .unwrap();
    let again = Lab::builder().prefix(prefix.clone()).build();
    assert!(matches!(again, Err(LabError::Invalid { .. })), "{again:?}");
    // A crashed run: the lab is never dropped.
    std::mem::forget(lab);
    assert!(!anything_left(prefix.as_str()).is_empty());
    roomcast_lab::cleanup::remove(&prefix).unwrap();
    assert_eq!(anything_left(prefix.as_str()), Vec::<String>::new());
}

#[test]
fn extra_nodes_and_taps_join_the_room() {
    let mut lab = Lab::builder().pcs(1).build().unwrap();
    let dc = lab.add_node("dc").unwrap().clone();
    assert_eq!(dc.addr().to_string(), "198.18.0.10");
    assert!(ping(lab.pc(0).unwrap(), dc.addr().addr()));
    assert!(lab.add_node("pc7").is_err());
    assert!(lab.add_node("dc").is_err());
    let tap = lab.add_tap().unwrap();
    let out = output(std::process::Command::new("ip").args(["-o", "link", "show", "dev", &tap]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("master {}", lab.bridge())), "{text}");
}

#[test]
fn multicast_reaches_every_pc_with_snooping_on() {
    let lab = Lab::builder()
        .pcs(2)
        .multicast_snooping(true)
        .build()
        .unwrap();
    let snooping = std::fs::read_to_string(format!(
        "/sys/class/net/{}/bridge/multicast_snooping",
        lab.bridge()
    ))
    .unwrap();
    assert_eq!(snooping.trim(), "1");
    let group = roomcast_lab::LabGroup::from_low(7, 1);
    let receivers: Vec<_> = lab
        .pcs()
        .iter()
        .map(|pc| {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let g = group.addr();
            let h = pc.spawn(move || -> std::io::Result<Vec<u8>> {
                let s = std::net::UdpSocket::bind("0.0.0.0:9400")?;
                s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 64];
                let n = s.recv(&mut buf)?;
                Ok(buf[..n].to_vec())
            });
            ready_rx.recv().unwrap();
            h
        })
        .collect();
    // Give the IGMP joins time to reach the bridge before the first datagram.
    std::thread::sleep(std::time::Duration::from_millis(300));
    lab.server()
        .run(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_multicast_ttl_v4(1).unwrap();
            for _ in 0..5 {
                s.send_to(b"room", (group.addr(), 9400)).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
        .unwrap();
    for r in receivers {
        assert_eq!(r.join().unwrap().unwrap().unwrap(), b"room");
    }
}

#[test]
fn a_lab_whose_owner_died_is_listed_as_stale() {
    let lab = Lab::builder().pcs(1).build().unwrap();
    let prefix = lab.prefix().clone();
    let listed = |p: &LabPrefix| {
        roomcast_lab::cleanup::list()
            .unwrap()
            .into_iter()
            .find(|l| &l.prefix == p)
    };
    let live = listed(&prefix).unwrap();
    assert_eq!(live.owner, Some(std::process::id()));
    assert!(!live.is_stale());
    assert_eq!(live.namespaces.len(), 2, "{live:?}");
    assert_eq!(live.links.len(), 3, "{live:?}");
    // Pretend the owner was a process that has exited since.
    std::mem::forget(lab);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        roomcast_lab::cleanup::state_file(&prefix),
        dead_pid.to_string(),
    )
    .unwrap();
    assert!(listed(&prefix).unwrap().is_stale());
    roomcast_lab::cleanup::remove(&prefix).unwrap();
    assert!(listed(&prefix).is_none());
}
