//! Every random stream of the simulation derives from the one `--seed`.
//!
//! Each server draws from its own stream, and fleet-level decisions (spontaneous cascades,
//! operator scenario picks) from streams of their own, so the same seed gives the same records
//! in export and live mode, and an operator's scenario switch never shifts another stream.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// Which stream a generator is for; part of the derivation so streams never coincide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Fleet layout: problem children and incident-prone servers.
    Fleet = 1,
    /// A server's static traits (its levels around the profile baseline).
    Traits = 2,
    /// A server's step-by-step noise, state transitions and incidents.
    Server = 3,
    /// Spontaneous cascades.
    Cascade = 4,
    /// The servers an operator's scenario switch picks.
    Scenario = 5,
    /// A server's behaviours (leaks, disk fill, runaway CPU, ...): its traits and events.
    Behaviour = 6,
}

/// SplitMix64: a fast, well-mixed bijection, used to spread (seed, stream, index) apart.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64-bit seed of one stream.
pub fn derive(seed: u64, stream: Stream, index: u64) -> u64 {
    splitmix64(seed ^ splitmix64((stream as u64) ^ splitmix64(index)))
}

/// A generator for one stream.
pub fn rng(seed: u64, stream: Stream, index: u64) -> StdRng {
    StdRng::seed_from_u64(derive(seed, stream, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        assert_eq!(derive(7, Stream::Server, 3), derive(7, Stream::Server, 3));
        assert_ne!(derive(7, Stream::Server, 3), derive(7, Stream::Server, 4));
        assert_ne!(derive(7, Stream::Server, 3), derive(7, Stream::Traits, 3));
        assert_ne!(derive(7, Stream::Server, 3), derive(8, Stream::Server, 3));
        assert_ne!(derive(7, Stream::Server, 3), derive(7, Stream::Behaviour, 3));
    }
}
