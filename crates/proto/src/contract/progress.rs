//! What the agent posts to `POST /agent/progress` while a restore runs: how far it is, so that the
//! technician's console shows bytes, rate and time left before the PC's report comes.

use serde::{Deserialize, Serialize};

/// How far one restore is (the figures of the PC's own screen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Bytes of the image's used bytes on the disk so far (held, written or zeroed).
    pub bytes_done: u64,
    /// The image's used bytes: the most this restore writes.
    pub bytes_total: u64,
    /// Chunks (multicast: blocks) handled so far.
    pub chunks_done: u64,
    /// Chunks (multicast: blocks) of the image.
    pub chunks_total: u64,
    /// Milliseconds since the restore began writing (the rate is `bytes_done` over it).
    pub elapsed_ms: u64,
}

impl Progress {
    /// Biggest body the server reads (a few numbers).
    pub const MAX_BODY: usize = 1024;

    /// Bytes per second so far (0 before the first millisecond).
    pub fn rate(&self) -> u64 {
        if self.elapsed_ms == 0 {
            return 0;
        }
        (u128::from(self.bytes_done) * 1000 / u128::from(self.elapsed_ms)) as u64
    }

    /// Refuses figures no restore can have (done beyond the total): the server keeps only
    /// believable progress.
    pub fn check(&self) -> Result<(), String> {
        if self.bytes_done > self.bytes_total || self.chunks_done > self.chunks_total {
            return Err(format!(
                "progress beyond the total ({} of {} bytes, {} of {} chunks)",
                self.bytes_done, self.bytes_total, self.chunks_done, self.chunks_total
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_bytes_over_time_and_impossible_figures_are_refused() {
        let p = Progress {
            bytes_done: 10 << 20,
            bytes_total: 20 << 20,
            chunks_done: 10,
            chunks_total: 20,
            elapsed_ms: 2000,
        };
        assert_eq!(p.rate(), 5 << 20);
        assert!(p.check().is_ok());
        assert_eq!(Progress::default().rate(), 0);
        let beyond = Progress {
            bytes_done: 21 << 20,
            ..p
        };
        assert!(beyond.check().unwrap_err().contains("beyond the total"));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), p);
    }
}
