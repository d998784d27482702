//! What sealing costs per datagram (issue 20, docs/DECISIONS.md D27): AES-256-GCM on datagrams of
//! the stream's size, sealed as the sender does and opened in place as the receiver does, with
//! roomcast's `StreamKey` (ring) and with RustCrypto's `aes-gcm` 0.11 (the implementation before
//! D27), interleaved rounds in one run. Prints GB/s of plaintext per implementation and the ratio.
//! With `--others`, also ring's AES-128-GCM and ChaCha20-Poly1305, and AWS-LC's AES-256-GCM
//! (`aws-lc-rs`, a dev-dependency only: its AVX-512 code), on the same datagrams (the AEADs and
//! implementations one could trade ring's AES-256-GCM for, measured rather than guessed).
//!
//! `cargo run --release -p roomcast-mcast --example bench_seal [-- --len 1400 --mib 512 --rounds 5]`

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use ring::aead::{AES_128_GCM, CHACHA20_POLY1305};
use roomcast_mcast::{SealedKind, SessionKey, StreamKey};
use std::hint::black_box;
use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: want a number, got {v}"))
        })
        .unwrap_or(default)
}

/// The sealing of roomcast before D27, as it was: RustCrypto's AES-256-GCM, detached tag.
struct RustCrypto(Aes256Gcm);

/// The framing every contender seals into, as `StreamKey` does: `counter | plain` in `out`, to be
/// encrypted in place after the counter; the counter's bytes.
fn frame(counter: u64, plain: &[u8], out: &mut Vec<u8>) -> [u8; 8] {
    let c = counter.to_be_bytes();
    out.clear();
    out.extend_from_slice(&c);
    out.extend_from_slice(plain);
    c
}

/// The 12-byte nonce of a counter (the kind's 4 bytes left at zero).
fn nonce_bytes(c: [u8; 8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&c);
    n
}

impl RustCrypto {
    fn nonce(c: [u8; 8]) -> Nonce<Aes256Gcm> {
        nonce_bytes(c).into()
    }

    fn seal(&self, counter: u64, plain: &[u8], out: &mut Vec<u8>) {
        let c = frame(counter, plain, out);
        let tag = self
            .0
            .encrypt_inout_detached(&Self::nonce(c), &c, out[8..].as_mut().into())
            .expect("short");
        out.extend_from_slice(tag.as_slice());
    }

    fn open<'a>(&self, sealed: &'a mut [u8]) -> Option<&'a [u8]> {
        let (head, rest) = sealed.split_at_mut(8);
        let (body, tag) = rest.split_at_mut(rest.len() - 16);
        let c: [u8; 8] = (&*head).try_into().ok()?;
        let tag = Tag::<Aes256Gcm>::try_from(&*tag).ok()?;
        self.0
            .decrypt_inout_detached(&Self::nonce(c), &c, (&mut *body).into(), &tag)
            .ok()?;
        Some(body)
    }
}

/// An AEAD with ring's in-place API (ring's own, or AWS-LC's through `aws-lc-rs`, which mirrors
/// it), sealed and opened the way `StreamKey` does (counter, in place, detached tag).
macro_rules! in_place_aead {
    ($name:ident, $krate:ident) => {
        struct $name($krate::aead::LessSafeKey);

        impl $name {
            fn new(alg: &'static $krate::aead::Algorithm) -> $name {
                let key = vec![0x42; alg.key_len()];
                $name($krate::aead::LessSafeKey::new(
                    $krate::aead::UnboundKey::new(alg, &key).expect("key length"),
                ))
            }

            fn nonce(c: [u8; 8]) -> $krate::aead::Nonce {
                $krate::aead::Nonce::assume_unique_for_key(nonce_bytes(c))
            }

            fn seal(&self, counter: u64, plain: &[u8], out: &mut Vec<u8>) {
                let c = frame(counter, plain, out);
                let tag = self
                    .0
                    .seal_in_place_separate_tag(
                        Self::nonce(c),
                        $krate::aead::Aad::from(&c),
                        &mut out[8..],
                    )
                    .expect("short");
                out.extend_from_slice(tag.as_ref());
            }

            fn open(&self, sealed: &mut [u8]) -> bool {
                let (head, rest) = sealed.split_at_mut(8);
                let c: [u8; 8] = (&*head).try_into().expect("8 bytes");
                self.0
                    .open_in_place(Self::nonce(c), $krate::aead::Aad::from(&c), rest)
                    .is_ok()
            }
        }
    };
}

in_place_aead!(RingOther, ring);
in_place_aead!(AwsLc, aws_lc_rs);

/// Seals the `u64`-th datagram into the buffer.
type Seal<'a> = &'a dyn Fn(u64, &[u8], &mut Vec<u8>);

/// Opens a sealed datagram in place: whether it authenticated.
type Open<'a> = &'a dyn Fn(&mut [u8]) -> bool;

/// Seconds to seal `n` datagrams, and to open them (each opened copy restored from the sealed one
/// first, as a receive buffer is refilled).
fn run(n: u64, plain: &[u8], seal: Seal<'_>, open: Open<'_>) -> (f64, f64) {
    let mut out = Vec::with_capacity(2048);
    let t = Instant::now();
    for i in 0..n {
        seal(i, black_box(plain), &mut out);
        black_box(&out);
    }
    let sealing = t.elapsed().as_secs_f64();
    let sealed = out.clone();
    let mut buf = sealed.clone();
    let t = Instant::now();
    for _ in 0..n {
        buf.copy_from_slice(&sealed);
        assert!(open(black_box(&mut buf)));
    }
    (sealing, t.elapsed().as_secs_f64())
}

fn main() {
    let len = arg("--len", 1400) as usize;
    let mib = arg("--mib", 512);
    let rounds = arg("--rounds", 5);
    let n = (mib << 20) / len as u64;
    let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let key = SessionKey([0x42; 32]);
    let ring = StreamKey::new(&key);
    let rc = RustCrypto(Aes256Gcm::new(&key.0.into()));
    let ring_seal = |i, p: &[u8], o: &mut Vec<u8>| ring.seal(SealedKind::Datagram, i, p, o);
    // The last datagram sealed has counter n-1; every open reopens it.
    let ring_open = |b: &mut [u8]| ring.open(SealedKind::Datagram, b).is_some();
    let rc_seal = |i, p: &[u8], o: &mut Vec<u8>| rc.seal(i, p, o);
    let rc_open = |b: &mut [u8]| rc.open(b).is_some();
    let others = std::env::args().any(|a| a == "--others");
    let aes128 = RingOther::new(&AES_128_GCM);
    let chacha = RingOther::new(&CHACHA20_POLY1305);
    let aes128_seal = |i, p: &[u8], o: &mut Vec<u8>| aes128.seal(i, p, o);
    let aes128_open = |b: &mut [u8]| aes128.open(b);
    let chacha_seal = |i, p: &[u8], o: &mut Vec<u8>| chacha.seal(i, p, o);
    let chacha_open = |b: &mut [u8]| chacha.open(b);
    let aws = AwsLc::new(&aws_lc_rs::aead::AES_256_GCM);
    let aws_seal = |i, p: &[u8], o: &mut Vec<u8>| aws.seal(i, p, o);
    let aws_open = |b: &mut [u8]| aws.open(b);
    let mut best_others = [(f64::MAX, f64::MAX); 3];
    println!(
        "AES-256-GCM, {len}-byte datagrams, {mib} MiB per pass, {rounds} interleaved rounds; aes: {}, pclmulqdq: {}, avx2: {}, vaes: {}",
        std::arch::is_x86_feature_detected!("aes"),
        std::arch::is_x86_feature_detected!("pclmulqdq"),
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("vaes"),
    );
    let gbps = |s: f64| (n * len as u64) as f64 / s / 1e9;
    let (mut best_ring, mut best_rc) = ((f64::MAX, f64::MAX), (f64::MAX, f64::MAX));
    for r in 1..=rounds {
        let a = run(n, &plain, &ring_seal, &ring_open);
        let b = run(n, &plain, &rc_seal, &rc_open);
        println!(
            "round {r}: ring seal {:.2} GB/s open {:.2} GB/s | aes-gcm seal {:.2} GB/s open {:.2} GB/s",
            gbps(a.0),
            gbps(a.1),
            gbps(b.0),
            gbps(b.1)
        );
        best_ring = (best_ring.0.min(a.0), best_ring.1.min(a.1));
        best_rc = (best_rc.0.min(b.0), best_rc.1.min(b.1));
        if others {
            let pairs: [(Seal<'_>, Open<'_>); 3] = [
                (&aes128_seal, &aes128_open),
                (&chacha_seal, &chacha_open),
                (&aws_seal, &aws_open),
            ];
            let mut this = [(0.0, 0.0); 3];
            for (k, (seal, open)) in pairs.into_iter().enumerate() {
                this[k] = run(n, &plain, seal, open);
                best_others[k] = (
                    best_others[k].0.min(this[k].0),
                    best_others[k].1.min(this[k].1),
                );
            }
            println!(
                "round {r}: ring aes-128-gcm seal {:.2} GB/s open {:.2} GB/s | ring chacha20-poly1305 seal {:.2} GB/s open {:.2} GB/s | aws-lc aes-256-gcm seal {:.2} GB/s open {:.2} GB/s",
                gbps(this[0].0),
                gbps(this[0].1),
                gbps(this[1].0),
                gbps(this[1].1),
                gbps(this[2].0),
                gbps(this[2].1)
            );
        }
    }
    println!(
        "best: ring seal {:.2} GB/s ({:.0} ns/datagram) open {:.2} GB/s ({:.0} ns) | aes-gcm seal {:.2} GB/s ({:.0} ns) open {:.2} GB/s ({:.0} ns) | ring faster: seal x{:.2}, open x{:.2}",
        gbps(best_ring.0),
        best_ring.0 / n as f64 * 1e9,
        gbps(best_ring.1),
        best_ring.1 / n as f64 * 1e9,
        gbps(best_rc.0),
        best_rc.0 / n as f64 * 1e9,
        gbps(best_rc.1),
        best_rc.1 / n as f64 * 1e9,
        best_rc.0 / best_ring.0,
        best_rc.1 / best_ring.1,
    );
    if others {
        let names = [
            "ring aes-128-gcm",
            "ring chacha20-poly1305",
            "aws-lc aes-256-gcm",
        ];
        for (name, (seal, open)) in names.iter().zip(best_others) {
            println!(
                "best: {name} seal {:.2} GB/s ({:.0} ns/datagram) open {:.2} GB/s ({:.0} ns)",
                gbps(seal),
                seal / n as f64 * 1e9,
                gbps(open),
                open / n as f64 * 1e9,
            );
        }
    }
}
