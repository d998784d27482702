//! The tokio drivers on real sockets, in the network-namespace lab: one deploy server, 3 PCs on
//! 200 Mbit/s links, with and without 5 % loss on the multicast port. Every PC ends with the image,
//! block for block. Needs root (CI runs as root); the lab removes what it creates.

use roomcast_lab::{Lab, Tbf};
use roomcast_mcast::{BlockSink, BlockSource, McastAddr, run_receiver, run_sender};
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

fn deploy(loss_percent: u8) {
    let lab = Lab::builder().pcs(3).rate(Tbf::mbit(200)).build().unwrap();
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
            };
            let mut source = Image(image);
            tokio::time::timeout(
                Duration::from_secs(120),
                run_sender(sender, listener, addr, &mut source),
            )
            .await
        })
    });
    let pcs: Vec<_> = lab
        .pcs()
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
                };
                let done = run_receiver(rx, control, addr, &mut disk, Duration::from_secs(120))
                    .map_err(|e| e.to_string());
                (done, disk.blocks)
            })
        })
        .collect();
    let reference = self::image();
    for (i, pc) in pcs.into_iter().enumerate() {
        let (done, blocks) = pc.join().unwrap().unwrap();
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
