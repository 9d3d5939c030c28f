//! foca (a sans-IO SWIM in Rust) in the simulator, for the comparison in
//! BENCHMARKS.md: the same network, faults, seeds and checks as Shoal.
//!
//! Each node is a `Foca` with the postcard codec (what foca ships) and an
//! identity `(index, generation, bump)`: the address is the index, a restart
//! is a new generation, and `bump` lets a node declared Down rejoin at once
//! (foca's `Identity::renew`, as its docs recommend). foca schedules timers
//! as "after a duration"; the adapter keeps them as absolute local deadlines
//! and fires them in order from `handle_timeout`. Notifications become
//! Shoal's events (`MemberUp`, `MemberDown`), so the checks read both alike.
//!
//! foca's `announce` is one datagram; a lost one leaves the node alone, and
//! a later joiner that picks it as seed forms an island with it (seen at 5%
//! loss: three disjoint clusters). Like Shoal (which retries a seed whenever
//! no live member has its address, every `reconnect_interval`), the adapter
//! re-announces to every seed that is not an active member: once per probe
//! period while it knows no one, else once per Shoal `reconnect_interval`.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use foca::{Foca, NoCustomBroadcast, Notification, PostcardCodec, Runtime, Timer};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shoal_protocol::{Address, Config, Event, Instant, NodeId, State, Transmit};

use super::{Boot, Implementation, MemberView, SimNode};
use crate::error::SimError;
use crate::report::ProtocolTotals;
use crate::scenario::{Preset, Scenario};

/// A foca identity: simulator index, process generation, renewal count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FocaId {
    index: u32,
    generation: u64,
    bump: u16,
}

impl foca::Identity for FocaId {
    type Addr = u32;

    fn renew(&self) -> Option<FocaId> {
        Some(FocaId { bump: self.bump.wrapping_add(1), ..*self })
    }

    fn addr(&self) -> u32 {
        self.index
    }

    fn win_addr_conflict(&self, adversary: &FocaId) -> bool {
        (self.generation, self.bump) > (adversary.generation, adversary.bump)
    }
}

impl FocaId {
    fn node_id(self) -> NodeId {
        NodeId::from_index(u64::from(self.index))
    }
}

/// The simulation's ChaCha8 stream behind rand 0.10's traits (foca's).
#[derive(Debug)]
pub struct FocaRng(ChaCha8Rng);

impl rand_core_010::TryRng for FocaRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

/// Makes foca nodes with one config.
#[derive(Debug)]
pub struct FocaImpl {
    config: foca::Config,
    timing: Config,
    addrs: Arc<[Address]>,
}

impl FocaImpl {
    /// foca's own preset for the scenario: `Config::new_lan(N)`
    /// (`new_wan(N)` for the wan preset).
    pub fn new(scenario: &Scenario) -> FocaImpl {
        let n = NonZeroU32::new(u32::try_from(scenario.nodes).unwrap_or(u32::MAX).max(1)).unwrap_or(NonZeroU32::MIN);
        let config = match scenario.preset {
            Preset::Wan => foca::Config::new_wan(n),
            Preset::Lan | Preset::Local | Preset::Fast => foca::Config::new_lan(n),
        };
        FocaImpl::with_config(scenario, config)
    }

    /// A custom config (e.g. tuned to a bandwidth).
    pub fn with_config(scenario: &Scenario, config: foca::Config) -> FocaImpl {
        let addrs = (0..scenario.nodes).filter_map(|i| Address::new(format!("sim:{i}")).ok()).collect();
        FocaImpl { config, timing: scenario.preset.config(), addrs }
    }

    /// The config every node runs.
    pub fn config(&self) -> &foca::Config {
        &self.config
    }
}

impl Implementation for FocaImpl {
    fn name(&self) -> &'static str {
        "foca"
    }

    fn boot(&self, boot: Boot<'_>) -> Result<Box<dyn SimNode>, SimError> {
        // Not wired up (foca's `apply_many` might serve); refused up front
        // by `starts_formed`, and here too in case a caller skips that.
        if boot.formed.is_some() {
            return Err(SimError::FormedUnavailable("foca"));
        }
        let me = FocaId { index: u32::try_from(boot.index).unwrap_or(u32::MAX), generation: boot.generation, bump: 0 };
        let rng = FocaRng(ChaCha8Rng::seed_from_u64(boot.seed));
        let foca = Foca::new(me, self.config.clone(), rng, PostcardCodec);
        // foca accepts an Announce addressed to any identity with its
        // address, so the joiner need not know the seed's generation.
        let seeds = boot
            .seeds
            .iter()
            .filter_map(|seed| crate::net::index_of(seed.as_str()).and_then(|i| u32::try_from(i).ok()))
            .map(|index| FocaId { index, generation: 0, bump: 0 })
            .collect();
        let mut node = FocaNode {
            foca,
            rt: Rt { now: boot.now.as_micros(), addrs: Arc::clone(&self.addrs), ..Rt::default() },
            seeds,
            alone_retry: u64::try_from(self.config.probe_period.as_micros()).unwrap_or(u64::MAX),
            retry: u64::try_from(self.timing.reconnect_interval.as_micros()).unwrap_or(u64::MAX),
            next_announce: None,
        };
        node.announce();
        Ok(Box::new(node))
    }

    fn timing(&self) -> &Config {
        &self.timing
    }
}

/// Collects what foca asks for: sends, timers (absolute local deadlines,
/// ordered by (deadline, submission)), notifications as Shoal events.
#[derive(Debug, Default)]
struct Rt {
    now: u64,
    seq: u64,
    timers: BTreeMap<(u64, u64), Timer<FocaId>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    addrs: Arc<[Address]>,
    totals: ProtocolTotals,
}

impl Runtime<FocaId> for Rt {
    fn notify(&mut self, notification: Notification<'_, FocaId>) {
        match notification {
            Notification::MemberUp(id) => self.events.push_back(Event::MemberUp { id: id.node_id() }),
            Notification::MemberDown(id) => {
                self.totals.declared_dead += 1;
                self.events.push_back(Event::MemberDown { id: id.node_id() });
            }
            // Refuting its own death by renewing the identity.
            Notification::Rejoin(_) => self.totals.self_refutes += 1,
            _ => {}
        }
    }

    fn send_to(&mut self, to: FocaId, data: &[u8]) {
        let Some(addr) = self.addrs.get(to.index as usize) else { return };
        self.transmits.push_back(Transmit { to: Some(to.node_id()), addr: addr.clone(), payload: data.to_vec() });
    }

    fn submit_after(&mut self, event: Timer<FocaId>, after: Duration) {
        self.seq += 1;
        let at = self.now.saturating_add(u64::try_from(after.as_micros()).unwrap_or(u64::MAX));
        self.timers.insert((at, self.seq), event);
    }
}

/// One foca node.
pub struct FocaNode {
    foca: Foca<FocaId, PostcardCodec, FocaRng, NoCustomBroadcast>,
    rt: Rt,
    seeds: Vec<FocaId>,
    alone_retry: u64,
    retry: u64,
    /// When to check the seeds again (while there are any).
    next_announce: Option<u64>,
}

impl fmt::Debug for FocaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FocaNode").field("identity", self.foca.identity()).finish_non_exhaustive()
    }
}

fn view(id: FocaId, incarnation: u16, state: foca::State) -> MemberView {
    MemberView {
        id: id.node_id(),
        generation: id.generation,
        // A renewal supersedes any incarnation of the identity before it.
        incarnation: (u32::from(id.bump) << 16) | u32::from(incarnation),
        state: match state {
            foca::State::Alive => State::Alive,
            foca::State::Suspect => State::Suspect,
            foca::State::Down => State::Dead,
        },
        state_since: Instant::from_micros(0),
    }
}

impl FocaNode {
    fn own_view(&self) -> MemberView {
        view(*self.foca.identity(), 0, foca::State::Alive)
    }

    /// Announces to every seed that is not an active member, and plans the
    /// next check.
    fn announce(&mut self) {
        for k in 0..self.seeds.len() {
            let seed = self.seeds[k];
            if self.foca.iter_members().any(|m| m.id().index == seed.index) {
                continue;
            }
            if self.foca.announce(seed, &mut self.rt).is_err() {
                self.rt.totals.decode_failures += 1;
            }
        }
        let after = if self.foca.num_members() == 0 { self.alone_retry } else { self.retry };
        self.next_announce = (!self.seeds.is_empty()).then(|| self.rt.now.saturating_add(after));
    }
}

impl SimNode for FocaNode {
    fn handle_message(&mut self, now: Instant, _from: &Address, payload: &[u8]) {
        self.rt.now = now.as_micros();
        if self.foca.handle_data(payload, &mut self.rt).is_err() {
            // Mostly benign (data from a member it declared Down): counted.
            self.rt.totals.decode_failures += 1;
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = now.as_micros();
        self.rt.now = now;
        while let Some(entry) = self.rt.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if self.foca.handle_timer(timer, &mut self.rt).is_err() {
                self.rt.totals.decode_failures += 1;
            }
        }
        if self.next_announce.is_some_and(|at| at <= now) {
            self.announce();
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.rt.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.rt.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.rt.timers.keys().next().map(|&(at, _)| at);
        timer.into_iter().chain(self.next_announce).min().map(Instant::from_micros)
    }

    fn live_members(&self) -> usize {
        self.foca.num_members() + 1
    }

    fn member(&self, id: NodeId) -> Option<MemberView> {
        if self.foca.identity().node_id() == id {
            return Some(self.own_view());
        }
        self.foca
            .iter_membership_state()
            .find(|m| m.id().node_id() == id)
            .map(|m| view(*m.id(), m.incarnation(), m.state()))
    }

    fn members(&self) -> Box<dyn Iterator<Item = MemberView> + '_> {
        // foca keeps insertion order; equal views must list equally.
        let mut all: Vec<MemberView> = std::iter::once(self.own_view())
            .chain(self.foca.iter_membership_state().map(|m| view(*m.id(), m.incarnation(), m.state())))
            .collect();
        all.sort_unstable_by_key(|m| m.id);
        Box::new(all.into_iter())
    }

    fn totals(&self) -> ProtocolTotals {
        self.rt.totals
    }
}
