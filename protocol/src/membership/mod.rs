//! The membership layer: SWIM with Lifeguard, dissemination and
//! anti-entropy, driven from outside.
//!
//! Like quinn-proto's `Connection`, [`Membership`] has four kinds of method:
//! getters; `handle_*` for inputs (a message arrived, time passed); commands
//! (`join`, `leave`, `set_metadata`); and `poll_*` for outputs. It also
//! carries the layer above it (the [`Replicated`] tables of the workload
//! layer): their facts ride its gossip, and its anti-entropy reconciles
//! them with the members, in one exchange. Drivers use [`crate::Node`],
//! which joins the two layers; the inputs and commands here take the layer
//! above as an argument.

mod coordinates;
mod merge;
mod probe;
mod sync;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, trace};

use crate::broadcast::{BroadcastQueue, retransmit_limit};
use crate::counters::Counters;
use crate::health::LocalHealth;
use crate::member::{Member, MemberTable, Peer, State};
use crate::suspicion::Suspicion;
use crate::table::Applied;
use crate::timer::{Timer, Timers};
use crate::wire::{self, Body, DecodeError, MessageBuilder, Update};
pub(crate) use sync::Synced;

use crate::{Address, Config, ConfigError, Instant, Metadata, MetadataCache, MetadataError, NodeId};

/// Who this node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Stable across restarts.
    pub id: NodeId,
    /// Must increase on every restart of the process (the node persists a
    /// counter in its data dir), so peers tell the new run from the old.
    pub generation: u64,
    /// What this node says about itself.
    pub meta: Metadata,
}

/// Something the driver may want to act on. Query [`Membership::member`] for
/// details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member became live: first seen, back from Dead or Left, or
    /// restarted with a new generation (even when the new run is first
    /// heard of as a suspicion, which then follows as `MemberSuspect`).
    MemberUp { id: NodeId },
    /// A member is suspected.
    MemberSuspect { id: NodeId },
    /// A suspected member refuted the suspicion.
    MemberAlive { id: NodeId },
    /// A member was declared Dead.
    MemberDown { id: NodeId },
    /// A member left gracefully.
    MemberLeft { id: NodeId },
    /// A live member published new metadata.
    MetadataChanged { id: NodeId },
    /// This node was suspected or declared dead, and refuted it.
    /// `declared_gone`: it was declared Dead or Left, so whoever believed
    /// that forgot what it runs.
    SelfRefuted { incarnation: u32, declared_gone: bool },
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The member the bytes are for, when known (not for a bootstrap address).
    pub to: Option<NodeId>,
    /// Where to send them.
    pub addr: Address,
    /// One encoded message.
    pub payload: Vec<u8>,
}

/// Why a [`Membership`] could not be created or a command was refused.
/// Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The metadata breaks a bound.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// The probe in flight this protocol period.
#[derive(Clone, Debug)]
struct Probe {
    seq: u32,
    target: NodeId,
    sent_at: Instant,
    /// When the period ends and an unanswered probe makes the target suspect.
    ends_at: Instant,
    acked: bool,
    /// The relays asked to probe indirectly.
    relays: Vec<NodeId>,
    /// Those of them that nacked, each once (a datagram may arrive twice).
    nacked: Vec<NodeId>,
}

/// A probe this node is relaying for another (an indirect probe).
#[derive(Clone, Debug)]
struct Relay {
    origin: NodeId,
    origin_addr: Address,
    origin_seq: u32,
}

/// A deliberate defect, for proving that the simulator's checks can fail.
/// Only `Node::inject_bug` (feature `bug-injection`) sets one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The node never refutes suspicion of itself, so healthy members that
    /// miss a probe get declared Dead.
    IgnoreRefutations,
    /// The node never starts or answers anti-entropy, so the two sides of a
    /// long partition may never find each other again.
    NoAntiEntropy,
}

/// What the membership layer carries for the layer above it: tables whose
/// facts ride its gossip and which its anti-entropy reconciles along with
/// the members, in one exchange. ([`crate::Workloads`] is the one layer
/// there is; a new table is one more entry in `synced` and the wire's
/// `Sync::TABLES`.)
pub(crate) trait Replicated {
    /// The tables, in [`wire::Sync::TABLES`] order after the members.
    fn synced(&self) -> [&dyn Synced; wire::Sync::TABLES - 1];
    /// A fact about one of these tables from a peer (`from_sync`: sent by
    /// anti-entropy, not gossip). The layer queues what should spread on.
    fn handle_update(&mut self, now: Instant, update: &Update, from_sync: bool, members: &MemberTable) -> Applied;
}

/// No layer above: the membership layer alone, for its unit tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct NoWorkloads {
    catalog: crate::table::Table<crate::CatalogEntry>,
    statuses: crate::table::Table<crate::StatusEntry>,
}

#[cfg(test)]
impl Replicated for NoWorkloads {
    fn synced(&self) -> [&dyn Synced; wire::Sync::TABLES - 1] {
        [&self.catalog, &self.statuses]
    }

    fn handle_update(&mut self, _: Instant, _: &Update, _: bool, _: &MemberTable) -> Applied {
        Applied::Ignored
    }
}

/// Push-pull rounds kept about one period apart after the last exchange
/// that found a difference.
const SYNC_HURRY_ROUNDS: u8 = 3;

/// Members a leaving node tells directly.
const LEAVE_DIRECT: usize = 32;

/// Most indirect probes relayed at once; more requests are dropped.
const MAX_RELAYS: usize = 256;

/// One member's view of the cluster, and the protocol that keeps it current.
#[derive(Debug)]
pub struct Membership {
    config: Config,
    id: NodeId,
    generation: u64,
    incarnation: u32,
    meta: Arc<Metadata>,
    leaving: bool,
    members: MemberTable,
    rng: ChaCha8Rng,
    timers: Timers,
    broadcasts: BroadcastQueue,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Randomised round-robin order of probe targets, and the next index.
    probe_order: Vec<NodeId>,
    probe_next: usize,
    probe: Option<Probe>,
    /// When the next push-pull exchange starts.
    next_push_pull: Instant,
    /// Whether an exchange found differing views since the last push-pull.
    sync_differed: bool,
    /// Hurried push-pull rounds left before falling back to the slow pace.
    sync_hurry_rounds: u8,
    relays: BTreeMap<u32, Relay>,
    /// Members declared Dead recently, oldest first, for gossip to the dead.
    recently_dead: VecDeque<(Instant, NodeId)>,
    suspicions: BTreeMap<NodeId, Suspicion>,
    seeds: Vec<Address>,
    health: LocalHealth,
    next_seq: u32,
    counters: Counters,
    /// Always `None` unless the `bug-injection` feature set it.
    bug: Option<Bug>,
    /// While nothing is queued the gossip timer sleeps (see `probe.rs:
    /// on_gossip_tick`).
    gossip_asleep: bool,
    /// Decoded metadata shared with other instances, if the driver gave one.
    meta_cache: Option<MetadataCache>,
    /// Members the message being handled accused at an older version than
    /// we hold (see `probe.rs: send_corrections`).
    stale_accusations: Vec<NodeId>,
    /// Corrections sent in the current gossip interval, and when it began.
    corrections: (u32, Instant),
    /// Network coordinates: ours, and those members sent (`coordinates.rs`).
    coordinates: coordinates::Coordinates,
}

impl Membership {
    /// A node that knows only itself, with its timers starting at `now`.
    /// Every random choice it makes comes from `seed`.
    pub(crate) fn new(config: Config, identity: Identity, seed: u64, now: Instant) -> Result<Membership, Error> {
        let config = config.validate()?;
        identity.meta.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut timers = Timers::default();
        // Random phases, so nodes started together do not probe in lockstep.
        let mut phase = |period: Duration| now + period.mul_f64(rng.random::<f64>());
        timers.set(phase(config.probe_interval), Timer::ProbeTick);
        timers.set(phase(config.gossip_interval), Timer::GossipTick);
        let first_push_pull = phase(config.push_pull_interval);
        timers.set(first_push_pull, Timer::PushPullTick { at: first_push_pull });
        timers.set(phase(config.reconnect_interval), Timer::ReconnectTick);
        let mut membership = Membership {
            health: LocalHealth::new(config.max_local_health),
            coordinates: coordinates::Coordinates::new(&config.coordinate, identity.id),
            config,
            id: identity.id,
            generation: identity.generation,
            incarnation: 0,
            meta: Arc::new(identity.meta),
            leaving: false,
            members: MemberTable::default(),
            rng,
            timers,
            broadcasts: BroadcastQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            probe_order: Vec::new(),
            probe_next: 0,
            probe: None,
            next_push_pull: first_push_pull,
            sync_differed: false,
            sync_hurry_rounds: 0,
            relays: BTreeMap::new(),
            recently_dead: VecDeque::new(),
            suspicions: BTreeMap::new(),
            seeds: Vec::new(),
            next_seq: 0,
            counters: Counters::default(),
            bug: None,
            meta_cache: None,
            gossip_asleep: false,
            stale_accusations: Vec::new(),
            corrections: (0, now),
        };
        membership.publish_self(now);
        Ok(membership)
    }

    // ---- getters ----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every known member, this node included, in a stable order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    /// What this node knows of `id`.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Alive plus Suspect members, this node included.
    pub fn live_members(&self) -> usize {
        self.members.live_count()
    }

    /// The local health score: 0 is healthy; timeouts stretch by score + 1.
    pub fn local_health(&self) -> u32 {
        self.health.score()
    }

    /// Updates still waiting to be gossiped. After `leave`, the
    /// driver may wait for this to reach zero (with a time bound) before
    /// exiting, so peers hear of the leave rather than detect a failure.
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// Everything this node has counted.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    // ---- commands ----

    /// Contacts `seeds` with a push-pull exchange, and remembers them: they are
    /// retried whenever no live member has their address, so a node that was
    /// cut off finds its way back.
    pub(crate) fn join(&mut self, now: Instant, seeds: impl IntoIterator<Item = Address>, upper: &dyn Replicated) {
        if self.leaving {
            self.leaving = false;
            self.incarnation += 1;
            self.publish_self(now);
        }
        for seed in seeds {
            if !self.seeds.contains(&seed) {
                self.seeds.push(seed);
            }
        }
        self.members.watch(&self.seeds);
        for seed in self.seeds.clone() {
            self.start_sync(None, seed, true, upper);
        }
    }

    /// Leaves gracefully: peers will see this node as Left, not Dead. The node
    /// stops probing; it keeps gossiping until its leave has been sent.
    pub(crate) fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        let left = Update::Left { id: self.id, generation: self.generation, incarnation: self.incarnation };
        self.set_self_state(now, State::Left);
        // Told directly to up to LEAVE_DIRECT members (all of a small
        // cluster), beyond the retransmit limit, so a departing node that
        // exits soon after is seen as Left, not Dead, even where gossip
        // would have missed someone; then gossiped like any update.
        let encoded = wire::encode_value(&left);
        for target in self.random_members(LEAVE_DIRECT, |m| m.state.is_live()) {
            let Some(addr) = self.addr_of(target) else { continue };
            let mut builder =
                MessageBuilder::new(self.config.cluster_id, self.id, &Body::Gossip, self.config.datagram_budget);
            builder.try_push(&encoded);
            self.queue_transmit(Some(target), addr, &Body::Gossip, builder.finish());
        }
        self.broadcast(now, &left);
    }

    /// Publishes new metadata (it spreads like any update).
    pub(crate) fn set_metadata(&mut self, now: Instant, meta: Metadata) -> Result<(), MetadataError> {
        meta.validate()?;
        self.meta = Arc::new(meta);
        if self.leaving {
            // Kept for a later join, which publishes it; publishing now
            // would make this node Alive again mid-leave.
            return Ok(());
        }
        self.incarnation += 1;
        self.publish_self(now);
        Ok(())
    }

    /// Breaks this node on purpose (see [`Bug`]). Test builds only.
    #[cfg(feature = "bug-injection")]
    pub(crate) fn inject_bug(&mut self, bug: Bug) {
        self.bug = Some(bug);
    }

    fn has_bug(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// Starts from a known membership: every peer not already known becomes
    /// an Alive member at once, as if its Alive fact had arrived and been
    /// gossiped to everyone long ago. Nothing is queued for gossip about
    /// them and no events are emitted (the caller knows whom it handed in);
    /// they join the probe order (reshuffled), and the anti-entropy digests
    /// cover them, so nodes preloaded with the same membership agree from
    /// the start. Peers already known (this node among them) keep their
    /// entries. Returns how many members were added.
    ///
    /// The simulator builds its `formed` mesh with this; a node could restore
    /// a snapshot of its peers with it before joining (it would still join,
    /// so its peers hear of its new run, and suspect any peer that is gone).
    /// Deterministic: the table is built in key order whatever the order of
    /// `peers`, and the only random draw is the probe-order shuffle. Built
    /// in one pass, so preloading N peers costs O(N) for sorted input.
    pub(crate) fn preload(&mut self, now: Instant, peers: &[Peer]) -> usize {
        let added = self.members.preload(now, peers);
        if added > 0 {
            self.reshuffle_probe_order();
        }
        added
    }

    /// Drops the pending gossip of this node's own Alive fact. The caller
    /// asserts that every peer already knows this node at its current
    /// generation and incarnation: true of a mesh built formed (every node
    /// `preload`ed with all the others), as the simulator's
    /// `formed` bootstrap does. A node restoring a snapshot must not call it:
    /// its peers have to hear of its new run.
    pub(crate) fn assume_announced(&mut self) {
        self.broadcasts.remove(&wire::Subject::Member(self.id));
    }

    // ---- inputs ----

    /// Handles one message that arrived from transport address `from`.
    /// Undecodable messages are dropped and counted; nothing else changes.
    pub(crate) fn handle_message(&mut self, now: Instant, from: &Address, bytes: &[u8], upper: &mut dyn Replicated) {
        let message = match wire::decode_incoming(bytes, self.config.cluster_id) {
            Ok(message) => message,
            Err(error) => {
                match error {
                    DecodeError::Cluster { .. } => self.counters.wrong_cluster += 1,
                    DecodeError::Version { .. } => self.counters.wrong_version += 1,
                    _ => self.counters.decode_failures += 1,
                }
                debug!(%from, %error, "dropped message");
                return;
            }
        };
        let len = bytes.len() as u64;
        self.counters.messages_in.add(&message.body, 1);
        self.counters.bytes_in.add(&message.body, len);
        if message.from == self.id {
            self.counters.misdirected += 1;
            return;
        }
        let recent = self.config.probe_interval.saturating_mul(self.config.suspicion_mult);
        self.members.heard_from(message.from, now, recent);
        trace!(from = %message.from, body = ?message.body, updates = message.updates.len(), "recv");
        let from_sync = matches!(message.body, Body::Sync(_));
        let sender_was_known = self.members.get(message.from).is_some();
        let applied_before = self.counters.updates_applied;
        for update in &message.updates {
            // A member introducing itself (a join) is news to spread, even
            // when it arrives in an anti-entropy message.
            let from_sync = from_sync && update.member() != Some(message.from);
            self.apply_raw(now, update, from_sync, upper);
        }
        if from_sync && self.counters.updates_applied > applied_before {
            // A peer knew something we did not; others may not know it either.
            self.hurry_push_pull(now);
        }
        if from_sync && !sender_was_known && self.members.get(message.from).is_some() {
            // A join handshake (the joiner's sync at the seed, the seed's
            // answer at the joiner): the join is news, sent now rather than
            // at the next gossip tick, up to an interval away. Not to the
            // sender, which has just heard everything this node knows.
            self.gossip_round(now, Some(message.from));
        }
        self.send_corrections(now, message.from, from);
        match message.body {
            Body::Ping { seq, target } => self.on_ping(message.from, from, seq, target),
            Body::Ack { seq } => self.on_ack(now, message.from, seq),
            Body::AckCoordinate { seq, coordinate } => self.on_ack_with_coordinate(now, message.from, seq, coordinate),
            Body::PingReq { seq, target, target_addr, nack_after_micros } => {
                let nack_after = Duration::from_micros(u64::from(nack_after_micros));
                let request = probe::RelayRequest { seq, target, target_addr, nack_after };
                self.on_ping_req(now, message.from, from, request);
            }
            Body::Nack { seq } => self.on_nack(message.from, seq),
            Body::Gossip => {}
            Body::Sync(sync) => self.on_sync(now, message.from, from, &sync, upper),
        }
    }

    /// The transport learned that nothing listens at `addr` (an ICMP "port
    /// unreachable" answered a datagram sent there: the host is up, the
    /// process is not). An unanswered probe of the member at `addr` ends at
    /// once, as failed; the suspicion that follows runs its usual course.
    /// Harmless for any other address.
    pub(crate) fn handle_unreachable(&mut self, now: Instant, addr: &Address) {
        self.on_unreachable(now, addr);
    }

    /// Acts on every timer due at `now`. Calling it early or twice is harmless.
    pub(crate) fn handle_timeout(&mut self, now: Instant, upper: &dyn Replicated) {
        let mut stalled = false;
        while let Some((deadline, timer)) = self.timers.pop_due(now) {
            // A timer far past its deadline means this node was not running
            // (paused, starved): Lifeguard treats that as a sign of its own ill
            // health, and what it observed meanwhile as inconclusive.
            let late = now.saturating_since(deadline) > self.config.probe_timeout;
            if late && !stalled {
                stalled = true;
                self.counters.late_timers += 1;
                self.health.worsen(1);
                debug!(late_by = ?now.saturating_since(deadline), "timers fired late; local health worsened");
            }
            match timer {
                Timer::ProbeTick => self.on_probe_tick(now, late),
                Timer::ProbeTimeout { seq } => self.on_probe_timeout(now, seq),
                Timer::RelayTimeout { seq } => self.on_relay_timeout(seq),
                Timer::Suspicion { id, deadline } => self.on_suspicion_timeout(now, id, deadline, late),
                Timer::GossipTick => self.on_gossip_tick(now),
                Timer::PushPullTick { at } => {
                    if at == self.next_push_pull {
                        self.on_push_pull_tick(now, upper);
                    }
                }
                Timer::ReconnectTick => self.on_reconnect_tick(now, upper),
            }
        }
    }

    // ---- outputs ----

    /// The next message to send, if any.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next membership event, if any.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// When `handle_timeout` should next be called.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Gossips a fact of the layer above (it was written or learned there).
    pub(crate) fn disseminate(&mut self, now: Instant, update: &Update) {
        debug_assert!(update.member().is_none(), "only this layer states membership facts");
        self.broadcast(now, update);
    }

    /// The member table, for the layer above to read.
    pub(crate) fn member_table(&self) -> &MemberTable {
        &self.members
    }

    // ---- shared helpers ----

    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn retransmit_limit(&self) -> u32 {
        retransmit_limit(self.config.retransmit_mult, self.members.live_count())
    }

    /// This node's own entry, as peers should see it.
    fn self_member(&self, now: Instant, state: State) -> Member {
        Member {
            id: self.id,
            generation: self.generation,
            incarnation: self.incarnation,
            state,
            meta: Arc::clone(&self.meta),
            state_since: now,
        }
    }

    fn set_self_state(&mut self, now: Instant, state: State) {
        self.members.upsert(self.self_member(now, state));
    }

    /// Records this node Alive at its current incarnation and gossips it.
    fn publish_self(&mut self, now: Instant) {
        self.set_self_state(now, State::Alive);
        self.broadcast(
            now,
            &Update::Alive {
                id: self.id,
                generation: self.generation,
                incarnation: self.incarnation,
                meta: Arc::clone(&self.meta),
            },
        );
    }

    /// Queues a message piggybacking as many pending updates as fit,
    /// updates about `first` before the rest.
    fn send_with_gossip(&mut self, to: Option<NodeId>, addr: Address, body: &Body, first: Option<NodeId>) -> usize {
        let mut builder = MessageBuilder::new(self.config.cluster_id, self.id, body, self.config.datagram_budget);
        let limit = self.retransmit_limit();
        let added = self.broadcasts.fill(&mut builder, limit, first);
        self.queue_transmit(to, addr, body, builder.finish());
        added
    }

    fn queue_transmit(&mut self, to: Option<NodeId>, addr: Address, body: &Body, payload: Vec<u8>) {
        self.counters.messages_out.add(body, 1);
        self.counters.bytes_out.add(body, payload.len() as u64);
        trace!(to = ?to.map(|id| id.to_string()), %addr, ?body, len = payload.len(), "send");
        self.transmits.push_back(Transmit { to, addr, payload });
    }

    fn addr_of(&self, id: NodeId) -> Option<Address> {
        self.members.get(id)?.meta.primary_addr().cloned()
    }

    /// Up to `count` distinct random members other than this node for which
    /// `eligible` holds, drawn from the probe order (which holds every member
    /// that was live at its last shuffle).
    fn random_members(&mut self, count: usize, eligible: impl Fn(&Member) -> bool) -> Vec<NodeId> {
        let own = self.id;
        let ok = |id: &NodeId| *id != own && self.members.get(*id).is_some_and(&eligible);
        let mut chosen = Vec::with_capacity(count);
        if self.probe_order.len() <= 4 * count.max(1) {
            let mut candidates: Vec<NodeId> = self.probe_order.iter().copied().filter(ok).collect();
            candidates.sort_unstable();
            candidates.dedup();
            while chosen.len() < count && !candidates.is_empty() {
                let index = self.rng.random_range(0..candidates.len());
                chosen.push(candidates.swap_remove(index));
            }
            return chosen;
        }
        for _ in 0..4 * count {
            if chosen.len() == count {
                break;
            }
            let id = self.probe_order[self.rng.random_range(0..self.probe_order.len())];
            if ok(&id) && !chosen.contains(&id) {
                chosen.push(id);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod scenario_tests;
#[cfg(test)]
mod unit_tests;
