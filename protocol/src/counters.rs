//! Counters a node exports (the real node as Prometheus metrics, the
//! simulator in its report). Monotonic; never reset.

use serde::{Deserialize, Serialize};

use crate::wire::Body;

/// Messages or bytes, by message kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByKind {
    pub ping: u64,
    pub ack: u64,
    pub ping_req: u64,
    pub nack: u64,
    pub gossip: u64,
    pub sync: u64,
}

impl ByKind {
    pub(crate) fn add(&mut self, body: &Body, amount: u64) {
        let slot = match body {
            Body::Ping { .. } => &mut self.ping,
            Body::Ack { .. } | Body::AckCoordinate { .. } => &mut self.ack,
            Body::PingReq { .. } => &mut self.ping_req,
            Body::Nack { .. } => &mut self.nack,
            Body::Gossip => &mut self.gossip,
            Body::Sync(_) => &mut self.sync,
        };
        *slot += amount;
    }

    /// The sum over kinds.
    pub fn total(&self) -> u64 {
        self.ping + self.ack + self.ping_req + self.nack + self.gossip + self.sync
    }

    /// `(kind, value)` pairs in a fixed order, for exporters.
    pub fn iter(&self) -> [(&'static str, u64); 6] {
        [
            ("ping", self.ping),
            ("ack", self.ack),
            ("ping_req", self.ping_req),
            ("nack", self.nack),
            ("gossip", self.gossip),
            ("sync", self.sync),
        ]
    }
}

/// Probe round-trip times in fixed buckets (upper bounds in microseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RttHistogram {
    /// Count of round trips at most `RttHistogram::BOUNDS_MICROS[i]`; the last
    /// slot counts the rest.
    pub buckets: [u64; 9],
    /// Sum of all round trips, in microseconds.
    pub sum_micros: u64,
}

impl RttHistogram {
    /// Bucket upper bounds, microseconds: 0.5 ms to 2 s.
    pub const BOUNDS_MICROS: [u64; 8] = [500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 2_000_000];

    pub(crate) fn record(&mut self, micros: u64) {
        let slot = Self::BOUNDS_MICROS.iter().position(|&bound| micros <= bound).unwrap_or(Self::BOUNDS_MICROS.len());
        self.buckets[slot] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }
}

/// Everything one protocol instance counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub messages_in: ByKind,
    pub messages_out: ByKind,
    pub bytes_in: ByKind,
    pub bytes_out: ByKind,
    /// Direct probes sent.
    pub probes: u64,
    /// Probes answered (directly or through a relay) in time.
    pub probes_acked: u64,
    /// Indirect probe requests sent (one per relay asked).
    pub indirect_probes: u64,
    /// Probes this node relayed for others.
    pub relayed_probes: u64,
    /// Nacks received from relays.
    pub nacks_received: u64,
    /// Members this node suspected after a failed probe.
    pub suspicions_raised: u64,
    /// Probes that ended with no answer from the target nor from any relay
    /// asked: inconclusive (this node is likely the one cut off), so no
    /// suspicion was raised.
    pub probes_unanswered: u64,
    /// Pings to a member held Suspect for a period or more, telling it of the
    /// suspicion so that it answers with its refutation.
    #[serde(default)]
    pub suspects_asked: u64,
    /// Suspicions (raised by anyone) that ended with the member refuting.
    pub suspicions_refuted: u64,
    /// Times this node was suspected or declared dead and refuted it.
    pub self_refutes: u64,
    /// Members this node declared Dead when their suspicion expired.
    pub declared_dead: u64,
    /// Times an expired suspicion was not turned into a Dead verdict because
    /// this node's own health was poor (it may be the one cut off).
    pub verdicts_withheld: u64,
    /// Remote Dead verdicts about members we had heard from within a few
    /// periods, taken as suspicions instead.
    pub remote_deaths_doubted: u64,
    /// Updates that changed this node's view.
    pub updates_applied: u64,
    /// Updates that were old news.
    pub updates_ignored: u64,
    /// Inbound messages dropped as undecodable (truncated, garbage, bounds).
    pub decode_failures: u64,
    /// Inbound messages from another cluster.
    pub wrong_cluster: u64,
    /// Inbound messages of another wire version.
    pub wrong_version: u64,
    /// Pings addressed to another node id, or messages claiming to be from us.
    pub misdirected: u64,
    /// Alive updates whose metadata broke a bound.
    pub invalid_metadata: u64,
    /// Catalog entries whose spec broke a bound.
    pub invalid_specs: u64,
    /// Replica statuses that broke a bound.
    pub invalid_statuses: u64,
    /// Updates claiming our id with a newer generation: another process with
    /// our identity.
    pub identity_conflicts: u64,
    /// Timers that fired more than a probe timeout late (this node stalled).
    pub late_timers: u64,
    /// Anti-entropy exchanges started (push-pull, join, reconnect).
    pub syncs_started: u64,
    /// Corrections sent to a member that accused another (or this node) at
    /// a version already refuted.
    pub corrections_sent: u64,
    /// Probes ended early because the network said nothing listens at the
    /// target's address (`Membership::handle_unreachable`).
    pub probes_unreachable: u64,
    /// Round-trip times of successful direct probes.
    pub probe_rtt: RttHistogram,
    /// Acks this node sent with its network coordinate in them.
    pub coordinates_sent: u64,
    /// Round trips that moved this node's coordinate.
    pub coordinate_samples: u64,
    /// Coordinates received that were malformed (scale or values out of
    /// range) or of another dimensionality: ignored, the ack still counted.
    pub coordinates_rejected: u64,
    /// Times this node's coordinate went invalid and restarted at the origin.
    pub coordinate_resets: u64,
}
