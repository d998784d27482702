//! The session's encryption (issue 20, docs/DECISIONS.md D22, D27): every datagram of a session's
//! stream, and every chunk body its PCs fetch to catch up over HTTP, sealed whole with AES-256-GCM
//! under the session's key, which each agent receives with its token-authenticated session info
//! (`GET /mcast/session`). A datagram that does not open is dropped and counted; a chunk body that
//! does not open is refused, counted and never written.
//!
//! Sealed message: `counter (8 bytes, big-endian) | ciphertext | tag (16)`. The nonce is the
//! message's [`Kind`] (4 bytes) and the counter: a key belongs to one session; its stream has one
//! sender whose datagram counter only goes up, and its catch-up bodies are numbered by one counter
//! of the deploy server that only goes up, so no nonce is ever used twice under a key. The nonce is
//! also the associated data (a datagram cannot pass for a chunk body). The state machines never see
//! a sealed byte: `roomcast-proto` stays free of keys and randomness; its symbol sizing leaves room
//! for [`roomcast_proto::mcast::SEAL_OVERHEAD`].
//!
//! AES-256-GCM is ring's (assembly with AES-NI/VAES and PCLMULQDQ, chosen at run time), sealing and
//! opening in place: a datagram costs no allocation (D27 has the figures against RustCrypto's).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use roomcast_proto::mcast::SEAL_OVERHEAD;

const COUNTER_LEN: usize = 8;
const TAG_LEN: usize = 16;
const _: () = assert!(SEAL_OVERHEAD == COUNTER_LEN + TAG_LEN);

/// Bytes a sealed message has more than its plaintext.
pub const OVERHEAD: usize = SEAL_OVERHEAD;

/// A session's key: 32 random bytes drawn by the deploy server for one session, handed to each
/// agent with its session info. Never printed (`Debug` shows `***`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

/// What a sealed message carries: its nonces never meet those of the other kind under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A datagram of the multicast stream, numbered by the sender.
    Datagram = 0,
    /// A chunk body served over HTTP to catch up, numbered by the deploy server.
    ChunkBody = 1,
}

/// A [`SessionKey`] ready to seal and open.
#[derive(Clone)]
pub struct StreamKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(***)")
    }
}

fn nonce(kind: Kind, counter: [u8; COUNTER_LEN]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..4].copy_from_slice(&(kind as u32).to_be_bytes());
    n[4..].copy_from_slice(&counter);
    n
}

impl StreamKey {
    /// The key of a session.
    pub fn new(key: &SessionKey) -> StreamKey {
        StreamKey {
            key: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &key.0).expect("32 bytes is an AES-256 key"),
            ),
        }
    }

    /// `plain` sealed as the `counter`-th message of its `kind` under this key, into `out`
    /// (cleared first; it grows only when its capacity is short).
    pub fn seal(&self, kind: Kind, counter: u64, plain: &[u8], out: &mut Vec<u8>) {
        let c = counter.to_be_bytes();
        let n = nonce(kind, c);
        out.clear();
        out.reserve(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&c);
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(n),
                Aad::from(&n),
                &mut out[COUNTER_LEN..],
            )
            .expect("a message is far below AES-GCM's length limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens a sealed message of `kind` in place: the plaintext, or `None` when it does not
    /// authenticate under this key as that kind (tampered, forged, of another session, or too
    /// short).
    pub fn open<'a>(&self, kind: Kind, sealed: &'a mut [u8]) -> Option<&'a mut [u8]> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (head, rest) = sealed.split_at_mut(COUNTER_LEN);
        let c: [u8; COUNTER_LEN] = (&*head).try_into().ok()?;
        let n = nonce(kind, c);
        self.key
            .open_in_place(Nonce::assume_unique_for_key(n), Aad::from(&n), rest)
            .ok()
    }

    /// Opens a sealed message of `kind` held in `buf`, leaving its plaintext there (moved to the
    /// front, no new allocation); false, and `buf` unspecified, when it does not authenticate.
    pub fn open_vec(&self, kind: Kind, buf: &mut Vec<u8>) -> bool {
        let Some(len) = self.open(kind, buf).map(|p| p.len()) else {
            return false;
        };
        buf.copy_within(COUNTER_LEN..COUNTER_LEN + len, 0);
        buf.truncate(len);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_datagram_opens_only_whole_and_under_its_key() {
        let key = StreamKey::new(&SessionKey([7; 32]));
        let plain = b"data packet: header and one symbol".to_vec();
        let mut sealed = Vec::new();
        key.seal(Kind::Datagram, 41, &plain, &mut sealed);
        assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
        assert!(
            sealed.windows(plain.len()).all(|w| w != plain.as_slice()),
            "no plaintext on the wire"
        );
        let mut again = Vec::new();
        key.seal(Kind::Datagram, 42, &plain, &mut again);
        assert_ne!(sealed[8..], again[8..], "a new counter, a new ciphertext");
        assert_eq!(
            key.open(Kind::Datagram, &mut sealed.clone()).as_deref(),
            Some(plain.as_slice())
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(key.open(Kind::Datagram, &mut bad), None, "byte {i} flipped");
        }
        assert_eq!(
            StreamKey::new(&SessionKey([8; 32]))
                .open(Kind::Datagram, &mut sealed.clone())
                .as_deref(),
            None,
            "another key"
        );
        for cut in 0..sealed.len() {
            assert_eq!(key.open(Kind::Datagram, &mut sealed[..cut].to_vec()), None);
        }
    }

    #[test]
    fn a_sealed_body_opens_in_its_buffer_only_as_a_body_and_at_its_own_counter() {
        let key = StreamKey::new(&SessionKey([9; 32]));
        let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut sealed = Vec::new();
        key.seal(Kind::ChunkBody, 3, &body, &mut sealed);
        let mut opened = sealed.clone();
        assert!(key.open_vec(Kind::ChunkBody, &mut opened));
        assert_eq!(opened, body);
        // The same counter as a datagram: another nonce, so it does not open.
        assert!(!key.open_vec(Kind::Datagram, &mut sealed.clone()));
        // Another nonce (the counter in clear rewritten): refused.
        let mut moved = sealed.clone();
        moved[7] ^= 0x01;
        assert!(!key.open_vec(Kind::ChunkBody, &mut moved));
        // Another key: refused.
        assert!(
            !StreamKey::new(&SessionKey([10; 32])).open_vec(Kind::ChunkBody, &mut sealed.clone())
        );
        // One flipped bit of the ciphertext or tag: refused.
        for i in [8, 5000, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert!(!key.open_vec(Kind::ChunkBody, &mut bad), "byte {i}");
        }
    }
}
