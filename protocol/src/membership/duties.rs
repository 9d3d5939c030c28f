//! What this node should run: the placement its own view gives, who counts
//! as settled, and make-before-break handover.
//!
//! Every node computes the same placement from the same view (the live
//! members, the catalog, and where the status table says replicas run), so
//! no node tells another what to run. Four rules keep work from moving more
//! than it must (ALGORITHM.md sections 13 and 14):
//!
//! - A replica stays on the live member that runs it while that member is
//!   within its cap: placement reads the statuses, so only the replicas of a
//!   member that went Dead or Left, and a joiner's fair share, move.
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
use crate::placement::{self, Candidate, Placement, PlacementConfig, Running, Unplaced};
use crate::status::{ReplicaKey, ReplicaState, ReplicaStatus, StatusEntry};
use crate::table::KeyRange;
use crate::timer::Timer;
use crate::wire::Update;
use crate::{CatalogEntry, Instant, NodeId, WorkloadSpec};

/// Downs remembered per member, for its settle time.
const MAX_DOWNS: usize = 6;

/// Something the workload layer tells its driver. Details are read from
/// [`Membership::plan`], [`Membership::placement`] and
/// [`Membership::replica_statuses`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadEvent {
    /// A workload was submitted or replaced (here or by a peer).
    WorkloadWritten { name: String },
    /// A workload was deleted.
    WorkloadDeleted { name: String },
    /// The placement this node's view gives changed.
    PlacementChanged,
    /// This node should start `replica` (it is now in [`Plan::run`]).
    ReplicaStart { replica: ReplicaKey },
    /// This node should stop `replica` (it is now in [`Plan::stop`]).
    ReplicaStop { replica: ReplicaKey },
    /// `node` reported a new state for `replica`.
    ReplicaStateChanged { node: NodeId, replica: ReplicaKey },
    /// The plan became settled (this node's view has stopped moving), so a
    /// driver may act on what the plan leaves out (leftover replicas).
    PlanSettled,
}

/// Workload events kept for a driver that does not drain them; older ones
/// are dropped first.
const MAX_WORK_EVENTS: usize = 4_096;

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
    /// The last placement and the fingerprint of the view it came from
    /// (members, catalog and where replicas run).
    cached: Option<(u64, Arc<Placement>)>,
    /// The fingerprint of the members and catalog alone, as of the last
    /// computation (see [`Membership::placement_view`]).
    view: u64,
    /// The placement's content changed since the last refresh announced it.
    placement_changed: bool,
    /// The plan as of the last input.
    plan: Plan,
    /// Something the plan depends on changed since it was computed.
    dirty: bool,
    /// The earliest `Timer::Workloads` in the timer heap: one is set only
    /// when the next deadline is earlier, so at most a few are pending.
    armed: Option<Instant>,
    events: VecDeque<WorkloadEvent>,
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
            self.work.dirty = true;
            self.publish_own_status(now, status);
        }
        self.refresh_work(now);
    }

    /// Records and gossips a new status of one of this node's replicas.
    fn publish_own_status(&mut self, now: Instant, status: ReplicaStatus) {
        let held = self.statuses.get(self.id, &status.key()).map(|e| e.status.state);
        if held != Some(status.state) {
            self.emit_work(WorkloadEvent::ReplicaStateChanged { node: self.id, replica: status.key() });
        }
        self.work.status_version += 1;
        let entry =
            StatusEntry { node: self.id, generation: self.generation, version: self.work.status_version, status };
        self.statuses.apply(&entry, now);
        self.broadcast(now, &Update::Status(entry));
    }

    /// Every replica some live node reports (not Stopped), in a stable
    /// order: where each replica runs, and how it is doing.
    pub fn replica_statuses(&self) -> impl Iterator<Item = &StatusEntry> {
        self.statuses.live()
    }

    /// The placement this node's view gives, as of the last input: every
    /// workload's replicas on the live, settled members.
    pub fn placement(&self) -> Arc<Placement> {
        self.work.cached.as_ref().map(|(_, placement)| Arc::clone(placement)).unwrap_or_default()
    }

    /// What this node should run and stop, as of the last input. It is
    /// recomputed after any input that may change it (a member, the
    /// catalog, a replica's status) and when a settle time or a handover
    /// grace runs out (the workload timer), and each change is announced
    /// by [`WorkloadEvent`]s: nobody needs to poll it.
    pub fn plan(&self) -> &Plan {
        &self.work.plan
    }

    /// The next workload event, if any.
    pub fn poll_workload_event(&mut self) -> Option<WorkloadEvent> {
        self.work.events.pop_front()
    }

    pub(super) fn emit_work(&mut self, event: WorkloadEvent) {
        if self.work.events.len() >= MAX_WORK_EVENTS {
            self.work.events.pop_front();
        }
        self.work.events.push_back(event);
    }

    /// Announces a catalog change (merged from a peer or written here).
    pub(super) fn note_catalog_change(&mut self, entry: &CatalogEntry) {
        let name = entry.name.clone();
        let event = if entry.spec.is_some() {
            WorkloadEvent::WorkloadWritten { name }
        } else {
            WorkloadEvent::WorkloadDeleted { name }
        };
        self.emit_work(event);
        self.work.dirty = true;
    }

    /// Notes that something the plan depends on changed.
    pub(super) fn work_changed(&mut self) {
        self.work.dirty = true;
    }

    /// The workload timer fired (`at` is its deadline): tombstones past
    /// their retention are forgotten, and the plan is recomputed.
    pub(super) fn on_work_timer(&mut self, now: Instant, at: Instant) {
        if self.work.armed == Some(at) {
            self.work.armed = None;
        }
        // A timer set for an earlier deadline than is now wanted only costs
        // a recomputation; the refresh arms the next one.
        self.work.dirty = true;
        self.catalog.reap(now, self.config.tombstone_retention);
        self.statuses.reap(now, self.config.status_retention);
    }

    /// Recomputes the plan if anything it depends on changed, announces
    /// what changed, and arms the workload timer for the next moment the
    /// plan may change by itself. Called after every input and command.
    pub(super) fn refresh_work(&mut self, now: Instant) {
        if !self.work.dirty {
            return;
        }
        self.work.dirty = false;
        let idle = self.catalog.table().iter().next().is_none()
            && self.work.plan == Plan::default()
            && !self.statuses.live().any(|e| e.node == self.id);
        if idle {
            return;
        }
        let losing_before: BTreeSet<ReplicaKey> = self.work.losing.keys().cloned().collect();
        let plan = self.compute_plan(now);
        // A replica this node starts handing over says so at once (its new
        // owner starts only a replica no one else runs, or one Releasing),
        // whether or not the driver reports again.
        let released: Vec<ReplicaStatus> = self
            .work
            .losing
            .keys()
            .filter(|key| !losing_before.contains(*key))
            .filter_map(|key| self.statuses.get(self.id, key))
            .filter(|entry| entry.status.state == ReplicaState::Running)
            .map(|entry| ReplicaStatus { state: ReplicaState::Releasing, ..entry.status.clone() })
            .collect();
        for status in released {
            self.publish_own_status(now, status);
        }
        if std::mem::take(&mut self.work.placement_changed) {
            self.emit_work(WorkloadEvent::PlacementChanged);
        }
        let old = std::mem::take(&mut self.work.plan);
        for duty in plan.run.iter().filter(|duty| !old.run.iter().any(|d| d.key() == duty.key())) {
            self.emit_work(WorkloadEvent::ReplicaStart { replica: duty.key() });
        }
        for key in plan.stop.iter().filter(|key| !old.stop.contains(key)) {
            self.emit_work(WorkloadEvent::ReplicaStop { replica: key.clone() });
        }
        if plan.settled && !old.settled {
            self.emit_work(WorkloadEvent::PlanSettled);
        }
        self.work.plan = plan;
        if let Some(at) = self.next_work_deadline(now) {
            if self.work.armed.is_none_or(|armed| at < armed) {
                self.work.armed = Some(at);
                self.timers.set(at, Timer::Workloads { at });
            }
        }
    }

    /// The earliest moment the plan may change with no input: a live
    /// member (this node included) that has not settled settles, a down
    /// leaves the flap window (shortening a settle time), or a handover
    /// grace runs out; or a tombstone is due to be forgotten.
    fn next_work_deadline(&self, now: Instant) -> Option<Instant> {
        let unsettled = self.members.iter().filter(|m| m.state.is_live() && !self.settled(m, now));
        let settles = unsettled.flat_map(|m| {
            let settle = if m.id == self.id { self.config.settle_time } else { self.settle_time_of(m.id, now) };
            let downs = self.work.downs.get(&m.id).into_iter().flatten();
            std::iter::once(m.state_since + settle).chain(downs.map(|at| *at + self.config.flap_window))
        });
        let graces = self.work.losing.values().map(|since| *since + self.config.handover_grace);
        let reaps = [
            self.catalog.table().next_reap(self.config.tombstone_retention),
            self.statuses.table().next_reap(self.config.status_retention),
        ];
        settles.chain(graces).chain(reaps.into_iter().flatten()).filter(|at| *at > now).min()
    }

    /// Placement's parameters, from the config.
    fn placement_config(&self) -> PlacementConfig {
        PlacementConfig {
            epsilon: f64::from(self.config.placement_slack_permille) / 1_000.0,
            tokens_per_core: self.config.placement_tokens_per_core,
        }
    }

    /// The members placement reads: live (Alive or Suspect: suspicion
    /// never moves work), this node unless it is leaving, each marked
    /// settled or not (only settled members are given new work).
    fn candidates(&self, now: Instant) -> Vec<Candidate> {
        self.members
            .iter()
            .filter(|m| m.state.is_live() && !(m.id == self.id && self.leaving))
            .map(|m| Candidate {
                id: m.id,
                capacity: m.meta.capacity,
                labels: m.meta.labels.clone(),
                settled: self.settled(m, now),
            })
            .collect()
    }

    /// Where replicas run, as the status table says: for each replica, the
    /// live members (in the generation they report from) that run a copy,
    /// Running first, then Starting, Failed and Releasing (a copy being
    /// handed over counts only while its new owner has not reported), ties
    /// broken by a hash of replica and node, so every node that holds the
    /// same statuses orders them the same.
    fn running(&self) -> Running {
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
            let live = if entry.node == self.id {
                !self.leaving && entry.generation == self.generation
            } else {
                self.members.get(entry.node).is_some_and(|m| m.state.is_live() && m.generation == entry.generation)
            };
            if !live {
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

    /// A fingerprint of what placement reads besides the statuses: the
    /// live members, which of them have settled, their capacities and
    /// labels, and the catalog. Every node that sees the same members and
    /// catalog has the same one; the simulator compares them to tell when
    /// views have settled.
    pub fn placement_view(&self) -> u64 {
        self.work.view
    }

    /// The placement for the view at `now`, recomputed only when the view
    /// (the live members, the catalog, where replicas run) changed.
    /// Whether it differs from the last one is recorded for the events.
    fn compute_placement(&mut self, now: Instant) -> Arc<Placement> {
        let candidates = self.candidates(now);
        let running = self.running();
        let catalog = self.catalog.table().digest(KeyRange::ROOT);
        let view = candidates.iter().fold(mix64(catalog.hash ^ u64::from(catalog.count)), |acc, c| {
            let labels = c.labels.iter().fold(0, |h, (k, v)| {
                mix64(h ^ crate::stable_hash64(k.as_bytes())) ^ crate::stable_hash64(v.as_bytes())
            });
            mix64(acc ^ c.id.key() ^ u64::from(c.settled))
                ^ mix64(u64::from(c.capacity.cpu_millis) ^ c.capacity.memory_bytes.rotate_left(17) ^ labels)
        });
        self.work.view = view;
        let fingerprint = mix64(view ^ running.fingerprint());
        if let Some((cached, placement)) = &self.work.cached {
            if *cached == fingerprint {
                return Arc::clone(placement);
            }
        }
        let specs: Vec<WorkloadSpec> = self.workloads().cloned().collect();
        let fresh = placement::place(&candidates, &specs, &running, self.placement_config());
        // The same answer from a new view (a status arrived) keeps the old
        // one, and announces nothing.
        let placement = match self.work.cached.take() {
            Some((_, old)) if *old == fresh => old,
            _ => {
                self.work.placement_changed = true;
                Arc::new(fresh)
            }
        };
        self.work.cached = Some((fingerprint, Arc::clone(&placement)));
        placement
    }

    /// What this node should run and stop now.
    fn compute_plan(&mut self, now: Instant) -> Plan {
        let placement = self.compute_placement(now);
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
