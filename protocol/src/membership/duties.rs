//! What this node should run: the placement its own view gives, who counts
//! as settled, and make-before-break handover.
//!
//! Every node computes the same placement from the same view, so no node
//! tells another what to run. Three rules keep work from moving more than
//! it must (ALGORITHM.md section 14):
//!
//! - Suspect members keep their work; only Dead or Left moves it.
//! - A member that becomes Alive takes work only once it has been live for
//!   its settle time, which doubles with each time it went down in the last
//!   `flap_window` (so a flapping member does not pull work back and forth).
//!   Members learned while this node itself is settling count as settled:
//!   a node that just started has no history to judge them by.
//! - A node stops a replica it no longer owns only when the new owner
//!   reports that replica Running, or after `handover_grace`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::Membership;
use crate::hash::mix64;
use crate::member::Member;
use crate::placement::{self, Candidate, Placement, PlacementConfig, Unplaced};
use crate::status::{ReplicaKey, ReplicaState, ReplicaStatus, StatusEntry};
use crate::table::KeyRange;
use crate::wire::Update;
use crate::{Instant, NodeId, WorkloadSpec};

/// Downs remembered per member, for its settle time.
const MAX_DOWNS: usize = 6;

/// One replica this node owns and should be running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duty {
    pub workload: String,
    pub replica: u16,
    pub spec: Arc<WorkloadSpec>,
}

impl Duty {
    /// Which replica this is.
    pub fn key(&self) -> ReplicaKey {
        ReplicaKey::new(self.workload.clone(), self.replica)
    }
}

/// What this node should do now (from [`Membership::plan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Replicas this node owns: start any that are not running, and keep
    /// those that are (restarting per the spec's policy).
    pub run: Vec<Duty>,
    /// Replicas this node reports but should stop now: the workload was deleted or shrunk, or another node took
    /// the replica over and reports it running, or the handover grace ran
    /// out. Replicas in neither list are being handed over: keep them.
    pub stop: Vec<ReplicaKey>,
    /// Workloads with replicas no node could take, and why.
    pub unplaced: BTreeMap<String, Unplaced>,
    /// Whether this node takes work yet (it does after its settle time).
    pub settled: bool,
}

/// The bookkeeping behind [`Plan`]s.
#[derive(Debug, Default)]
pub(super) struct WorkState {
    /// Versions this node's status entries, within its generation.
    status_version: u64,
    /// When each member recently went Dead or Left, oldest first.
    downs: BTreeMap<NodeId, VecDeque<Instant>>,
    /// Replicas this node runs but no longer owns, and since when.
    losing: BTreeMap<ReplicaKey, Instant>,
    /// The last placement and the fingerprint of the view it came from.
    cached: Option<(u64, Arc<Placement>)>,
}

impl Membership {
    /// Replaces this node's report of the replicas it supervises (the
    /// driver's whole current set). Changed entries are gossiped; replicas
    /// missing from `replicas` are reported Stopped.
    pub fn report_replicas(&mut self, now: Instant, replicas: impl IntoIterator<Item = ReplicaStatus>) {
        let mut reported: BTreeMap<ReplicaKey, ReplicaStatus> = BTreeMap::new();
        for mut status in replicas {
            let key = status.key();
            // A replica being handed over says so, so its new owner starts it.
            if self.work.losing.contains_key(&key) && status.state == ReplicaState::Running {
                status.state = ReplicaState::Releasing;
            }
            reported.insert(key, status.bounded());
        }
        let mut changed: Vec<ReplicaStatus> = Vec::new();
        for held in self.statuses.live().filter(|e| e.node == self.id) {
            if !reported.contains_key(&held.status.key()) {
                changed.push(ReplicaStatus { detail: String::new(), ..held.status.clone().stopped() });
            }
        }
        for (key, status) in reported {
            let held = self.statuses.get(self.id, &key).map(|e| &e.status);
            if held != Some(&status) {
                changed.push(status);
            }
        }
        for status in changed {
            self.work.status_version += 1;
            let entry =
                StatusEntry { node: self.id, generation: self.generation, version: self.work.status_version, status };
            self.statuses.apply(&entry, now);
            self.broadcast(now, &Update::Status(entry));
        }
    }

    /// Every replica some live node reports (not Stopped), in a stable
    /// order: where each replica runs, and how it is doing.
    pub fn replica_statuses(&self) -> impl Iterator<Item = &StatusEntry> {
        self.statuses.live()
    }

    /// The placement this node's view gives: every workload's replicas on
    /// the live, settled members. Recomputed only when the view changes.
    pub fn placement(&mut self, now: Instant) -> Arc<Placement> {
        let candidates: Vec<Candidate> = self
            .members
            .iter()
            .filter(|m| m.state.is_live() && self.settled(m, now) && !(m.id == self.id && self.leaving))
            .map(|m| Candidate { id: m.id, capacity: m.meta.capacity, labels: m.meta.labels.clone() })
            .collect();
        let catalog = self.catalog.table().digest(KeyRange::ROOT);
        let fingerprint = candidates.iter().fold(mix64(catalog.hash ^ u64::from(catalog.count)), |acc, c| {
            let labels = c.labels.iter().fold(0, |h, (k, v)| {
                mix64(h ^ crate::stable_hash64(k.as_bytes())) ^ crate::stable_hash64(v.as_bytes())
            });
            mix64(acc ^ c.id.key())
                ^ mix64(u64::from(c.capacity.cpu_millis) ^ c.capacity.memory_bytes.rotate_left(17) ^ labels)
        });
        if let Some((cached, placement)) = &self.work.cached {
            if *cached == fingerprint {
                return Arc::clone(placement);
            }
        }
        let specs: Vec<WorkloadSpec> = self.workloads().cloned().collect();
        let placement = Arc::new(placement::place(&candidates, &specs, PlacementConfig::default()));
        self.work.cached = Some((fingerprint, Arc::clone(&placement)));
        placement
    }

    /// What this node should run and stop now. Call it after anything
    /// changes (a member, the catalog, a replica's status) or every second
    /// or so; it is cheap while the view is unchanged.
    pub fn plan(&mut self, now: Instant) -> Plan {
        let placement = self.placement(now);
        let settled = self.members.get(self.id).is_some_and(|me| self.settled(me, now)) && !self.leaving;
        let owned: BTreeSet<ReplicaKey> = placement
            .on_node(self.id)
            .filter_map(|(name, replica)| Some(ReplicaKey::new(name, u16::try_from(replica).ok()?)))
            .collect();
        let held_elsewhere = if owned.is_empty() { BTreeSet::new() } else { self.held_elsewhere() };
        let run = owned
            .iter()
            .filter(|key| !held_elsewhere.contains(&(key.workload.as_str(), key.replica)) || self.reports(key))
            .filter_map(|key| {
                let spec = Arc::clone(self.catalog.spec(&key.workload)?);
                Some(Duty { workload: key.workload.clone(), replica: key.replica, spec })
            })
            .collect();
        let running: Vec<ReplicaKey> = self
            .replica_statuses()
            .filter(|e| e.node == self.id)
            .map(|e| e.status.key())
            .filter(|key| !owned.contains(key))
            .collect();
        self.work.losing.retain(|key, _| running.contains(key));
        let mut stop = Vec::new();
        for key in running {
            let live_spec = self.catalog.spec(&key.workload);
            if live_spec.is_none_or(|spec| u32::from(key.replica) >= spec.replicas) {
                stop.push(key);
                continue;
            }
            let since = *self.work.losing.entry(key.clone()).or_insert(now);
            let handed_over =
                placement.owner(&key.workload, usize::from(key.replica)).is_some_and(|owner| self.runs(owner, &key));
            if handed_over || now.saturating_since(since) >= self.config.handover_grace {
                stop.push(key);
            }
        }
        Plan { run, stop, unplaced: placement.unplaced.clone(), settled }
    }

    /// The replicas another live member runs other than to release them. A
    /// node starts a replica it owns only if it runs it already or it is not
    /// in this set: while views disagree (say, about whether a member has
    /// settled), the member that has the replica keeps it, rather than both
    /// running it. One pass over the statuses per plan, not per replica.
    fn held_elsewhere(&self) -> BTreeSet<(&str, u16)> {
        self.statuses
            .live()
            .filter(|e| {
                e.node != self.id
                    && matches!(e.status.state, ReplicaState::Starting | ReplicaState::Running)
                    && self.members.get(e.node).is_some_and(|m| m.state.is_live() && m.generation == e.generation)
            })
            .map(|e| (e.status.workload.as_str(), e.status.replica))
            .collect()
    }

    /// Whether this node reports `replica` (in any state but Stopped).
    fn reports(&self, replica: &ReplicaKey) -> bool {
        self.statuses.get(self.id, replica).is_some_and(|e| e.status.state != ReplicaState::Stopped)
    }

    /// Whether `node`, in its current generation, reports `replica` running.
    fn runs(&self, node: NodeId, replica: &ReplicaKey) -> bool {
        let Some(member) = self.members.get(node) else { return false };
        self.statuses
            .get(node, replica)
            .is_some_and(|e| e.generation == member.generation && e.status.state == ReplicaState::Running)
    }

    /// Whether `member` has been live long enough to take work.
    fn settled(&self, member: &Member, now: Instant) -> bool {
        let Some(me) = self.members.get(self.id) else { return false };
        let live_for = now.saturating_since(member.state_since);
        if member.id == self.id {
            return live_for >= self.config.settle_time;
        }
        // Learned while we were settling ourselves: no history to go by.
        let learned_while_settling = member.state_since < me.state_since + self.config.settle_time;
        learned_while_settling || live_for >= self.settle_time_of(member.id, now)
    }

    /// The settle time, doubled for each recent down.
    pub(super) fn settle_time_of(&self, id: NodeId, now: Instant) -> Duration {
        let recent =
            self.work.downs.get(&id).map_or(0, |downs| {
                downs.iter().filter(|at| now.saturating_since(**at) < self.config.flap_window).count()
            });
        self.config.settle_time.saturating_mul(1 << recent.min(MAX_DOWNS))
    }

    /// Notes that a member went Dead or Left: its replica statuses no longer
    /// hold, and the down counts against its next settle time.
    pub(super) fn note_member_down(&mut self, id: NodeId, now: Instant) {
        self.statuses.forget_node(id, u64::MAX);
        let downs = self.work.downs.entry(id).or_default();
        downs.push_back(now);
        while downs.len() > MAX_DOWNS {
            downs.pop_front();
        }
    }

    /// Applies a status entry from a peer, if its node is live in the same
    /// generation here (anything else is stale, or ahead of what we know
    /// and will come again). This node is the only writer of its own.
    pub(super) fn accept_status(&self, entry: &StatusEntry) -> bool {
        entry.node != self.id
            && self.members.get(entry.node).is_some_and(|m| m.state.is_live() && m.generation == entry.generation)
    }

    /// Queues this node's live status entries for gossip again.
    pub(super) fn republish_statuses(&mut self, now: Instant) {
        let mine: Vec<StatusEntry> = self.statuses.live().filter(|e| e.node == self.id).cloned().collect();
        for entry in mine {
            self.broadcast(now, &Update::Status(entry));
        }
    }

    /// Forgets downs older than the flap window.
    pub(super) fn reap_downs(&mut self, now: Instant) {
        let window = self.config.flap_window;
        self.work.downs.retain(|_, downs| downs.back().is_some_and(|at| now.saturating_since(*at) < window));
    }
}

impl ReplicaStatus {
    fn stopped(self) -> ReplicaStatus {
        ReplicaStatus { state: ReplicaState::Stopped, ..self }
    }
}
