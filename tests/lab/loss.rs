//! nftables loss inside a PC: the rule is there, drops about the asked share of the port range,
//! leaves other ports alone, and its counters agree with what the application received.

use roomcast_lab::Lab;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A receive buffer large enough that a descheduled reader never loses datagrams, so every
/// missing datagram is the rule's doing (SO_RCVBUFFORCE: root may exceed rmem_max).
fn big_buffer(s: &UdpSocket) {
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt reads `size` for the call's duration; the descriptor is open.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

fn drain(s: &UdpSocket) -> u64 {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0;
    while s.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn loss_rule_drops_its_share_of_the_port_range_only() {
    let lab = Lab::builder().pcs(1).build().unwrap();
    let pc = lab.pc(0).unwrap();
    lab.set_loss(pc, 20, 9000..=9100).unwrap();
    let ruleset = super::output(
        pc.command("nft")
            .args(["list", "table", "inet", "roomcast_lab"]),
    );
    let ruleset = String::from_utf8_lossy(&ruleset.stdout);
    assert!(
        ruleset.contains(
            "udp dport 9000-9100 numgen random mod 100 < 20 counter name \"dropped\" drop"
        ),
        "{ruleset}"
    );
    let addr = pc.addr().addr();
    let (lossy, clean) = pc
        .run(|| {
            let a = UdpSocket::bind((addr, 9000)).unwrap();
            let b = UdpSocket::bind((addr, 9200)).unwrap();
            big_buffer(&a);
            big_buffer(&b);
            (a, b)
        })
        .unwrap();
    const SENT: u64 = 2000;
    lab.server()
        .run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for i in 0..SENT {
                s.send_to(&i.to_be_bytes(), (addr, 9000)).unwrap();
                if i % 4 == 0 {
                    s.send_to(&i.to_be_bytes(), (addr, 9200)).unwrap();
                }
            }
        })
        .unwrap();
    let (got_lossy, got_clean) = (drain(&lossy), drain(&clean));
    let c = lab.loss_counters(pc).unwrap();
    eprintln!(
        "20 % rule: {c:?}, received {got_lossy} of {SENT} (and {got_clean} of {} outside the range)",
        SENT / 4
    );
    assert_eq!(
        c.seen, SENT,
        "the rule saw every datagram of its range, and only those"
    );
    assert_eq!(
        got_lossy,
        c.seen - c.dropped,
        "what was not dropped arrived"
    );
    assert_eq!(got_clean, SENT / 4, "ports outside the range lose nothing");
    // Binomial(2000, 0.2): mean 400, sd 18; 200..600 is more than 11 sd either side.
    assert!((200..600).contains(&c.dropped), "dropped {}", c.dropped);

    lab.clear_loss(pc).unwrap();
    let gone = super::output(pc.command("nft").args(["list", "ruleset"]));
    assert!(!String::from_utf8_lossy(&gone.stdout).contains("roomcast_lab"));
}

#[test]
fn loss_rules_are_refused_when_meaningless() {
    let lab = Lab::builder().pcs(1).build().unwrap();
    let pc = lab.pc(0).unwrap();
    assert!(lab.set_loss(pc, 101, 9000..=9100).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let empty = 9100..=9000;
    assert!(lab.set_loss(pc, 5, empty).is_err());
}
