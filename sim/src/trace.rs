//! The event trace: folded into a hash on every run (so two runs of one seed
//! can be compared by one number), and optionally written as JSONL.
//!
//! The hash uses only integer arithmetic on values the run computed, so it is
//! the same on every build (debug or release) and platform.

use std::io::Write;

use serde_json::json;
use shoal_protocol::wire;

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes bytes eight at a time (fast on payloads; stable everywhere).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(h ^ u64::from_le_bytes(tail))
}

/// A record kind, folded into the hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    /// A message handed to a node.
    Deliver = 1,
    /// A node's timer fired.
    Timer = 2,
    /// A fault started or healed.
    Fault = 3,
    /// A node emitted a protocol event.
    Event = 4,
    /// A node started or restarted.
    Start = 5,
}

/// The running trace: a hash, and an optional JSONL sink.
pub struct Trace {
    hash: u64,
    records: u64,
    sink: Option<Box<dyn Write>>,
    cluster_id: u64,
    /// The first write error, if any (the run goes on; the report says so).
    pub error: Option<std::io::Error>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("hash", &self.hash).field("records", &self.records).finish()
    }
}

impl Trace {
    /// A trace that only hashes, or also writes JSONL to `sink`.
    pub fn new(sink: Option<Box<dyn Write>>, cluster_id: u64) -> Trace {
        Trace { hash: 0x5348_4f41_4c53_494d, records: 0, sink, cluster_id, error: None }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        mix(self.hash ^ self.records)
    }

    /// Records folded so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether a JSONL sink is attached (callers skip building records if not).
    pub fn writing(&self) -> bool {
        self.sink.is_some()
    }

    /// Folds one record of four words.
    #[inline]
    pub fn fold(&mut self, kind: Kind, t: u64, a: u64, b: u64, c: u64) {
        self.records += 1;
        let mut h = self.hash ^ (kind as u64);
        h = mix(h ^ t);
        h = mix(h ^ a);
        h = mix(h ^ b.rotate_left(21) ^ c);
        self.hash = h;
    }

    fn write(&mut self, value: &serde_json::Value) {
        if let Some(sink) = self.sink.as_mut() {
            if let Err(error) = writeln!(sink, "{value}") {
                self.error.get_or_insert(error);
                self.sink = None;
            }
        }
    }

    /// Writes a delivered message.
    pub fn write_deliver(&mut self, t: u64, from: usize, to: usize, payload: &[u8]) {
        if self.sink.is_none() {
            return;
        }
        let body = match wire::decode(payload, self.cluster_id) {
            Ok(m) => {
                json!({"body": format!("{:?}", m.body), "updates": m.updates.len()})
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        self.write(&json!({"t": t, "kind": "deliver", "from": from, "to": to, "len": payload.len(), "msg": body}));
    }

    /// Writes a timer firing.
    pub fn write_timer(&mut self, t: u64, node: usize) {
        if self.sink.is_some() {
            self.write(&json!({"t": t, "kind": "timer", "node": node}));
        }
    }

    /// Writes a fault starting or healing.
    pub fn write_fault(&mut self, t: u64, name: &str, phase: &str, nodes: &[usize]) {
        if self.sink.is_some() {
            self.write(&json!({"t": t, "kind": "fault", "fault": name, "phase": phase, "nodes": nodes}));
        }
    }

    /// Writes a protocol event at a node.
    pub fn write_event(&mut self, t: u64, node: usize, event: &str, subject: Option<usize>) {
        if self.sink.is_some() {
            self.write(&json!({"t": t, "kind": "event", "node": node, "event": event, "subject": subject}));
        }
    }

    /// Writes a node (re)starting.
    pub fn write_start(&mut self, t: u64, node: usize, generation: u64) {
        if self.sink.is_some() {
            self.write(&json!({"t": t, "kind": "start", "node": node, "generation": generation}));
        }
    }

    /// Flushes the sink.
    pub fn flush(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            if let Err(error) = sink.flush() {
                self.error.get_or_insert(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // Pinned: a change here changes every trace hash users have recorded.
        let mut t = Trace::new(None, 0);
        t.fold(Kind::Deliver, 1, 2, 3, hash_bytes(b"shoal"));
        assert_eq!(t.hash(), 0xaa50_9adc_1cb0_8538, "{:#x}", t.hash());
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
        assert_ne!(hash_bytes(b""), hash_bytes(&[0]));
    }
}
