//! tbf limits: configured on both ends of every veth, and a transfer cannot beat them.

use roomcast_lab::{Lab, Tbf};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const RATE_MBIT: u64 = 50;

fn mbit_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64() / 1e6
}

#[test]
fn tbf_is_on_both_ends_of_every_link_and_can_be_changed() {
    let lab = Lab::builder()
        .pcs(2)
        .rate(Tbf::mbit(RATE_MBIT))
        .build()
        .unwrap();
    for node in std::iter::once(lab.server()).chain(lab.pcs()) {
        let (host, inside) = lab.qdiscs(node).unwrap();
        for (end, text) in [("host", &host), ("namespace", &inside)] {
            assert!(
                text.contains("qdisc tbf") && text.contains(&format!("rate {RATE_MBIT}Mbit")),
                "{} {end} end: {text}",
                node.role()
            );
        }
    }
    let slow = lab.pc(1).unwrap();
    lab.set_rate(slow, Some(Tbf::mbit(10))).unwrap();
    assert!(lab.qdiscs(slow).unwrap().0.contains("rate 10Mbit"));
    lab.set_rate(slow, None).unwrap();
    let (host, inside) = lab.qdiscs(slow).unwrap();
    assert!(
        !host.contains("tbf") && !inside.contains("tbf"),
        "{host} / {inside}"
    );
}

#[test]
fn a_tcp_transfer_cannot_beat_the_rate() {
    let lab = Lab::builder()
        .pcs(1)
        .rate(Tbf::mbit(RATE_MBIT))
        .build()
        .unwrap();
    let server_addr = (lab.server().addr().addr(), 5001);
    let listener = lab
        .server()
        .run(|| TcpListener::bind(server_addr))
        .unwrap()
        .unwrap();
    let bytes: u64 = 4 << 20;
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut got, mut first) = (0u64, None);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            got += n as u64;
        }
        (got, first.unwrap().elapsed())
    });
    lab.pc(0)
        .unwrap()
        .run(|| {
            let mut s = TcpStream::connect(server_addr).unwrap();
            let chunk = vec![0x5au8; 64 * 1024];
            for _ in 0..bytes / chunk.len() as u64 {
                s.write_all(&chunk).unwrap();
            }
        })
        .unwrap();
    let (got, took) = reader.join().unwrap();
    assert_eq!(got, bytes);
    let rate = mbit_per_s(got, took);
    eprintln!(
        "TCP through a {RATE_MBIT} Mbit/s tbf link: {rate:.1} Mbit/s ({got} bytes in {took:?})"
    );
    // tbf is a hard ceiling (64 KiB burst): exceeding it by 20 % would mean no limit at all.
    assert!(
        rate < RATE_MBIT as f64 * 1.2,
        "{rate:.1} Mbit/s through a {RATE_MBIT} Mbit/s link"
    );
}

#[test]
fn a_udp_flood_cannot_beat_the_rate() {
    let lab = Lab::builder()
        .pcs(1)
        .rate(Tbf::mbit(RATE_MBIT))
        .build()
        .unwrap();
    let to = (lab.pc(0).unwrap().addr().addr(), 5002);
    let sock = lab
        .pc(0)
        .unwrap()
        .run(|| UdpSocket::bind(to))
        .unwrap()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (mut got, mut first, mut last) = (0u64, None, Instant::now());
        while let Ok(n) = sock.recv(&mut buf) {
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            got += n as u64;
        }
        (got, last - first.unwrap())
    });
    let sent: u64 = lab
        .server()
        .run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let d = [0u8; 1400];
            (0..3000).map(|_| s.send_to(&d, to).unwrap() as u64).sum()
        })
        .unwrap();
    let (got, took) = reader.join().unwrap();
    assert!(got > 0 && got <= sent);
    let rate = mbit_per_s(got, took);
    eprintln!(
        "UDP flood of {sent} bytes through {RATE_MBIT} Mbit/s tbf: {got} received at {rate:.1} Mbit/s"
    );
    assert!(
        rate < RATE_MBIT as f64 * 1.2,
        "{rate:.1} Mbit/s through a {RATE_MBIT} Mbit/s link"
    );
}
