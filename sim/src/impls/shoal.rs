//! Shoal's own protocol: a real [`Membership`] per node.

use shoal_protocol::{Address, Config, Event, Identity, Instant, Member, Membership, Metadata, NodeId, Transmit, wire};

use super::{Boot, Implementation, MemberView, SimNode};
use crate::net;
use crate::report::ProtocolTotals;
#[cfg(feature = "bug-injection")]
use crate::scenario::BugKind;
use crate::scenario::Scenario;
use crate::sim::SimError;

/// Makes [`Membership`] nodes with one config.
#[derive(Debug)]
pub struct ShoalImpl {
    config: Config,
    #[cfg(feature = "bug-injection")]
    bug: Option<BugKind>,
}

impl ShoalImpl {
    /// The scenario's preset config (and injected bug, if any).
    pub fn new(scenario: &Scenario) -> Result<ShoalImpl, SimError> {
        ShoalImpl::with_config(scenario, scenario.preset.config())
    }

    /// A custom config (for runs tuned to a bandwidth), validated.
    pub fn with_config(scenario: &Scenario, config: Config) -> Result<ShoalImpl, SimError> {
        #[cfg(not(feature = "bug-injection"))]
        if let Some(bug) = scenario.bug {
            return Err(SimError::BugInjectionUnavailable(bug.name()));
        }
        let config = config.validate().map_err(shoal_protocol::Error::from)?;
        Ok(ShoalImpl {
            config,
            #[cfg(feature = "bug-injection")]
            bug: scenario.bug,
        })
    }
}

fn identity(index: usize, generation: u64, addr: &Address) -> Identity {
    Identity {
        id: NodeId::from_index(index as u64),
        generation,
        meta: Metadata::new(format!("n{index}"), addr.clone()),
    }
}

impl Implementation for ShoalImpl {
    fn name(&self) -> &'static str {
        "shoal"
    }

    fn boot(&self, boot: Boot<'_>) -> Result<Box<dyn SimNode>, SimError> {
        #[allow(unused_mut)]
        let mut node = Membership::new(
            self.config.clone(),
            identity(boot.index, boot.generation, boot.addr),
            boot.seed,
            boot.now,
        )?;
        #[cfg(feature = "bug-injection")]
        if let Some(bug) = self.bug {
            node.inject_bug(match bug {
                BugKind::IgnoreRefutations => shoal_protocol::Bug::IgnoreRefutations,
                BugKind::NoAntiEntropy => shoal_protocol::Bug::NoAntiEntropy,
            });
        }
        if !boot.seeds.is_empty() {
            node.join(boot.now, boot.seeds);
        }
        Ok(Box::new(node))
    }

    fn reliable(&self, payload: &[u8]) -> bool {
        net::is_sync(payload)
    }

    fn declared_by(&self, payload: &[u8], subject: NodeId) -> Option<NodeId> {
        wire::decode(payload, self.config.cluster_id).ok().and_then(|m| {
            m.updates.iter().find_map(|u| match u {
                wire::Update::Dead { id, by, .. } if *id == subject => Some(*by),
                _ => None,
            })
        })
    }

    fn timing(&self) -> &Config {
        &self.config
    }
}

fn view(member: &Member) -> MemberView {
    MemberView {
        id: member.id,
        generation: member.generation,
        incarnation: member.incarnation,
        state: member.state,
        state_since: member.state_since,
    }
}

impl SimNode for Membership {
    fn handle_message(&mut self, now: Instant, from: &Address, payload: &[u8]) {
        Membership::handle_message(self, now, from, payload);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Membership::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        Membership::poll_transmit(self)
    }

    fn poll_event(&mut self) -> Option<Event> {
        Membership::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Membership::poll_timeout(self)
    }

    fn live_members(&self) -> usize {
        Membership::live_members(self)
    }

    fn member(&self, id: NodeId) -> Option<MemberView> {
        Membership::member(self, id).map(view)
    }

    fn members(&self) -> Box<dyn Iterator<Item = MemberView> + '_> {
        Box::new(Membership::members(self).map(view))
    }

    fn totals(&self) -> ProtocolTotals {
        let c = self.counters();
        ProtocolTotals {
            suspicions_raised: c.suspicions_raised,
            declared_dead: c.declared_dead,
            self_refutes: c.self_refutes,
            syncs_started: c.syncs_started,
            decode_failures: c.decode_failures,
            late_timers: c.late_timers,
        }
    }
}
