//! Failure detection (probes, indirect probes, Lifeguard's nacks) and the
//! periodic rounds: gossip, push-pull, reconnect.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;
use tracing::debug;

use super::{MAX_RELAYS, Membership, Probe, Relay, Replicated, SYNC_HURRY_ROUNDS};
use crate::member::State;
use crate::timer::Timer;
use crate::wire::{Body, MessageBuilder, Update, encode_value};
use crate::{Address, Instant, NodeId};

/// Members one message's corrections name at most.
const MAX_CORRECTIONS_PER_MESSAGE: usize = 4;

/// An indirect probe another member asked this node to make.
#[derive(Debug)]
pub(super) struct RelayRequest {
    pub(super) seq: u32,
    pub(super) target: NodeId,
    pub(super) target_addr: Address,
    pub(super) nack_after: Duration,
}

impl Membership {
    pub(super) fn on_probe_tick(&mut self, now: Instant, late: bool) {
        if let Some(probe) = self.probe.take() {
            self.finish_probe(now, &probe, late);
        }
        let interval = self.health.scale(self.config.probe_interval);
        self.timers.set(now + interval, Timer::ProbeTick);
        if self.leaving {
            return;
        }
        if !late {
            self.ask_suspects(now);
        }
        let Some((target, addr)) = self.next_probe_target() else {
            return;
        };
        let seq = self.next_seq();
        self.send_ping(seq, target, addr);
        self.counters.probes += 1;
        self.probe = Some(Probe {
            seq,
            target,
            sent_at: now,
            ends_at: now + interval,
            acked: false,
            relays: Vec::new(),
            nacked: Vec::new(),
        });
        let timeout = self.health.scale(self.config.probe_timeout);
        self.timers.set(now + timeout, Timer::ProbeTimeout { seq });
    }

    /// Pings each member this node has held Suspect for a period or more,
    /// telling it of the suspicion (Lifeguard's buddy fact), a few times at
    /// most per suspicion. A live suspect answers with its refutation: a
    /// correction if it already refuted (`apply_about_self`), else its new
    /// Alive fact, least sent, in the ack. Why: a refutation reaches most
    /// views within a second, but a view that missed every gossiped copy
    /// held the suspicion until a push-pull reached it. At 20% loss, with
    /// two direct pings per probe, suspicions became too rare to keep
    /// push-pull hurried, and such views lasted up to 7 s at N = 60, past
    /// the shortest suspicion timeout (issue 16). The ping's seq is fresh
    /// and matches no probe, so its ack changes nothing else; asking a
    /// crashed member costs at most `MAX_ASKS` datagrams per viewer.
    fn ask_suspects(&mut self, now: Instant) {
        let after = self.config.probe_interval;
        let due: Vec<NodeId> = self
            .suspicions
            .iter_mut()
            .filter_map(|(id, suspicion)| suspicion.ask_due(now, after).then_some(*id))
            .collect();
        for id in due {
            if let Some(addr) =
                self.addr_of(id).filter(|_| self.members.get(id).is_some_and(|m| m.state == State::Suspect))
            {
                let seq = self.next_seq();
                self.send_ping(seq, id, addr);
                self.counters.suspects_asked += 1;
            }
        }
    }

    /// Sends this node's `Ping{seq}` to `target`, with updates about it first.
    fn send_ping(&mut self, seq: u32, target: NodeId, addr: Address) {
        // Lifeguard: tell a suspect it is suspected, in this ping alone (not
        // in general gossip, where others would count it as a confirmation),
        // so it can refute at once.
        let buddy = self.members.get(target).filter(|m| m.state == State::Suspect).map(|m| Update::Suspect {
            id: target,
            generation: m.generation,
            incarnation: m.incarnation,
            by: self.id,
        });
        let body = Body::Ping { seq, target };
        let mut builder = MessageBuilder::new(self.config.cluster_id, self.id, &body, self.config.datagram_budget);
        if let Some(buddy) = buddy {
            builder.try_push(&encode_value(&buddy));
        }
        let limit = self.retransmit_limit();
        self.broadcasts.fill(&mut builder, limit, Some(target));
        self.queue_transmit(Some(target), addr, &body, builder.finish());
    }

    /// The protocol period ended: an unanswered probe makes its target
    /// suspect, unless this node itself was stalled, or nobody it asked
    /// answered at all (then the probe tested this node's links, not the
    /// target).
    fn finish_probe(&mut self, now: Instant, probe: &Probe, late: bool) {
        debug_assert!(probe.nacked.iter().all(|r| probe.relays.contains(r)), "a nack answers a request we sent");
        if probe.acked || late || !self.members.get(probe.target).is_some_and(|m| m.state.is_live()) {
            return;
        }
        // Lifeguard: relays that did not even nack suggest the fault is ours.
        let (relays_asked, nacks) = (probe.relays.len(), probe.nacked.len());
        let missed_nacks = u32::try_from(relays_asked - nacks).unwrap_or(u32::MAX);
        self.health.worsen(if relays_asked == 0 { 1 } else { missed_nacks });
        if relays_asked > 0 && nacks == 0 {
            // Silence from the target and from every relay: this node's own
            // messages (or their answers) went nowhere, so the probe says
            // nothing about the target. A suspicion raised here could not
            // reach the suspect to be refuted, and its timer would run out
            // once this node is back (issue 16: `chaos` declared healthy
            // members Dead exactly so). Healthy relays nack within the
            // period (80% rule), so a real crash still gets suspected.
            self.counters.probes_unanswered += 1;
            debug!(member = %probe.target, relays = relays_asked, "probe unanswered by anyone; inconclusive");
            return;
        }
        self.suspect_probed(now, probe.target);
    }

    /// The network said nothing listens at `addr`: an unanswered probe of
    /// the member there ends now, as failed, instead of at the end of the
    /// period. This is news about the target, not about this node, so local
    /// health is left as it is (and no relay need speak for it).
    pub(super) fn on_unreachable(&mut self, now: Instant, addr: &Address) {
        let Some(probe) = self.probe.as_ref().filter(|p| !p.acked) else {
            return;
        };
        if self.addr_of(probe.target).as_ref() != Some(addr) {
            return;
        }
        let target = probe.target;
        self.probe = None;
        self.counters.probes_unreachable += 1;
        self.suspect_probed(now, target);
        // Not a paused process, and not this node's links: no floor, no
        // confirmations awaited.
        let live = self.members.live_count();
        if let Some(suspicion) = self.suspicions.get_mut(&target) {
            suspicion.proven_gone(&self.config, live, now);
            let deadline = suspicion.deadline;
            self.timers.set(deadline, Timer::Suspicion { id: target, deadline });
        }
    }

    /// Suspects the target of a failed probe, if it is still live.
    fn suspect_probed(&mut self, now: Instant, target: NodeId) {
        let Some(member) = self.members.get(target).filter(|m| m.state.is_live()) else {
            return;
        };
        if member.state == State::Alive {
            self.counters.suspicions_raised += 1;
            debug!(member = %target, "probe failed; suspecting");
        }
        let update =
            Update::Suspect { id: target, generation: member.generation, incarnation: member.incarnation, by: self.id };
        self.apply_local(now, &update);
    }

    /// The next member in the randomised round-robin, reshuffling at the end
    /// of each pass (SWIM's "round-robin probe target selection").
    fn next_probe_target(&mut self) -> Option<(NodeId, Address)> {
        for _ in 0..2 {
            while self.probe_next < self.probe_order.len() {
                let id = self.probe_order[self.probe_next];
                self.probe_next += 1;
                let live = self.members.get(id).is_some_and(|m| m.state.is_live());
                if let (true, Some(addr)) = (live && id != self.id, self.addr_of(id)) {
                    return Some((id, addr));
                }
            }
            self.reshuffle_probe_order();
        }
        None
    }

    pub(super) fn reshuffle_probe_order(&mut self) {
        let own = self.id;
        self.probe_order = self.members.iter().filter(|m| m.id != own && m.state.is_live()).map(|m| m.id).collect();
        self.probe_order.shuffle(&mut self.rng);
        self.probe_next = 0;
    }

    /// A new member joins the current pass at a random position still ahead;
    /// the member there moves to the end (an inside-out Fisher-Yates step,
    /// so the rest of the pass stays a uniform shuffle, in O(1) rather than
    /// shifting up to N ids).
    pub(super) fn add_to_probe_order(&mut self, id: NodeId) {
        let at = self.rng.random_range(self.probe_next..=self.probe_order.len());
        self.probe_order.push(id);
        let last = self.probe_order.len() - 1;
        self.probe_order.swap(at, last);
    }

    /// A message accused `id` (Suspect or Dead) at an older version than
    /// this node holds, in which `id` is live: its sender missed a
    /// refutation. Noted for [`Self::send_corrections`].
    pub(super) fn note_stale_accusation(&mut self, id: NodeId) {
        if !self.stale_accusations.contains(&id) && self.stale_accusations.len() < MAX_CORRECTIONS_PER_MESSAGE {
            self.stale_accusations.push(id);
        }
    }

    /// Tells the sender of the message just handled what this node holds
    /// about the members it accused at an older version. Gossip stops
    /// carrying a refutation after λ·log N sends, so a node that missed
    /// every one would keep its suspicion (and its Suspect gossip) until
    /// the suspicion ran out and it declared a live member Dead, or until a
    /// push-pull happened to reach it; memberlist lets both happen. One
    /// datagram to the one node that is behind ends it, and at most
    /// `gossip_fanout` go out per gossip interval, so a stale fact echoing
    /// through a large mesh costs no more than a gossip round.
    pub(super) fn send_corrections(&mut self, now: Instant, to: NodeId, to_addr: &Address) {
        if self.stale_accusations.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.stale_accusations);
        if now.saturating_since(self.corrections.1) >= self.config.gossip_interval {
            self.corrections = (0, now);
        }
        if self.corrections.0 >= u32::try_from(self.config.gossip_fanout).unwrap_or(u32::MAX) || self.leaving {
            return;
        }
        self.corrections.0 += 1;
        let body = Body::Gossip;
        let mut builder = MessageBuilder::new(self.config.cluster_id, self.id, &body, self.config.datagram_budget);
        for id in ids {
            let facts: Vec<Update> = if id == self.id {
                vec![self.own_alive()]
            } else {
                let mut facts: Vec<Update> =
                    self.members.get(id).map(|m| Update::facts_of(m, self.id).collect()).unwrap_or_default();
                facts.iter_mut().for_each(|fact| self.credit_suspicion(fact));
                facts
            };
            for fact in facts {
                builder.try_push(&encode_value(&fact));
            }
        }
        self.counters.corrections_sent += 1;
        self.queue_transmit(Some(to), to_addr.clone(), &body, builder.finish());
    }

    fn own_alive(&self) -> Update {
        let (id, generation, incarnation) = (self.id, self.generation, self.incarnation);
        Update::Alive { id, generation, incarnation, meta: Arc::clone(&self.meta) }
    }

    pub(super) fn on_probe_timeout(&mut self, now: Instant, seq: u32) {
        let Some(probe) = self.probe.as_ref().filter(|p| p.seq == seq && !p.acked) else {
            return;
        };
        let target = probe.target;
        // Relays nack after 80% of what is left of the period, so a nack
        // arrives while it can still count (swift-cluster-membership's fix
        // for memberlist's nacks, which always came too late).
        let left = probe.ends_at.saturating_since(now).mul_f64(0.8);
        let nack_after_micros = u32::try_from(left.as_micros()).unwrap_or(u32::MAX);
        let Some(target_addr) = self.addr_of(target) else {
            return;
        };
        // A second direct ping with the same seq, alongside the relays
        // (memberlist's fallback probe, over UDP): a live target is now
        // suspected only if both direct round trips and every relay's
        // four-hop path fail. At 20% loss that takes the false-suspicion
        // rate per probe from 0.36 · 0.59³ = 0.074 to 0.36² · 0.59³ = 0.027
        // (issue 16), for one datagram more per unanswered first ping.
        self.send_ping(seq, target, target_addr.clone());
        let relays = self.random_members(self.config.indirect_checks, |m| m.state == State::Alive && m.id != target);
        for relay in &relays {
            if let Some(addr) = self.addr_of(*relay) {
                let body = Body::PingReq { seq, target, target_addr: target_addr.clone(), nack_after_micros };
                self.send_with_gossip(Some(*relay), addr, &body, None);
            }
        }
        self.counters.indirect_probes += relays.len() as u64;
        if let Some(probe) = self.probe.as_mut() {
            probe.relays = relays;
        }
    }

    pub(super) fn on_ping(&mut self, from: NodeId, from_addr: &Address, seq: u32, target: NodeId) {
        if target != self.id {
            self.counters.misdirected += 1;
            return;
        }
        let ack = self.ack_body(seq);
        self.send_with_gossip(Some(from), from_addr.clone(), &ack, Some(from));
    }

    /// The round trip an ack from `from` for `seq` measures, if it answers
    /// this period's first direct ping. Karn's rule: once the second ping
    /// is out (at the ack timeout), an ack may answer either, so its round
    /// trip is not measured; nor is an ack relayed by another member.
    pub(super) fn direct_rtt(&self, now: Instant, from: NodeId, seq: u32) -> Option<Duration> {
        let probe = self.probe.as_ref().filter(|p| p.seq == seq && !p.acked && p.target == from)?;
        let rtt = now.saturating_since(probe.sent_at);
        (rtt < self.health.scale(self.config.probe_timeout)).then_some(rtt)
    }

    pub(super) fn on_ack(&mut self, now: Instant, from: NodeId, seq: u32) {
        if let Some(rtt) = self.direct_rtt(now, from, seq) {
            self.counters.probe_rtt.record(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
        }
        if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq && !p.acked) {
            probe.acked = true;
            self.counters.probes_acked += 1;
            self.health.improve();
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            let body = Body::Ack { seq: relay.origin_seq };
            self.send_with_gossip(Some(relay.origin), relay.origin_addr, &body, None);
        }
    }

    pub(super) fn on_ping_req(&mut self, now: Instant, from: NodeId, from_addr: &Address, request: RelayRequest) {
        let RelayRequest { seq, target, target_addr, nack_after } = request;
        if self.relays.len() >= MAX_RELAYS || target == self.id {
            return;
        }
        let relay_seq = self.next_seq();
        self.relays.insert(relay_seq, Relay { origin: from, origin_addr: from_addr.clone(), origin_seq: seq });
        self.counters.relayed_probes += 1;
        let body = Body::Ping { seq: relay_seq, target };
        self.send_with_gossip(Some(target), target_addr, &body, Some(target));
        // Bounded whatever the asker says: a relay slot is not held forever.
        let wait = nack_after.clamp(Duration::from_millis(1), self.config.probe_interval);
        self.timers.set(now + wait, Timer::RelayTimeout { seq: relay_seq });
    }

    pub(super) fn on_relay_timeout(&mut self, seq: u32) {
        if let Some(relay) = self.relays.remove(&seq) {
            let body = Body::Nack { seq: relay.origin_seq };
            self.send_with_gossip(Some(relay.origin), relay.origin_addr, &body, None);
        }
    }

    pub(super) fn on_nack(&mut self, from: NodeId, seq: u32) {
        if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
            // Each relay asked counts once: the network may deliver a
            // datagram twice, and a copy must not stand in for a relay that
            // stayed silent.
            if probe.relays.contains(&from) && !probe.nacked.contains(&from) {
                probe.nacked.push(from);
            }
            self.counters.nacks_received += 1;
        }
    }

    /// Every `gossip_interval` while updates are pending. With nothing
    /// pending the timer is not re-armed (idle ticks were most of a quiet
    /// node's wakeups); queueing an update wakes it.
    pub(super) fn on_gossip_tick(&mut self, now: Instant) {
        if self.broadcasts.is_empty() {
            self.gossip_asleep = true;
            return;
        }
        self.timers.set(now + self.config.gossip_interval, Timer::GossipTick);
        self.gossip_round(now, None);
    }

    /// Queues `update` for gossip, waking a sleeping gossip timer now: it
    /// went to sleep at a tick that found nothing to send, so the last round
    /// was at least one interval ago and the next is due. (Waiting for the
    /// old phase instead cost half an interval per hop, and a join or a
    /// death crosses two or three hops.)
    pub(super) fn broadcast(&mut self, now: Instant, update: &Update) {
        self.broadcasts.push(update);
        if std::mem::take(&mut self.gossip_asleep) {
            self.timers.set(now, Timer::GossipTick);
        }
    }

    /// Sends pending updates to a few random members other than `skip`, and
    /// to members declared Dead recently (so a falsely accused one hears of
    /// it and refutes).
    pub(super) fn gossip_round(&mut self, now: Instant, skip: Option<NodeId>) {
        if self.broadcasts.is_empty() {
            return;
        }
        let mut targets = self.random_members(self.config.gossip_fanout, |m| m.state.is_live() && Some(m.id) != skip);
        // Plus one member declared Dead within `gossip_to_the_dead`, so a
        // falsely accused one hears of it and refutes.
        let recent = self.config.gossip_to_the_dead;
        while self.recently_dead.front().is_some_and(|(at, _)| now.saturating_since(*at) >= recent) {
            self.recently_dead.pop_front();
        }
        if !self.recently_dead.is_empty() {
            let (_, id) = self.recently_dead[self.rng.random_range(0..self.recently_dead.len())];
            if self.members.get(id).is_some_and(|m| m.state == State::Dead) {
                targets.push(id);
            }
        }
        for target in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            if let Some(addr) = self.addr_of(target) {
                self.send_with_gossip(Some(target), addr, &Body::Gossip, None);
            }
        }
    }

    /// Starts a push-pull exchange with one random live member, and plans
    /// the next: about one protocol period away while recent exchanges keep
    /// finding differences, the full `push_pull_interval` once they stop.
    /// (Unlike memberlist's, the interval does not grow with N: an exchange
    /// between agreeing views costs one small message, whatever N.)
    pub(super) fn on_push_pull_tick(&mut self, now: Instant, upper: &dyn Replicated) {
        if std::mem::take(&mut self.sync_differed) {
            self.sync_hurry_rounds = SYNC_HURRY_ROUNDS;
        }
        let next = if self.sync_hurry_rounds > 0 {
            self.sync_hurry_rounds -= 1;
            self.soon(now)
        } else {
            now + self.config.push_pull_interval
        };
        self.plan_push_pull(next);
        if self.leaving {
            return;
        }
        if let Some(peer) = self.random_members(1, |m| m.state == State::Alive).pop() {
            if let Some(addr) = self.addr_of(peer) {
                self.start_sync(Some(peer), addr, false, upper);
            }
        }
    }

    /// An exchange found that views differ: exchange again soon. Views that
    /// differ thus keep anti-entropy running as an epidemic (log2 N rounds
    /// to reach everyone) until a few rounds in a row find nothing new.
    pub(super) fn hurry_push_pull(&mut self, now: Instant) {
        self.sync_differed = true;
        let soon = self.soon(now);
        if soon < self.next_push_pull {
            self.plan_push_pull(soon);
        }
    }

    /// About one protocol period from now, jittered so hurried nodes do not
    /// move in lockstep.
    fn soon(&mut self, now: Instant) -> Instant {
        now + self.config.probe_interval.mul_f64(0.5 + self.rng.random::<f64>())
    }

    fn plan_push_pull(&mut self, at: Instant) {
        self.next_push_pull = at;
        self.timers.set(at, Timer::PushPullTick { at });
    }

    /// Forgets long-dead members, then tries to reach one random Dead member
    /// and one bootstrap address that no live member has: the way back
    /// together after a partition heals.
    pub(super) fn on_reconnect_tick(&mut self, now: Instant, upper: &dyn Replicated) {
        self.timers.set(now + self.config.reconnect_interval, Timer::ReconnectTick);
        self.reap(now);
        if self.leaving {
            return;
        }
        let dead: Vec<NodeId> = if self.members.gone_count() > 0 {
            self.members.iter().filter(|m| m.state == State::Dead).map(|m| m.id).collect()
        } else {
            Vec::new()
        };
        if !dead.is_empty() {
            let id = dead[self.rng.random_range(0..dead.len())];
            if let Some(addr) = self.addr_of(id) {
                self.start_sync(Some(id), addr, true, upper);
            }
        }
        let unreached: Vec<Address> =
            self.seeds.iter().filter(|seed| !self.members.is_live_address(seed)).cloned().collect();
        if !unreached.is_empty() {
            let seed = unreached[self.rng.random_range(0..unreached.len())].clone();
            self.start_sync(None, seed, true, upper);
        }
    }

    fn reap(&mut self, now: Instant) {
        // Contact matters only within this window (see doubt_remote_death).
        let recent = self.config.probe_interval.saturating_mul(self.config.suspicion_mult);
        self.members.forget_heard_before(now, recent);
        if self.members.gone_count() == 0 {
            return;
        }
        let retention = self.config.dead_retention;
        let expired: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| !m.state.is_live() && m.id != self.id && now.saturating_since(m.state_since) >= retention)
            .map(|m| m.id)
            .collect();
        for id in expired {
            debug!(member = %id, "forgetting member after dead_retention");
            self.members.remove(id);
        }
    }
}
