//! Applying membership facts: the merge (take the greater version), the
//! suspicion lifecycle, and refuting facts about this node.

use std::cmp::Ordering;
use std::sync::Arc;

use tracing::{debug, warn};

use super::{Bug, Event, Membership, Replicated};
use crate::broadcast::SIGHTINGS_QUEUE_LIMIT;
use crate::member::{Member, State, Version};
use crate::suspicion::Suspicion;
use crate::table::Applied;
use crate::timer::Timer;
use crate::wire::{RawUpdate, Update};
use crate::{Instant, MetadataCache, NodeId};

/// Where a fact came from, which decides whether it is passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Piggybacked gossip, or this node's own conclusion: new facts spread.
    Gossip,
    /// An anti-entropy entry: facts about members we knew spread (they are
    /// news, e.g. a refutation after a partition heals); first sightings do
    /// not, since the member announces itself and re-gossiping a whole
    /// membership list after a join would flood the cluster.
    Sync,
}

impl Membership {
    /// Applies one fact received in a message: a membership fact here, a
    /// fact of the layer above there.
    fn apply(&mut self, now: Instant, update: &Update, from_sync: bool, upper: &mut dyn Replicated) {
        if update.member().is_some() {
            let source = if from_sync { Source::Sync } else { Source::Gossip };
            self.apply_from(now, update, source);
            return;
        }
        match upper.handle_update(now, update, from_sync, &self.members) {
            Applied::New | Applied::Changed => self.counters.updates_applied += 1,
            Applied::Ignored => self.counters.updates_ignored += 1,
            Applied::Invalid => match update {
                Update::Workload(_) => self.counters.invalid_specs += 1,
                _ => self.counters.invalid_statuses += 1,
            },
        }
    }

    /// Applies one fact received in a message, decoding it in full only if
    /// it may change something (most received facts are repeats).
    pub(super) fn apply_raw(&mut self, now: Instant, raw: &RawUpdate<'_>, from_sync: bool, upper: &mut dyn Replicated) {
        if let Some((id, generation, incarnation, state)) = raw.fact().filter(|(id, ..)| *id != self.id) {
            let version = Version::new(generation, incarnation, state);
            // The cases in which `apply_from` would only count the fact as
            // ignored: unknown members other than by an Alive fact, older
            // versions, and repeats other than a confirming suspicion.
            let ignored = match self.members.get(id) {
                None => state != State::Alive,
                Some(current) => match version.cmp(&current.version()) {
                    Ordering::Less => {
                        if matches!(state, State::Suspect | State::Dead) && current.state.is_live() {
                            self.note_stale_accusation(id);
                        }
                        true
                    }
                    Ordering::Equal => state != State::Suspect,
                    Ordering::Greater => false,
                },
            };
            if ignored {
                self.counters.updates_ignored += 1;
                return;
            }
        }
        match raw.decode(self.meta_cache.as_ref()) {
            Ok(update) => self.apply(now, &update, from_sync, upper),
            Err(error) => {
                // The message as a whole decoded, so this cannot happen.
                self.counters.decode_failures += 1;
                debug!(%error, "dropped an update");
            }
        }
    }

    /// Shares decoded metadata with other instances in this process (see
    /// [`MetadataCache`]); it changes nothing this node does.
    pub(crate) fn share_metadata(&mut self, cache: MetadataCache) {
        self.meta_cache = Some(cache);
    }

    /// Applies a fact this node concluded itself (a failed probe, an expired
    /// suspicion).
    pub(super) fn apply_local(&mut self, now: Instant, update: &Update) {
        self.apply_from(now, update, Source::Gossip);
    }

    fn apply_from(&mut self, now: Instant, update: &Update, source: Source) {
        let Some(id) = update.member() else {
            debug_assert!(false, "the layer above applies its own facts: {update:?}");
            return;
        };
        if id == self.id {
            self.apply_about_self(now, update);
            return;
        }
        let version = update.version();
        let Some(current) = self.members.get(id) else {
            // Only an Alive fact carries the metadata needed to know a member.
            if let Update::Alive { meta, .. } = update {
                if meta.validate().is_err() {
                    self.counters.invalid_metadata += 1;
                    return;
                }
                self.learn(now, update, source);
            } else {
                self.counters.updates_ignored += 1;
            }
            return;
        };
        match version.cmp(&current.version()) {
            Ordering::Less => self.counters.updates_ignored += 1,
            Ordering::Equal => {
                if let Update::Suspect { by, .. } = *update {
                    self.confirm_suspicion(now, id, by, update);
                } else {
                    self.counters.updates_ignored += 1;
                }
            }
            Ordering::Greater => {
                if let Some(doubted) = self.doubt_remote_death(now, update, current) {
                    self.counters.remote_deaths_doubted += 1;
                    self.apply_from(now, &doubted, source);
                    return;
                }
                if let Update::Alive { meta, .. } = update {
                    if meta.validate().is_err() {
                        self.counters.invalid_metadata += 1;
                        return;
                    }
                }
                self.transition(now, update);
                self.broadcast(now, update);
            }
        }
    }

    /// Lifeguard in spirit: another member's verdict that `update`'s member
    /// is Dead, when we heard from that member within a few periods, is only
    /// a suspicion here. It then has its suspicion timeout to refute (the
    /// usual case after a partition heals, when each side declared the
    /// other dead); if it is really gone, our own probes confirm it.
    fn doubt_remote_death(&self, now: Instant, update: &Update, current: &Member) -> Option<Update> {
        let Update::Dead { id, generation, incarnation, by } = *update else {
            return None;
        };
        let recent = self.config.probe_interval.saturating_mul(self.config.suspicion_mult);
        let heard_recently = self.members.last_heard(id).is_some_and(|at| now.saturating_since(at) < recent);
        (by != self.id && current.state.is_live() && heard_recently).then_some(Update::Suspect {
            id,
            generation,
            incarnation,
            by,
        })
    }

    /// First sighting of a member.
    fn learn(&mut self, now: Instant, update: &Update, source: Source) {
        let Update::Alive { id, generation, incarnation, meta } = update else {
            return;
        };
        self.counters.updates_applied += 1;
        self.members.upsert(Member {
            id: *id,
            generation: *generation,
            incarnation: *incarnation,
            state: State::Alive,
            meta: Arc::clone(meta),
            state_since: now,
        });
        self.add_to_probe_order(*id);
        debug!(member = %id, name = %meta.name, "member up");
        self.emit(Event::MemberUp { id: *id });
        // Re-gossiped only while the queue is short: in a mass join it would
        // otherwise hold every joiner, each sent L times, and keep messages
        // full for minutes after anti-entropy had told everyone (12 KB/s per
        // node a minute after 3,000 nodes joined). Anti-entropy carries the rest.
        if source == Source::Gossip && self.broadcasts.len() < SIGHTINGS_QUEUE_LIMIT {
            self.broadcast(now, update);
        }
    }

    /// A known member moves to a newer version.
    fn transition(&mut self, now: Instant, update: &Update) {
        let Some(id) = update.member() else {
            return;
        };
        let Some(mut member) = self.members.get(id).cloned() else {
            return;
        };
        self.counters.updates_applied += 1;
        let before = member.clone();
        let version = update.version();
        member.generation = version.generation;
        member.incarnation = version.incarnation;
        member.state = match update {
            Update::Alive { meta, .. } => {
                member.meta = Arc::clone(meta);
                State::Alive
            }
            Update::Suspect { .. } => State::Suspect,
            Update::Dead { .. } => State::Dead,
            Update::Left { .. } => State::Left,
            Update::Workload(_) | Update::Status(_) => return,
        };
        // Suspicion comes and goes without moving work, so what placement
        // needs (how long a member has been live, or gone) ignores it.
        if member.state.is_live() != before.state.is_live() {
            member.state_since = now;
        }
        let (state, generation, incarnation) = (member.state, member.generation, member.incarnation);
        self.members.upsert(member);
        // (A member back from the dead may still be in the rest of this pass.)
        if !before.state.is_live() && state.is_live() && !self.probe_order[self.probe_next..].contains(&id) {
            self.add_to_probe_order(id);
        }

        if state != State::Suspect {
            self.suspicions.remove(&id);
        }
        match state {
            State::Alive => {
                let restarted = generation > before.generation;
                if !before.state.is_live() || restarted {
                    debug!(member = %id, generation, "member up");
                    self.emit(Event::MemberUp { id });
                } else if before.state == State::Suspect {
                    self.counters.suspicions_refuted += 1;
                    debug!(member = %id, incarnation, "suspicion refuted");
                    self.emit(Event::MemberAlive { id });
                }
                let same_run = !restarted && before.state.is_live();
                if same_run && self.members.get(id).is_some_and(|m| m.meta != before.meta) {
                    self.emit(Event::MetadataChanged { id });
                }
            }
            State::Suspect => {
                // A restart first heard of as a suspicion is still a new run.
                if !before.state.is_live() || generation > before.generation {
                    self.emit(Event::MemberUp { id });
                }
                let Update::Suspect { by, .. } = *update else {
                    return;
                };
                let suspicion =
                    Suspicion::new(&self.config, self.members.live_count(), generation, incarnation, by, now);
                let deadline = suspicion.deadline;
                self.suspicions.insert(id, suspicion);
                self.timers.set(deadline, Timer::Suspicion { id, deadline });
                debug!(member = %id, %by, until = %deadline, "member suspect");
                self.emit(Event::MemberSuspect { id });
            }
            State::Dead => {
                self.recently_dead.push_back((now, id));
                debug!(member = %id, "member down");
                self.emit(Event::MemberDown { id });
            }
            State::Left => {
                debug!(member = %id, "member left");
                self.emit(Event::MemberLeft { id });
            }
        }
    }

    /// Another member independently suspects `id`: Lifeguard shortens the
    /// suspicion, and the confirmation is passed on.
    fn confirm_suspicion(&mut self, now: Instant, id: NodeId, by: NodeId, update: &Update) {
        let Some(suspicion) = self.suspicions.get_mut(&id) else {
            self.counters.updates_ignored += 1;
            return;
        };
        if !suspicion.confirm(by, now) {
            self.counters.updates_ignored += 1;
            return;
        }
        let deadline = suspicion.deadline;
        debug!(member = %id, %by, confirmations = suspicion.confirmations(), until = %deadline, "suspicion confirmed");
        self.counters.updates_applied += 1;
        self.timers.set(deadline, Timer::Suspicion { id, deadline });
        self.broadcast(now, update);
    }

    /// A Suspect fact this node restates from its table (anti-entropy,
    /// corrections) names whoever raised the suspicion, not this node: a
    /// confirmation is an independent failed probe (section 2 of
    /// ALGORITHM.md), and a node that only heard of a suspicion confirms
    /// nothing. (Naming the sender made every push-pull partner of the
    /// suspecter a confirmer; in `chaos` seeds 9 and 74 at N = 100 the
    /// suspecter's own suspicion came back from its partner as a
    /// confirmation, and its long timeout collapsed to zero.)
    pub(super) fn credit_suspicion(&self, fact: &mut Update) {
        if let Update::Suspect { id, generation, incarnation, by } = fact {
            if let Some(suspicion) = self.suspicions.get(id) {
                debug_assert_eq!(
                    (suspicion.generation, suspicion.incarnation),
                    (*generation, *incarnation),
                    "a suspicion is held only for a member Suspect at its version"
                );
                *by = suspicion.raised_by;
            }
        }
    }

    pub(super) fn on_suspicion_timeout(&mut self, now: Instant, id: NodeId, deadline: Instant, late: bool) {
        let Some(suspicion) = self.suspicions.get_mut(&id) else {
            return;
        };
        if suspicion.deadline != deadline {
            return;
        }
        // A node that was stalled (its timers fired late) or that is unwell
        // (its own probes keep failing unanswered, as when it is the one cut
        // off) is the likeliest to be wrong, and a Dead verdict it issues
        // travels on after it reconnects. So it withholds the verdict, one
        // period at a time, until it is well again; meanwhile a refutation
        // may arrive, and healthy members reach their own verdicts.
        let unwell = self.health.score() >= self.config.max_local_health.div_ceil(2).max(1);
        if late || unwell {
            if unwell {
                self.counters.verdicts_withheld += 1;
            }
            let deadline = now + self.config.probe_interval;
            suspicion.deadline = deadline;
            self.timers.set(deadline, Timer::Suspicion { id, deadline });
            return;
        }
        let (generation, incarnation) = (suspicion.generation, suspicion.incarnation);
        self.suspicions.remove(&id);
        let still_suspect = self
            .members
            .get(id)
            .is_some_and(|m| m.state == State::Suspect && m.generation == generation && m.incarnation == incarnation);
        if !still_suspect {
            return;
        }
        self.counters.declared_dead += 1;
        let dead = Update::Dead { id, generation, incarnation, by: self.id };
        self.apply_local(now, &dead);
    }

    /// A fact about this node. Accusations at our current incarnation are
    /// refuted by publishing a higher one (SWIM's refutation); facts about an
    /// older generation are about a previous run and ignored.
    fn apply_about_self(&mut self, now: Instant, update: &Update) {
        let version = update.version();
        match version.generation.cmp(&self.generation) {
            Ordering::Less => {
                self.counters.updates_ignored += 1;
                return;
            }
            Ordering::Greater => {
                self.counters.identity_conflicts += 1;
                warn!(generation = version.generation, "another process claims this node's id with a newer generation");
                return;
            }
            Ordering::Equal => {}
        }
        let accusation = match update {
            Update::Alive { incarnation, .. } => *incarnation > self.incarnation,
            Update::Left { .. } if self.leaving => false,
            Update::Suspect { incarnation, .. }
            | Update::Dead { incarnation, .. }
            | Update::Left { incarnation, .. } => *incarnation >= self.incarnation,
            Update::Workload(_) | Update::Status(_) => false,
        };
        if !accusation || self.leaving || self.has_bug(Bug::IgnoreRefutations) {
            if !accusation && !self.leaving && matches!(update, Update::Suspect { .. } | Update::Dead { .. }) {
                // Accused at an incarnation already refuted: the accuser
                // missed the refutation; tell it again.
                self.note_stale_accusation(self.id);
            }
            self.counters.updates_ignored += 1;
            return;
        }
        self.incarnation = version.incarnation.saturating_add(1);
        self.counters.self_refutes += 1;
        // Lifeguard: being accused is a hint that we are the slow one.
        self.health.worsen(1);
        debug!(incarnation = self.incarnation, "refuting suspicion of this node");
        let declared_gone = matches!(update, Update::Dead { .. } | Update::Left { .. });
        self.emit(Event::SelfRefuted { incarnation: self.incarnation, declared_gone });
        self.publish_self(now);
    }
}
