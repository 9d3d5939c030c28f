//! Network coordinates in the membership (ALGORITHM.md section 15): this
//! node's own, moved by the round trip of every direct probe whose ack
//! carried the target's coordinate; the last coordinate each live member
//! sent; and which acks carry ours.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::debug;

use super::Membership;
use crate::coordinate::{Coordinate, CoordinateConfig, PackedCoordinate, Vivaldi, estimate_rtt};
use crate::wire::Body;
use crate::{Instant, NodeId};

/// Members beyond the live count (doubled) whose coordinates may linger
/// before the gone ones are swept out.
const SWEEP_SLACK: usize = 16;

/// The coordinate state of one node.
#[derive(Debug)]
pub(super) struct Coordinates {
    vivaldi: Vivaldi,
    /// The last coordinate each member sent us, as it came (23 bytes at 8
    /// dimensions, where a decoded one takes about 100), unpacked on use.
    members: BTreeMap<NodeId, PackedCoordinate>,
    /// Acks sent without our coordinate since the last one with it.
    acks_since_shared: u32,
}

impl Coordinates {
    /// At the origin. The node's id seeds the directions it moves in when
    /// it coincides with another coordinate, which keeps the protocol rng's
    /// draws (and so every other random choice) as they were.
    pub(super) fn new(config: &CoordinateConfig, id: NodeId) -> Coordinates {
        Coordinates { vivaldi: Vivaldi::new(config.clone(), id.key()), members: BTreeMap::new(), acks_since_shared: 0 }
    }
}

impl Membership {
    /// This node's network coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        self.coordinates.vivaldi.coordinate()
    }

    /// The last coordinate live member `id` sent this node (in an ack to one
    /// of its probes), or this node's own for its own id. `None` for a
    /// member not live, or not heard from yet.
    pub fn member_coordinate(&self, id: NodeId) -> Option<Coordinate> {
        if id == self.id {
            return Some(self.coordinate().clone());
        }
        self.members.get(id).filter(|m| m.state.is_live())?;
        self.coordinates.members.get(&id)?.unpack()
    }

    /// The round trip this node's coordinate and `id`'s predict.
    pub fn estimate_rtt_to(&self, id: NodeId) -> Option<Duration> {
        estimate_rtt(self.coordinate(), &self.member_coordinate(id)?)
    }

    /// The ack to a direct probe: with this node's coordinate while it is
    /// young, then in one ack of `share_one_in`.
    pub(super) fn ack_body(&mut self, seq: u32) -> Body {
        let config = &self.config.coordinate;
        let young = self.coordinates.vivaldi.samples() < u64::from(config.warmup_samples);
        self.coordinates.acks_since_shared = self.coordinates.acks_since_shared.saturating_add(1);
        if young || self.coordinates.acks_since_shared >= config.share_one_in {
            if let Some(coordinate) = PackedCoordinate::pack(self.coordinate()) {
                self.coordinates.acks_since_shared = 0;
                self.counters.coordinates_sent += 1;
                return Body::AckCoordinate { seq, coordinate };
            }
        }
        Body::Ack { seq }
    }

    /// An ack that carries its sender's coordinate: the ack counts as any
    /// other; the coordinate is kept if well formed, and if the ack answers
    /// this node's own first direct ping of the sender (`direct_rtt`), the
    /// round trip moves this node's coordinate. A malformed coordinate is counted and ignored.
    pub(super) fn on_ack_with_coordinate(&mut self, now: Instant, from: NodeId, seq: u32, packed: PackedCoordinate) {
        let rtt = self.direct_rtt(now, from, seq);
        self.on_ack(now, from, seq);
        let dimensionality = self.config.coordinate.dimensionality;
        let Some(coordinate) = packed.unpack().filter(|c| c.vec.len() == dimensionality) else {
            self.counters.coordinates_rejected += 1;
            debug!(member = %from, "malformed coordinate ignored");
            return;
        };
        if !self.members.get(from).is_some_and(|m| m.state.is_live()) {
            return;
        }
        if let Some(rtt) = rtt {
            let resets = self.coordinates.vivaldi.resets();
            match self.coordinates.vivaldi.observe(from, &coordinate, rtt) {
                Ok(()) => self.counters.coordinate_samples += 1,
                Err(error) => debug!(member = %from, %error, "round trip not used"),
            }
            self.counters.coordinate_resets += self.coordinates.vivaldi.resets() - resets;
        }
        self.coordinates.members.insert(from, packed);
        self.sweep_coordinates();
    }

    /// Drops the coordinates (and latency samples) of members no longer
    /// live, once they could be a fair part of what is held.
    fn sweep_coordinates(&mut self) {
        let live = self.members.live_count();
        if self.coordinates.members.len() <= 2 * live + SWEEP_SLACK {
            return;
        }
        let gone: Vec<NodeId> = self
            .coordinates
            .members
            .keys()
            .filter(|id| !self.members.get(**id).is_some_and(|m| m.state.is_live()))
            .copied()
            .collect();
        for id in gone {
            self.coordinates.members.remove(&id);
            self.coordinates.vivaldi.forget(id);
        }
    }
}
