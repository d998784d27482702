//! Arbitrary bytes never panic a decoder, nor the state machines that consume decoded input.

use proptest::prelude::*;
use roomcast_proto::mcast::{
    BlockSet, ConnId, DataPacket, Down, MachineId, Receiver, ReceiverConfig, ReceiverIdentity,
    Sender, SenderConfig, SessionId, Timestamp, Token, Up,
};

const SESSION: SessionId = SessionId(0xabcd);

fn joined_receiver(blocks: u32) -> Receiver {
    let mut rx = Receiver::new(
        ReceiverConfig {
            max_open_blocks: 4,
            max_block_len: 1 << 20,
            ..ReceiverConfig::default()
        },
        ReceiverIdentity {
            machine: MachineId([2, 0, 0, 0, 0, 1]),
            token: Token([1; 32]),
            disk_size: 1 << 30,
        },
        BlockSet::new(blocks),
    );
    rx.handle_control(
        Down::Welcome {
            session: SESSION,
            block_count: blocks,
            symbol_size: 64,
            status_interval_ms: 50,
        },
        Timestamp::ZERO,
    );
    rx
}

proptest! {
    #[test]
    fn decoders_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = DataPacket::decode(&bytes);
        let _ = Up::decode(&bytes);
        let _ = Down::decode(&bytes);
    }

    /// Bytes behind a valid header reach the field checks of every kind.
    #[test]
    fn decoders_take_any_body(kind in 0u8..10, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = b"RCMC\x01".to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&SESSION.0.to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = DataPacket::decode(&bytes);
        let _ = Up::decode(&bytes);
        let _ = Down::decode(&bytes);
        let mut rx = joined_receiver(8);
        rx.handle_datagram(&bytes, Timestamp::ZERO);
    }

    /// Well-formed data packets with hostile fields (any block, length, symbol id, symbol length).
    #[test]
    fn receiver_takes_hostile_data_packets(
        packets in proptest::collection::vec(
            (any::<u64>(), 0u32..12, 1u32..100_000, 0u32..(1 << 24), 0usize..130, any::<u8>()),
            1..40,
        )
    ) {
        let mut rx = joined_receiver(8);
        for (seq, block, block_len, symbol_id, len, fill) in packets {
            let symbol = vec![fill; len];
            let mut bytes = Vec::new();
            DataPacket { session: SESSION, seq, block, block_len, symbol_id, symbol: &symbol }
                .encode_into(&mut bytes);
            rx.handle_datagram(&bytes, Timestamp::ZERO);
        }
        prop_assert!(rx.open_blocks() <= 4);
        while rx.poll_event().is_some() {}
        let _ = rx.poll_control(Timestamp::from_micros(1_000_000));
    }

    /// Any control message a peer could send, decoded or not, leaves the sender standing.
    #[test]
    fn sender_takes_any_control_bytes(
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)
    ) {
        let machine = MachineId([2, 0, 0, 0, 0, 1]);
        let mut s = Sender::new(
            SenderConfig::default(),
            SESSION,
            &[1000, 5000, 1],
            [(machine, Token([1; 32]))],
            Timestamp::ZERO,
        ).expect("valid");
        s.handle_control(ConnId(1), Up::Hello {
            machine, token: Token([1; 32]), disk_size: 0, have: BlockSet::new(3), mtu: 0,
        }, Timestamp::ZERO);
        for (i, m) in msgs.iter().enumerate() {
            let mut bytes = Up::Status(Default::default()).encode(SESSION);
            bytes.truncate(16);
            bytes[5] = 3;
            bytes.extend_from_slice(m);
            let now = Timestamp::from_micros(i as u64 * 1000);
            for b in [&bytes[..], &m[..]] {
                if let Ok((_, up)) = Up::decode(b) {
                    s.handle_control(ConnId(1), up, now);
                }
            }
            while let Some(ev) = s.poll_event() {
                if let roomcast_proto::mcast::SenderEvent::NeedBlock(b) = ev {
                    let len = [1000usize, 5000, 1][b as usize];
                    s.supply_block(b, &vec![0; len]).expect("right length");
                }
            }
            while s.poll_transmit(now).is_some() {}
        }
    }
}
