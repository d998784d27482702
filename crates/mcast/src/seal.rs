//! The stream's encryption (issue 20, docs/DECISIONS.md D22): every datagram of a session sealed
//! whole with AES-256-GCM under the session's key, which each agent receives with its
//! token-authenticated session info (`GET /mcast/session`); a datagram that does not open is
//! dropped and counted. Sealed datagram: `counter (8 bytes, big-endian) | ciphertext | tag (16)`.
//! The nonce is 4 zero bytes and the counter: a key belongs to one session and one sender, whose
//! counter only goes up, so no nonce is ever used twice under a key. The counter is also the
//! associated data (it is authenticated twice, cheaply). The state machines never see a sealed
//! byte: `roomcast-proto` stays free of keys and randomness; its symbol sizing leaves room for
//! [`roomcast_proto::mcast::SEAL_OVERHEAD`].

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use roomcast_proto::mcast::SEAL_OVERHEAD;

const COUNTER_LEN: usize = 8;
const TAG_LEN: usize = 16;
const _: () = assert!(SEAL_OVERHEAD == COUNTER_LEN + TAG_LEN);

/// A session's key: 32 random bytes drawn by the deploy server for one session, handed to each
/// agent with its session info. Never printed (`Debug` shows `***`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

/// A [`SessionKey`] ready to seal and open datagrams.
#[derive(Clone)]
pub struct StreamKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(***)")
    }
}

fn nonce(counter: [u8; COUNTER_LEN]) -> Nonce<Aes256Gcm> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter);
    n.into()
}

impl StreamKey {
    /// The key of a session.
    pub fn new(key: &SessionKey) -> StreamKey {
        StreamKey {
            cipher: Aes256Gcm::new(&key.0.into()),
        }
    }

    /// `datagram` sealed as the `counter`-th of the session, into `out` (cleared first).
    pub fn seal(&self, counter: u64, datagram: &[u8], out: &mut Vec<u8>) {
        let c = counter.to_be_bytes();
        out.clear();
        out.extend_from_slice(&c);
        out.extend_from_slice(datagram);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(c), &c, out[COUNTER_LEN..].as_mut().into())
            .expect("a datagram is far below AES-GCM's length limit");
        out.extend_from_slice(tag.as_slice());
    }

    /// Opens a sealed datagram in place: the plaintext, or `None` when it does not authenticate
    /// under this key (tampered, forged, of another session, or too short).
    pub fn open<'a>(&self, sealed: &'a mut [u8]) -> Option<&'a [u8]> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (head, rest) = sealed.split_at_mut(COUNTER_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let c: [u8; COUNTER_LEN] = (&*head).try_into().ok()?;
        let tag = Tag::<Aes256Gcm>::try_from(&*tag).ok()?;
        self.cipher
            .decrypt_inout_detached(&nonce(c), &c, (&mut *body).into(), &tag)
            .ok()?;
        Some(body)
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
        key.seal(41, &plain, &mut sealed);
        assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
        assert!(
            sealed.windows(plain.len()).all(|w| w != plain.as_slice()),
            "no plaintext on the wire"
        );
        let mut again = Vec::new();
        key.seal(42, &plain, &mut again);
        assert_ne!(sealed[8..], again[8..], "a new counter, a new ciphertext");
        assert_eq!(key.open(&mut sealed.clone()), Some(plain.as_slice()));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(key.open(&mut bad), None, "byte {i} flipped");
        }
        assert_eq!(
            StreamKey::new(&SessionKey([8; 32])).open(&mut sealed.clone()),
            None
        );
        for cut in 0..sealed.len() {
            assert_eq!(key.open(&mut sealed[..cut].to_vec()), None);
        }
    }
}
