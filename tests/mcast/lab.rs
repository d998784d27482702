//! The tokio drivers on real sockets, in the network-namespace lab: one deploy server, 3 PCs on
//! 200 Mbit/s links, with and without 5 % loss on the multicast port. Every PC ends with the image,
//! block for block. The stream is sealed with a session key (issue 20): a fourth host of the LAN
//! that joins the group records nothing of the image and the forged and tampered datagrams it
//! sends into the group are dropped and counted. Needs root (CI runs as root); the lab removes what it creates.

use roomcast_lab::{Lab, Tbf};
use roomcast_mcast::{
    BlockSink, BlockSource, McastAddr, Membership, SessionKey, run_receiver,
    run_receiver_reporting, run_sender,
};
use roomcast_proto::mcast::{
    BlockSet, MachineId, RateConfig, Receiver, ReceiverConfig, ReceiverIdentity, Sender,
    SenderConfig, SessionId, Timestamp, Token,
};
use sha2::{Digest, Sha256};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 1), 9000);
const CONTROL_PORT: u16 = 9500;

struct Image(Vec<Vec<u8>>);

impl BlockSource for Image {
    fn read_block(&mut self, index: u32) -> io::Result<Vec<u8>> {
        Ok(self.0[index as usize].clone())
    }
}

/// A disk in memory that, like the agent, writes a block only if its sha256 matches.
struct Disk {
    digests: Vec<[u8; 32]>,
    blocks: Vec<Option<Vec<u8>>>,
}

impl BlockSink for Disk {
    fn verify_and_write(&mut self, index: u32, data: &[u8]) -> io::Result<bool> {
        let ok = <[u8; 32]>::from(Sha256::digest(data)) == self.digests[index as usize];
        if ok {
            self.blocks[index as usize] = Some(data.to_vec());
        }
        Ok(ok)
    }
}

fn image() -> Vec<Vec<u8>> {
    // 48 incompressible blocks of 100-500 kB (about 14 MB): compressed chunks.
    let mut x = 0x1234_5678_9abc_def0u64;
    (0..48)
        .map(|i| {
            let len = 100_000 + (i * 8_513) % 400_000;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

/// The server's address, its control address, and a listener bound there in its namespace.
fn control_listener(lab: &Lab) -> (Ipv4Addr, SocketAddr, std::net::TcpListener) {
    let server_addr = lab.server().addr().addr();
    let control = SocketAddr::V4(SocketAddrV4::new(server_addr, CONTROL_PORT));
    let listener = lab
        .server()
        .run(move || std::net::TcpListener::bind(control))
        .unwrap()
        .unwrap();
    (server_addr, control, listener)
}

/// What a host of the LAN outside the roster did during a deploy.
#[derive(Debug, Default)]
struct Intruder {
    /// Every datagram of the group it received.
    recorded: Vec<Vec<u8>>,
    /// Datagrams it sent into the group: recorded ones with one byte flipped, and random ones.
    injected: u64,
}

/// Joins the group from `node` and records every datagram until `stop`; when `tamper`, sends back
/// into the group a copy of every 8th one with a byte flipped, and a random datagram as often.
fn intrude(
    node: &roomcast_lab::Node,
    tamper: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<Intruder, roomcast_lab::LabError>> {
    let own = node.addr().addr();
    node.spawn(move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_reuse_address(true).unwrap();
        let _ = s.set_recv_buffer_size(8 << 20);
        s.bind(&SocketAddr::V4(GROUP).into()).unwrap();
        s.join_multicast_v4(GROUP.ip(), &own).unwrap();
        s.set_multicast_if_v4(&own).unwrap();
        s.set_multicast_loop_v4(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let udp: std::net::UdpSocket = s.into();
        let mut me = Intruder::default();
        let mut buf = [0u8; 2048];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(n) = udp.recv(&mut buf) else { continue };
            let d = buf[..n].to_vec();
            if tamper && me.recorded.len() % 8 == 0 && me.injected < 4000 {
                let mut bad = d.clone();
                let at = me.recorded.len() % bad.len();
                bad[at] ^= 0x20;
                let random: Vec<u8> = (0..n).map(|_| rand::random()).collect();
                for forged in [bad, random] {
                    if udp.send_to(&forged, GROUP).is_ok() {
                        me.injected += 1;
                    }
                }
            }
            me.recorded.push(d);
        }
        me
    })
}

/// Whether any piece of any block appears in `recorded`: every 32 bytes at each symbol boundary
/// of each block (a clear data packet carries a source symbol verbatim).
pub(super) fn image_bytes_found(image: &[Vec<u8>], recorded: &[Vec<u8>]) -> usize {
    let finder: Vec<&[u8]> = image
        .iter()
        .flat_map(|b| b.chunks(1400).map(|s| &s[..s.len().min(32)]))
        .filter(|p| p.len() == 32)
        .collect();
    let all: Vec<u8> = recorded.concat();
    let ac = aho_corasick::AhoCorasick::new(&finder).unwrap();
    let found: std::collections::BTreeSet<usize> = ac
        .find_overlapping_iter(&all)
        .map(|m| m.pattern().as_usize())
        .collect();
    found.len()
}

fn deploy(loss_percent: u8) {
    deploy_with(loss_percent, Some(SessionKey([0x5e; 32])), false);
}

/// A deploy to three PCs; a fourth host of the LAN joins the group, records, and (`tamper`) sends
/// tampered and forged datagrams into it. Returns the intruder's record and what the PCs rejected.
fn deploy_with(loss_percent: u8, key: Option<SessionKey>, tamper: bool) -> (Intruder, Vec<u64>) {
    let lab = Lab::builder().pcs(4).rate(Tbf::mbit(200)).build().unwrap();
    if loss_percent > 0 {
        for pc in lab.pcs() {
            lab.set_loss(pc, loss_percent, GROUP.port()..=GROUP.port())
                .unwrap();
        }
    }
    let image = image();
    let digests: Vec<[u8; 32]> = image.iter().map(|b| Sha256::digest(b).into()).collect();
    let lens: Vec<u32> = image.iter().map(|b| b.len() as u32).collect();
    let machines: Vec<(MachineId, Token)> = (0..3u8)
        .map(|i| (MachineId([2, 0x52, 0x43, 0, 0, i]), Token([i + 1; 32])))
        .collect();
    let (server_addr, control, listener) = control_listener(&lab);
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let intruder = intrude(lab.pc(3).unwrap(), tamper, stop.clone());
    let cfg = SenderConfig {
        rate: RateConfig {
            // Just under the 200 Mbit/s tbf of the links.
            max_bps: 190_000_000,
            min_bps: 20_000_000,
            ..RateConfig::default()
        },
        expect: 3,
        ..SenderConfig::default()
    };
    let roster = machines.clone();
    let server = lab.server().spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sender = Sender::new(cfg, SessionId(0x1ab), &lens, roster, Timestamp::ZERO)
                .expect("valid blocks");
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let addr = McastAddr {
                interface: server_addr,
                group: GROUP,
                key,
            };
            let mut source = Image(image);
            tokio::time::timeout(
                Duration::from_secs(120),
                run_sender(sender, listener, addr, &mut source),
            )
            .await
        })
    });
    let pcs: Vec<_> = lab.pcs()[..3]
        .iter()
        .zip(machines)
        .map(|(pc, (machine, token))| {
            let interface = pc.addr().addr();
            let digests = digests.clone();
            pc.spawn(move || {
                let n = digests.len();
                let rx = Receiver::new(
                    ReceiverConfig::default(),
                    ReceiverIdentity {
                        machine,
                        token,
                        disk_size: 1 << 30,
                    },
                    BlockSet::new(n as u32),
                );
                let mut disk = Disk {
                    digests,
                    blocks: vec![None; n],
                };
                let addr = McastAddr {
                    interface,
                    group: GROUP,
                    key,
                };
                let mut membership = Membership::default();
                let done = run_receiver_reporting(
                    rx,
                    control,
                    addr,
                    &mut disk,
                    Duration::from_secs(120),
                    &mut membership,
                )
                .map_err(|e| e.to_string());
                (done, disk.blocks, membership.rejected)
            })
        })
        .collect();
    let reference = self::image();
    let mut rejected = Vec::new();
    for (i, pc) in pcs.into_iter().enumerate() {
        let (done, blocks, r) = pc.join().unwrap().unwrap();
        rejected.push(r);
        assert_eq!(done, Ok(true), "pc{i} did not complete");
        for (b, (got, want)) in blocks.iter().zip(&reference).enumerate() {
            assert_eq!(got.as_deref(), Some(&want[..]), "pc{i} block {b}");
        }
    }
    let reports = server
        .join()
        .unwrap()
        .unwrap()
        .expect("the session ends in time")
        .expect("the sender runs");
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.complete), "{reports:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (intruder.join().unwrap().unwrap(), rejected)
}

#[test]
fn a_host_recording_the_sealed_stream_finds_no_image_byte_and_tampering_is_dropped() {
    let image = image();
    // The control: the same deploy in clear shows the recording finds the image's bytes.
    let (clear, _) = deploy_with(0, None, false);
    let pieces = image_bytes_found(&image, &clear.recorded);
    assert!(
        pieces > 1000,
        "a clear stream gives the image away ({pieces} pieces found)"
    );
    let (sealed, rejected) = deploy_with(0, Some(SessionKey(rand::random())), true);
    assert!(
        sealed.recorded.len() > 2_000,
        "{} datagrams recorded",
        sealed.recorded.len()
    );
    assert_eq!(
        image_bytes_found(&image, &sealed.recorded),
        0,
        "no image byte in the sealed stream"
    );
    assert!(
        sealed.injected > 200,
        "{} forged datagrams sent",
        sealed.injected
    );
    // Every PC completed bit-identical above; each dropped and counted the forgeries.
    for (i, r) in rejected.iter().enumerate() {
        assert!(*r > 50, "pc{i} rejected only {r} datagrams");
    }
}

#[test]
fn three_pcs_get_the_image_over_real_multicast() {
    deploy(0);
}

#[test]
fn three_pcs_get_the_image_at_5_percent_loss() {
    deploy(5);
}

/// A server that accepts the PC, reads its HELLO and then says nothing (`hang`) or hangs up.
fn silent_server(hang: bool) -> Result<bool, String> {
    let lab = Lab::builder().pcs(1).build().unwrap();
    let (_, control, listener) = control_listener(&lab);
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut len = [0u8; 4];
        std::io::Read::read_exact(&mut conn, &mut len).unwrap();
        let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
        std::io::Read::read_exact(&mut conn, &mut hello).unwrap();
        if hang {
            std::thread::sleep(Duration::from_secs(3));
        }
        drop(conn);
    });
    let pc = &lab.pcs()[0];
    let interface = pc.addr().addr();
    let started = std::time::Instant::now();
    let got = pc
        .spawn(move || {
            let rx = Receiver::new(
                ReceiverConfig::default(),
                ReceiverIdentity {
                    machine: MachineId([2, 0x52, 0x43, 0, 0, 9]),
                    token: Token([9; 32]),
                    disk_size: 1 << 30,
                },
                BlockSet::new(4),
            );
            let mut disk = Disk {
                digests: vec![[0; 32]; 4],
                blocks: vec![None; 4],
            };
            let addr = McastAddr {
                interface,
                group: GROUP,
                key: None,
            };
            run_receiver(rx, control, addr, &mut disk, Duration::from_millis(600))
                .map_err(|e| e.to_string())
        })
        .join()
        .unwrap()
        .unwrap();
    let waited = started.elapsed();
    server.join().unwrap();
    if hang {
        assert!(
            waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
            "left after {waited:?}"
        );
    }
    got
}

#[test]
fn a_pc_that_gets_nothing_leaves_the_stream_after_its_stall_time() {
    let got = silent_server(true);
    assert_eq!(got, Err("no block written for 0.6 s".into()));
}

#[test]
fn a_pc_whose_server_hangs_up_says_so() {
    let got = silent_server(false);
    assert_eq!(
        got,
        Err("the deploy server closed the control connection".into())
    );
}
