//! Issue 22: the network matrix. The real `roomcast deploy` and `roomcast agent` in the lab
//! (server + 3 PCs, 200 Mbit/s links), on a switch set up as the networks schools have
//! (`roomcast_lab::Network`): snooping off, snooping without querier, IGMPv2 and IGMPv3 querier,
//! a static multicast-router port only, fast-leave, an MTU of 1400 on the PCs' side, and a PC
//! whose port never gets the group. In every cell every disk must end bit-identical to the image;
//! the PC the stream never reaches must be named and finish over HTTP. Correctness only: the
//! times are `examples/bench_multicast.rs --network` (docs/PERFORMANCE.md).

use super::deploy::{Deploy, Images, blank_disk, sha256_file};
use roomcast_lab::Network;
use std::net::Ipv4Addr;
use std::time::Duration;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 3);

/// The deploy's JSON summary (last line of its stdout).
fn summary(log: &str) -> serde_json::Value {
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary; log:\n{log}"));
    serde_json::from_str(line).unwrap()
}

fn cell(network: Network) {
    let images = Images::new();
    let (id, source) = images.v1();
    let want = sha256_file(&source);
    let mut d = Deploy::start_on(&images, &id, 3, 0, network, &["--json"]);
    let cut = network.unreached_pc().then_some(2);
    if let Some(i) = cut {
        d.lab.block_group(&d.lab.pcs()[i], GROUP).unwrap();
    }
    let mut agents: Vec<_> = (0..3)
        .map(|i| {
            blank_disk(&d.disk(i));
            d.agent(&images, i, &d.tokens[i].clone(), &format!("agent{i}"))
        })
        .collect();
    for (i, a) in agents.iter_mut().enumerate() {
        assert!(
            a.wait(Duration::from_secs(180)).success(),
            "{network}: agent{i}:\n{}",
            a.log()
        );
        assert_eq!(
            sha256_file(&d.disk(i)),
            want,
            "{network}: pc{i}'s disk is the image"
        );
        let r = a.report();
        assert_eq!(r["result"], "ok", "{network}: {r}");
        assert_eq!(r["transport"], "multicast", "{network}: {r}");
        assert!(r["multicast"]["from_start"].is_boolean(), "{network}: {r}");
        if Some(i) == cut {
            assert_eq!(r["multicast"]["complete"], false, "{network}: {r}");
            assert!(r["catch_up_bytes"].as_u64().unwrap() > 0, "{network}: {r}");
        }
    }
    let status = d.server.wait(Duration::from_secs(120));
    let log = d.server.log();
    assert!(status.success(), "{network}: deploy failed:\n{log}");
    assert!(
        log.contains("3 of 3 machine(s) hold the image"),
        "{network}: {log}"
    );
    let s = summary(&log);
    let macs: Vec<String> = std::fs::read_to_string(d.dir.path().join("reports/tokens"))
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    for (i, mac) in macs.iter().enumerate() {
        let m = s["machines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mac"] == mac.as_str())
            .unwrap_or_else(|| panic!("{network}: pc{i} ({mac}) not in {s}"));
        if Some(i) == cut {
            assert_eq!(m["outcome"], "caught-up", "{network}: {m}");
            assert_eq!(m["unreached"], true, "{network}: {m}");
            let note = m["note"].as_str().unwrap_or_default();
            assert!(
                note.contains("receives nothing from the multicast group")
                    && note.contains("docs/MULTICAST.md"),
                "{network}: {m}"
            );
            assert!(
                log.lines()
                    .any(|l| l.contains(mac.as_str()) && l.contains("receives nothing")),
                "{network}: the deploy's output names {mac}:\n{log}"
            );
        } else {
            assert_eq!(m["outcome"], "done", "{network}: pc{i}: {m}");
            assert_eq!(m["unreached"], false, "{network}: {m}");
        }
    }
    if let Network::PcMtu(mtu) = network {
        // Sealed datagrams (symbol + 36-byte header + 24-byte seal + UDP + IPv4) fit the PCs' MTU.
        let symbol = s["symbol_size"].as_u64().unwrap();
        let seal = roomcast_proto::mcast::SEAL_OVERHEAD as u64;
        assert!(symbol + 64 + seal <= u64::from(mtu), "{network}: {s}");
    }
}

#[test]
fn network_snooping_off() {
    cell(Network::Flood);
}

#[test]
fn network_snooping_without_querier() {
    cell(Network::SnoopingNoQuerier);
}

#[test]
fn network_igmpv2_querier() {
    cell(Network::QuerierV2);
}

#[test]
fn network_igmpv3_querier() {
    cell(Network::QuerierV3);
}

#[test]
fn network_multicast_router_port_only() {
    cell(Network::RouterPort);
}

#[test]
fn network_fast_leave() {
    cell(Network::FastLeave);
}

#[test]
fn network_mtu_1400_on_the_pcs_side() {
    cell(Network::PcMtu(1400));
}

#[test]
fn network_one_pc_never_gets_the_group() {
    cell(Network::UnreachedPc);
}
