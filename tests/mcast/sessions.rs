//! Session isolation and admission, driven by hand (no simulation needed).

use roomcast_proto::mcast::{
    BlockSet, ConnId, Down, MachineId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverIdentity,
    Sender, SenderConfig, SenderEvent, SessionId, Timestamp, Token, Up,
};

const PC: MachineId = MachineId([2, 0, 0, 0, 0, 9]);

fn sender(session: u64, data: &[u8]) -> Sender {
    sender_of_blocks(session, &[data.len() as u32])
}

/// A sender of blocks of `lens` bytes whose one PC has joined and listens.
fn sender_of_blocks(session: u64, lens: &[u32]) -> Sender {
    let mut s = Sender::new(
        SenderConfig {
            disk_size: 1000,
            ..SenderConfig::default()
        },
        SessionId(session),
        lens,
        [(PC, Token([3; 32]))],
        Timestamp::ZERO,
    )
    .expect("valid");
    let hello = Up::Hello {
        machine: PC,
        token: Token([3; 32]),
        disk_size: 1000,
        have: BlockSet::new(lens.len() as u32),
        mtu: 0,
    };
    s.handle_control(ConnId(1), hello, Timestamp::ZERO);
    // Its first STATUS says it listens: the sender may start.
    s.handle_control(ConnId(1), Up::Status(Default::default()), Timestamp::ZERO);
    s
}

/// The datagrams of the sender's first pass, feeding it the block when it asks.
fn drain(s: &mut Sender, data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut t = 0;
    while out.len() < 20 && t < 1_000_000 {
        let now = Timestamp::from_micros(t);
        while let Some(p) = s.poll_transmit(now) {
            out.push(p);
        }
        while let Some(ev) = s.poll_event() {
            if let SenderEvent::NeedBlock(0) = ev {
                s.supply_block(0, data).expect("right length");
            }
        }
        t += 1000;
    }
    out
}

#[test]
fn packets_of_another_session_are_ignored() {
    let a: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
    let b: Vec<u8> = (0..9000u32).map(|i| (i * 3 + 1) as u8).collect();
    let mut sa = sender(0xa, &a);
    let mut sb = sender(0xb, &b);
    let mut rx = Receiver::new(
        ReceiverConfig::default(),
        ReceiverIdentity {
            machine: PC,
            token: Token([3; 32]),
            disk_size: 1000,
        },
        BlockSet::new(1),
    );
    let (_, welcome) = sa.poll_control().expect("welcome");
    assert!(matches!(
        welcome,
        Down::Welcome {
            session: SessionId(0xa),
            ..
        }
    ));
    rx.handle_control(welcome, Timestamp::ZERO);
    // The other session's packets come first, then ours: only ours count.
    for p in drain(&mut sb, &b).iter().chain(drain(&mut sa, &a).iter()) {
        rx.handle_datagram(p, Timestamp::ZERO);
    }
    assert!(rx.stats().other_session > 0);
    let mut got = None;
    while let Some(ev) = rx.poll_event() {
        if let ReceiverEvent::BlockComplete { index: 0, data } = ev {
            got = Some(data);
        }
    }
    assert_eq!(got.as_deref(), Some(&a[..]));
}

#[test]
fn bad_token_unknown_machine_and_small_disk_are_refused() {
    let mut s = Sender::new(
        SenderConfig {
            disk_size: 1 << 30,
            ..SenderConfig::default()
        },
        SessionId(1),
        &[10],
        [(PC, Token([3; 32]))],
        Timestamp::ZERO,
    )
    .expect("valid");
    let cases = [
        (PC, Token([4; 32]), 1 << 30),
        (MachineId([2, 0, 0, 0, 0, 7]), Token([3; 32]), 1 << 30),
        (PC, Token([3; 32]), 1 << 20),
    ];
    for (i, (machine, token, disk_size)) in cases.into_iter().enumerate() {
        let conn = ConnId(i as u64);
        let hello = Up::Hello {
            machine,
            token,
            disk_size,
            have: BlockSet::new(1),
            mtu: 0,
        };
        s.handle_control(conn, hello, Timestamp::ZERO);
        let (c, msg) = s.poll_control().expect("an answer");
        assert_eq!(c, conn);
        assert!(matches!(msg, Down::Reject { .. }), "case {i}: {msg:?}");
    }
    assert!(s.poll_transmit(Timestamp::from_micros(1_000_000)).is_none());
}

#[test]
fn raptorq_encoding_is_handed_out_once_receivers_report_loss() {
    let a: Vec<u8> = (0..9000u32).map(|i| (i * 5) as u8).collect();
    let mut s = sender_of_blocks(7, &[a.len() as u32; 3]);
    s.supply_block(0, &a).expect("right length");
    assert!(
        s.poll_prepare().is_none(),
        "a room that reported no loss needs no repair symbols: nothing to encode"
    );
    // Two STATUS a moment apart: 50 of the last 100 packets lost.
    let status = |highest_seq, received| {
        Up::Status(roomcast_proto::mcast::wire::Status {
            highest_seq,
            received,
            ..Default::default()
        })
    };
    s.handle_control(ConnId(1), status(100, 100), Timestamp::ZERO);
    s.handle_control(ConnId(1), status(200, 150), Timestamp::ZERO);
    s.handle_timeout(Timestamp::from_micros(2_000_000));
    // Block 0, read before the loss was known, is handed out now; block 1 as it is supplied.
    s.supply_block(1, &a).expect("right length");
    let mut handed = Vec::new();
    while let Some(p) = s.poll_prepare() {
        assert!(!p.is_done());
        handed.push(
            std::thread::spawn(move || {
                p.run();
                p
            })
            .join()
            .expect("encoding ran on another thread"),
        );
    }
    assert_eq!(handed.len(), 2, "blocks 0 and 1, each once");
    assert!(handed.iter().all(|p| p.is_done()));
    s.supply_block(1, &a).expect("supplied again");
    assert!(
        s.poll_prepare().is_none(),
        "an encoded block is not handed out again"
    );
}
