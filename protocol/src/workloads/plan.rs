//! From a view to a plan: the members placement reads, where replicas run,
//! who counts as settled, and what this node should run and stop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::{Duty, MAX_DOWNS, Plan, Workloads};
use crate::hash::mix64;
use crate::member::{Member, MemberTable};
use crate::placement::{self, Candidate, Placement, Running};
use crate::status::{ReplicaKey, ReplicaState};
use crate::table::KeyRange;
use crate::{Instant, NodeId, WorkloadSpec};

impl Workloads {
    /// The earliest moment the plan may change with no input: a live
    /// member (this node included) that has not settled settles, a down
    /// leaves the flap window (shortening a settle time), or a handover
    /// grace runs out; or something is due to be forgotten.
    pub(super) fn next_deadline(&self, now: Instant, members: &MemberTable) -> Option<Instant> {
        let unsettled = members.iter().filter(|m| m.state.is_live() && !self.settled(m, now, members));
        let settles = unsettled.flat_map(|m| {
            let settle = if m.id == self.id { self.config.settle_time } else { self.settle_time_of(m.id, now) };
            let downs = self.downs.get(&m.id).into_iter().flatten();
            std::iter::once(m.state_since + settle).chain(downs.map(|at| *at + self.config.flap_window))
        });
        let graces = self.losing.values().map(|since| *since + self.config.handover_grace);
        let plan = settles.chain(graces).filter(|at| *at > now).min();
        // Reaps are never in the past here: `refresh` has just reaped.
        [plan, self.next_reap()].into_iter().flatten().min()
    }

    /// When something is next due to be forgotten: a tombstone, or the
    /// last down of a member leaving the flap window.
    pub(super) fn next_reap(&self) -> Option<Instant> {
        let window = self.config.flap_window;
        let downs = self.downs.values().filter_map(|downs| downs.back()).map(|at| *at + window).min();
        [
            self.catalog.table().next_reap(self.config.tombstone_retention),
            self.statuses.table().next_reap(self.config.status_retention),
            downs,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The members placement reads: live (Alive or Suspect: suspicion
    /// never moves work; a leaving node is Left), each marked settled or
    /// not (only settled members are given new work).
    fn candidates(&self, now: Instant, members: &MemberTable) -> Vec<Candidate> {
        members
            .iter()
            .filter(|m| m.state.is_live())
            .map(|m| Candidate {
                id: m.id,
                capacity: m.meta.capacity,
                labels: m.meta.labels.clone(),
                settled: self.settled(m, now, members),
            })
            .collect()
    }

    /// Where replicas run, as the status table says: for each replica, the
    /// live members (in the generation they report from) that run a copy,
    /// Running first, then Starting, Failed and Releasing (a copy being
    /// handed over counts only while its new owner has not reported), ties
    /// broken by a hash of replica and node, so every node that holds the
    /// same statuses orders them the same.
    fn running(&self, members: &MemberTable) -> Running {
        // Per replica: (rank, tie-break, node) of each copy.
        type Copies = Vec<(u8, u64, NodeId)>;
        let mut copies: BTreeMap<(&str, u16), Copies> = BTreeMap::new();
        for entry in self.statuses.live() {
            let rank = match entry.status.state {
                ReplicaState::Running => 0,
                ReplicaState::Starting => 1,
                ReplicaState::Failed => 2,
                ReplicaState::Releasing => 3,
                ReplicaState::Stopped => continue,
            };
            if !members.get(entry.node).is_some_and(|m| m.state.is_live() && m.generation == entry.generation) {
                continue;
            }
            let status = &entry.status;
            let tie = mix64(entry.node.key() ^ crate::stable_hash64(status.workload.as_bytes()))
                ^ mix64(u64::from(status.replica));
            copies.entry((status.workload.as_str(), status.replica)).or_default().push((rank, tie, entry.node));
        }
        let mut running = Running::new();
        for ((workload, replica), mut nodes) in copies {
            nodes.sort_unstable();
            for (_, _, node) in nodes {
                running.add(workload, usize::from(replica), node);
            }
        }
        running
    }

    /// The placement for the view at `now`, recomputed only when the view
    /// (the live members, the catalog, where replicas run) changed.
    /// Whether it differs from the last one is recorded for the events.
    fn compute_placement(&mut self, now: Instant, members: &MemberTable) -> Arc<Placement> {
        let candidates = self.candidates(now, members);
        let running = self.running(members);
        let catalog = self.catalog.table().digest(KeyRange::ROOT);
        let view = candidates.iter().fold(mix64(catalog.hash ^ u64::from(catalog.count)), |acc, c| {
            let labels = c.labels.iter().fold(0, |h, (k, v)| {
                mix64(h ^ crate::stable_hash64(k.as_bytes())) ^ crate::stable_hash64(v.as_bytes())
            });
            mix64(acc ^ c.id.key() ^ u64::from(c.settled))
                ^ mix64(u64::from(c.capacity.cpu_millis) ^ c.capacity.memory_bytes.rotate_left(17) ^ labels)
        });
        self.view = view;
        let fingerprint = mix64(view ^ running.fingerprint());
        if let Some((cached, placement)) = &self.cached {
            if *cached == fingerprint {
                return Arc::clone(placement);
            }
        }
        let specs: Vec<WorkloadSpec> = self.specs().cloned().collect();
        let fresh = placement::place(&candidates, &specs, &running, self.config.placement());
        // The same answer from a new view (a status arrived) keeps the old
        // one, and announces nothing.
        let placement = match self.cached.take() {
            Some((_, old)) if *old == fresh => old,
            _ => {
                self.placement_changed = true;
                Arc::new(fresh)
            }
        };
        self.cached = Some((fingerprint, Arc::clone(&placement)));
        placement
    }

    /// What this node should run and stop now.
    pub(super) fn compute_plan(&mut self, now: Instant, members: &MemberTable) -> Plan {
        let placement = self.compute_placement(now, members);
        let settled = members.get(self.id).is_some_and(|me| me.state.is_live() && self.settled(me, now, members));
        let owned: BTreeSet<ReplicaKey> = placement
            .on_node(self.id)
            .filter_map(|(name, replica)| Some(ReplicaKey::new(name, u16::try_from(replica).ok()?)))
            .collect();
        let held_elsewhere = if owned.is_empty() { BTreeSet::new() } else { self.held_elsewhere(members) };
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
        self.losing.retain(|key, _| running.contains(key));
        let mut stop = Vec::new();
        for key in running {
            let live_spec = self.catalog.spec(&key.workload);
            if live_spec.is_none_or(|spec| u32::from(key.replica) >= spec.replicas) {
                stop.push(key);
                continue;
            }
            let since = *self.losing.entry(key.clone()).or_insert(now);
            let handed_over = placement
                .owner(&key.workload, usize::from(key.replica))
                .is_some_and(|owner| self.runs(owner, &key, members));
            if handed_over || now.saturating_since(since) >= self.config.handover_grace {
                stop.push(key);
            }
        }
        let plan = Plan { run, stop, unplaced: placement.unplaced.clone(), settled };
        // What the simulator relies on, checked where it is made: a plan
        // starts only what this node owns in its placement, and never both
        // runs and stops a replica.
        debug_assert!(
            plan.run.iter().all(|duty| placement.owner(&duty.workload, usize::from(duty.replica)) == Some(self.id)),
            "a plan starts a replica this node does not own: {plan:?}"
        );
        debug_assert!(
            plan.run.iter().all(|duty| !plan.stop.contains(&duty.key())),
            "a plan both runs and stops a replica: {plan:?}"
        );
        plan
    }

    /// The replicas another live member runs other than to release them. A
    /// node starts a replica it owns only if it runs it already or it is not
    /// in this set: while views disagree (say, about whether a member has
    /// settled), the member that has the replica keeps it, rather than both
    /// running it. One pass over the statuses per plan, not per replica.
    fn held_elsewhere<'a>(&'a self, members: &MemberTable) -> BTreeSet<(&'a str, u16)> {
        self.statuses
            .live()
            .filter(|e| {
                e.node != self.id
                    && matches!(e.status.state, ReplicaState::Starting | ReplicaState::Running)
                    && members.get(e.node).is_some_and(|m| m.state.is_live() && m.generation == e.generation)
            })
            .map(|e| (e.status.workload.as_str(), e.status.replica))
            .collect()
    }

    /// Whether this node reports `replica` (in any state but Stopped).
    fn reports(&self, replica: &ReplicaKey) -> bool {
        self.statuses.get(self.id, replica).is_some_and(|e| e.status.state != ReplicaState::Stopped)
    }

    /// Whether `node`, in its current generation, reports `replica` running.
    fn runs(&self, node: NodeId, replica: &ReplicaKey, members: &MemberTable) -> bool {
        let Some(member) = members.get(node) else { return false };
        self.statuses
            .get(node, replica)
            .is_some_and(|e| e.generation == member.generation && e.status.state == ReplicaState::Running)
    }

    /// Whether `member` has been live long enough to take work.
    fn settled(&self, member: &Member, now: Instant, members: &MemberTable) -> bool {
        let Some(me) = members.get(self.id) else { return false };
        let live_for = now.saturating_since(member.state_since);
        if member.id == self.id {
            return live_for >= self.config.settle_time;
        }
        // Learned while we were settling ourselves: no history to go by.
        let learned_while_settling = member.state_since < me.state_since + self.config.settle_time;
        learned_while_settling || live_for >= self.settle_time_of(member.id, now)
    }

    /// The settle time, doubled for each recent down.
    pub(crate) fn settle_time_of(&self, id: NodeId, now: Instant) -> Duration {
        let recent = self
            .downs
            .get(&id)
            .map_or(0, |downs| downs.iter().filter(|at| now.saturating_since(**at) < self.config.flap_window).count());
        self.config.settle_time.saturating_mul(1 << recent.min(MAX_DOWNS))
    }
}
