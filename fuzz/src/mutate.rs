//! Deterministic mutations of a corpus, for the short fuzz run in the test
//! suite: the same seed gives the same inputs on every machine, so a failure
//! names the seed and the mutation index that reproduce it.
//!
//! The operators are the cheap ones of AFL's havoc stage that matter for a
//! length-prefixed binary format: bit flips, interesting bytes (bincode's
//! varint markers 251 to 253 among them), truncations, deletions, insertions,
//! duplications and splices of two inputs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bytes that make bincode take another path: zero, the varint markers
/// (251: u16 follows, 252: u32, 253: u64, 254: u128, 255: invalid), sign and
/// boundary values.
const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 250, 251, 252, 253, 254, 255];

/// `count` mutants of `corpus` (which must not be empty), from `seed`.
pub fn mutants(corpus: &[Vec<u8>], seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(move |_| {
        let mut input = corpus[rng.random_range(0..corpus.len())].clone();
        // Stack a few operators, as havoc does: a single flip rarely gets
        // past the first length check that fails.
        for _ in 0..rng.random_range(1..=4) {
            mutate_once(&mut input, corpus, &mut rng);
        }
        input
    })
}

fn mutate_once(input: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) {
    if input.is_empty() {
        input.push(rng.random());
        return;
    }
    let at = rng.random_range(0..input.len());
    match rng.random_range(0..8) {
        0 => input[at] ^= 1 << rng.random_range(0..8),
        1 => input[at] = INTERESTING[rng.random_range(0..INTERESTING.len())],
        2 => input[at] = rng.random(),
        3 => input.truncate(at),
        4 => {
            let end = rng.random_range(at..=input.len());
            input.drain(at..end);
        }
        5 => {
            let inserted: Vec<u8> = (0..rng.random_range(1..=8)).map(|_| rng.random()).collect();
            input.splice(at..at, inserted);
        }
        6 => {
            let end = rng.random_range(at..=input.len().min(at + 64));
            let copy = input[at..end].to_vec();
            let to = rng.random_range(0..=input.len());
            input.splice(to..to, copy);
        }
        _ => {
            // Splice: our head, another input's tail.
            let other = &corpus[rng.random_range(0..corpus.len())];
            let from = rng.random_range(0..=other.len());
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
    }
}
