//! Pacing: a token bucket near the configured rate, adapted on the loss the receivers report.
//!
//! Loss alone does not tell congestion (caused by our rate) from a bad cable (that no rate fixes).
//! So the controller probes: when loss rises above the loss it has learned to tolerate, it slows
//! down; if the next interval shows the loss did not fall, the loss is not ours: it restores the rate
//! and tolerates that loss from then on. One lossy PC never slows the room: the sender feeds the
//! controller the median loss over receivers, not the worst.

use super::time::Timestamp;
use std::time::Duration;

/// Every pacing number, with its unit.
#[derive(Debug, Clone, PartialEq)]
pub struct RateConfig {
    /// Highest rate, bits per second on the wire (IP and UDP headers included). Set it near the
    /// room's link rate, e.g. 950 Mbit/s on gigabit.
    pub max_bps: u64,
    /// Lowest rate the controller may fall to, bits per second.
    pub min_bps: u64,
    /// Bucket depth in bytes: how much may leave back to back after an idle moment.
    pub burst_bytes: u32,
    /// How often the loss is looked at.
    pub adapt_interval: Duration,
    /// Loss above the tolerated loss that counts as congestion (fraction, 0.02 = 2 points).
    pub congestion_margin: f64,
    /// Factor applied to the rate on congestion.
    pub decrease: f64,
    /// Step added to the rate per calm interval, as a fraction of `max_bps`.
    pub increase: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            max_bps: 950_000_000,
            min_bps: 10_000_000,
            burst_bytes: 64 * 1024,
            adapt_interval: Duration::from_millis(500),
            congestion_margin: 0.02,
            decrease: 0.85,
            increase: 0.02,
        }
    }
}

impl RateConfig {
    /// Pacing for a sender whose own link carries `link_bps` (bits per second of Ethernet frames,
    /// 14-byte header included, as a switch port or Linux `tbf` counts them): 5 % above the rate
    /// that fills the link with full-size datagrams, and a bucket of 10 ms. The sender's link
    /// queue then does the fine pacing through the socket's backpressure, and the bucket lets
    /// the sender catch up after the scheduler kept it off the CPU (at the link rate exactly and
    /// with a 64 KiB bucket, every wake-up later than 2.6 ms at 200 Mbit/s was link time lost for
    /// good: 0.90-0.96 of the payload limit on a loaded machine, 0.99 with this).
    pub fn for_link(link_bps: u64) -> Self {
        let ip = (super::DEFAULT_SYMBOL_SIZE as usize
            + super::wire::DATA_HEADER_LEN
            + super::SEAL_OVERHEAD
            + super::IP_UDP_OVERHEAD) as u64;
        let filling = link_bps * ip / (ip + ETHERNET_HEADER);
        let max_bps = filling + filling / 20;
        RateConfig {
            max_bps,
            min_bps: max_bps / 10,
            burst_bytes: Self::burst_for(max_bps),
            ..RateConfig::default()
        }
    }

    /// A bucket of 10 ms at `max_bps` (at least 64 KiB, at most 4 MiB): what the sender may send
    /// back to back after the scheduler kept it away that long.
    pub fn burst_for(max_bps: u64) -> u32 {
        (max_bps / 8 / 100).clamp(64 << 10, 4 << 20) as u32
    }
}

/// Ethernet header bytes a link counts per frame on top of the IP packet (preamble, FCS and gap
/// are below what `tbf` or a port's byte counter sees).
pub const ETHERNET_HEADER: u64 = 14;

/// Token bucket plus loss-driven adaptation.
#[derive(Debug, Clone)]
pub struct RateController {
    cfg: RateConfig,
    rate: f64,
    tokens: f64,
    last: Timestamp,
    tolerated: f64,
    probe: Option<Probe>,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    rate_before: f64,
    loss_before: f64,
}

impl RateController {
    /// Starts at the highest rate with a full bucket.
    pub fn new(cfg: RateConfig, now: Timestamp) -> Self {
        RateController {
            rate: cfg.max_bps as f64,
            tokens: f64::from(cfg.burst_bytes),
            last: now,
            tolerated: 0.0,
            probe: None,
            cfg,
        }
    }

    /// Current rate, bits per second.
    pub fn rate_bps(&self) -> u64 {
        self.rate as u64
    }

    /// Loss currently accepted as not caused by our rate.
    pub fn tolerated_loss(&self) -> f64 {
        self.tolerated
    }

    fn refill(&mut self, now: Timestamp) {
        let dt = now.saturating_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate / 8.0).min(f64::from(self.cfg.burst_bytes));
    }

    /// Takes `bytes` from the bucket if they are there.
    pub fn try_consume(&mut self, bytes: usize, now: Timestamp) -> bool {
        self.refill(now);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// Earliest time at which `bytes` will be in the bucket.
    pub fn ready_at(&self, bytes: usize) -> Timestamp {
        let missing = (bytes as f64 - self.tokens).max(0.0);
        let micros = (missing * 8.0 / self.rate * 1e6).ceil() as u64;
        Timestamp::from_micros(self.last.as_micros() + micros)
    }

    /// Feeds the loss of the last interval (fraction of packets the median receiver lost).
    pub fn observe_loss(&mut self, loss: f64) {
        let loss = loss.clamp(0.0, 1.0);
        let margin = self.cfg.congestion_margin;
        if loss <= self.tolerated + margin {
            // Calm: follow slow drifts of the background loss, and climb back towards the maximum.
            self.tolerated += 0.2 * (loss - self.tolerated);
            self.probe = None;
            self.rate = (self.rate + self.cfg.increase * self.cfg.max_bps as f64)
                .min(self.cfg.max_bps as f64);
            return;
        }
        match self.probe.take() {
            Some(p) if loss > p.loss_before - margin / 2.0 => {
                // Slowing down did not help: this loss is the links', not ours.
                self.tolerated = loss;
                self.rate = p.rate_before;
            }
            other => {
                let rate_before = other.map_or(self.rate, |p| p.rate_before);
                self.probe = Some(Probe {
                    rate_before,
                    loss_before: loss,
                });
                self.rate = (self.rate * self.cfg.decrease).max(self.cfg.min_bps as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> RateController {
        RateController::new(
            RateConfig {
                max_bps: 1_000_000_000,
                ..RateConfig::default()
            },
            Timestamp::ZERO,
        )
    }

    #[test]
    fn random_link_loss_does_not_slow_the_room() {
        let mut c = controller();
        let mut sum = 0.0;
        for i in 0..200 {
            // 20 % loss whatever the rate, with a little noise.
            c.observe_loss(0.20 + if i % 2 == 0 { 0.005 } else { -0.005 });
            sum += c.rate_bps() as f64;
        }
        assert!(sum / 200.0 > 0.95e9, "mean rate {}", sum / 200.0);
    }

    #[test]
    fn congestion_brings_the_rate_near_the_bottleneck() {
        let mut c = controller();
        let capacity = 600e6;
        let mut sum = 0.0;
        let mut lossy = 0.0;
        for i in 0..400 {
            let rate = c.rate_bps() as f64;
            let loss = (1.0 - capacity / rate).max(0.0);
            c.observe_loss(loss);
            if i >= 200 {
                sum += rate.min(capacity);
                lossy += loss;
            }
        }
        let goodput = sum / 200.0;
        assert!(goodput > 0.85 * capacity, "goodput {goodput}");
        assert!(lossy / 200.0 < 0.03, "mean loss {}", lossy / 200.0);
    }

    #[test]
    fn for_link_paces_just_above_what_fills_the_link() {
        let c = RateConfig::for_link(200_000_000);
        // 1488-byte sealed datagrams in 1502-byte frames fill 200 Mbit/s at 198.1 Mbit/s of IP.
        let filling = 200_000_000u64 * 1488 / 1502;
        assert_eq!(c.max_bps, filling + filling / 20);
        // 10 ms at 208 Mbit/s.
        assert_eq!(c.burst_bytes, (c.max_bps / 800) as u32);
        assert_eq!(RateConfig::burst_for(1_000_000), 64 << 10);
    }

    #[test]
    fn bucket_paces_at_the_rate() {
        let mut c = RateController::new(
            RateConfig {
                max_bps: 8_000_000,
                burst_bytes: 1000,
                ..RateConfig::default()
            },
            Timestamp::ZERO,
        );
        assert!(c.try_consume(1000, Timestamp::ZERO));
        assert!(!c.try_consume(1000, Timestamp::ZERO));
        // 1 MB/s: 1000 bytes take 1 ms.
        assert_eq!(c.ready_at(1000), Timestamp::from_micros(1000));
        assert!(c.try_consume(1000, Timestamp::from_micros(1000)));
    }
}
