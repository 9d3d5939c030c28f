//! Safety: no datagram exceeds the MTU. Anti-entropy messages ride a stream
//! in the real node and are exempt; the network drops any other oversized
//! message and counts it.

use super::{Check, Outcome};
use crate::Verdict;
use crate::world::World;

/// See the module doc.
#[derive(Debug)]
pub struct Mtu;

impl Check for Mtu {
    fn name(&self) -> &'static str {
        "mtu"
    }

    fn finish(&mut self, world: &World) -> Outcome {
        let over = world.mtu_violations;
        Outcome {
            name: self.name(),
            verdict: if over == 0 { Verdict::Pass } else { Verdict::Fail },
            detail: if over == 0 {
                format!("every datagram fit {} bytes", world.mtu)
            } else {
                format!("{over} datagrams exceeded {} bytes (largest {})", world.mtu, world.largest_datagram)
            },
            summaries: Vec::new(),
            counts: vec![("oversized", over), ("largest_datagram", world.largest_datagram as u64)],
            samples: Vec::new(),
        }
    }
}
