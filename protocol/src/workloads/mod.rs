//! The workload layer: the replicated catalog, every node's replica
//! statuses, the placement this node's view gives, and the plan (what this
//! node should run and stop), driven from outside like the membership layer
//! below it.
//!
//! [`Workloads`] has the quinn shape: getters; commands ([`Workloads::submit`],
//! [`Workloads::delete`], [`Workloads::report_replicas`]); `handle_*` for
//! inputs (a fact from a peer, the membership layer's events, time passed);
//! and `poll_*` for outputs (events for the driver, facts to gossip, the
//! next deadline). It never sends a byte: the membership layer carries its
//! facts (gossip and anti-entropy), and [`crate::Node`] joins the two.
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

mod config;
mod plan;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use tracing::debug;

pub use config::WorkloadConfig;

use crate::catalog::{Catalog, CatalogEntry};
use crate::member::MemberTable;
use crate::membership::{Replicated, Synced};
use crate::placement::{Placement, Unplaced};
use crate::status::{ReplicaKey, ReplicaState, ReplicaStatus, StatusEntry, StatusTable};
use crate::table::Applied;
use crate::wire::Update;
use crate::{Event, Instant, NodeId, SpecError, WorkloadSpec};

/// Downs remembered per member, for its settle time.
const MAX_DOWNS: usize = 6;

/// Workload events kept for a driver that does not drain them; older ones
/// are dropped first.
const MAX_EVENTS: usize = 4_096;

/// Something the workload layer tells its driver. Details are read from
/// [`Workloads::plan`], [`Workloads::placement`] and
/// [`Workloads::replica_statuses`].
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

/// What this node should do now (from [`Workloads::plan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Replicas this node owns: start any that are not running, and keep
    /// those that are (restarting per the spec's policy).
    pub run: Vec<Duty>,
    /// Replicas this node reports but should stop now: the workload was
    /// deleted or shrunk, or another node took the replica over and reports
    /// it running, or the handover grace ran out. Replicas in neither list
    /// are being handed over: keep them.
    pub stop: Vec<ReplicaKey>,
    /// Workloads with replicas no node could take, and why.
    pub unplaced: BTreeMap<String, Unplaced>,
    /// Whether this node takes work yet (it does after its settle time).
    pub settled: bool,
}

/// One node's workload layer.
#[derive(Debug)]
pub struct Workloads {
    config: WorkloadConfig,
    id: NodeId,
    generation: u64,
    catalog: Catalog,
    /// Every node's reported replica statuses, this node's included.
    statuses: StatusTable,
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
    /// computation (see [`Workloads::placement_view`]).
    view: u64,
    /// The placement's content changed since the last refresh announced it.
    placement_changed: bool,
    /// The plan as of the last input.
    plan: Plan,
    /// Something the plan depends on changed since it was computed.
    dirty: bool,
    /// The next moment the plan may change with no input (a settle time or
    /// a handover grace runs out, a tombstone is due to be forgotten).
    deadline: Option<Instant>,
    events: VecDeque<WorkloadEvent>,
    /// Facts written or learned here that the membership layer should gossip.
    outbox: VecDeque<Update>,
}

impl Workloads {
    /// The workload layer of node `id` in run `generation`: it knows no
    /// workload yet.
    pub(crate) fn new(config: WorkloadConfig, id: NodeId, generation: u64) -> Result<Workloads, crate::ConfigError> {
        Ok(Workloads {
            config: config.validate()?,
            id,
            generation,
            catalog: Catalog::default(),
            statuses: StatusTable::default(),
            status_version: 0,
            downs: BTreeMap::new(),
            losing: BTreeMap::new(),
            cached: None,
            view: 0,
            placement_changed: false,
            plan: Plan::default(),
            dirty: false,
            deadline: None,
            events: VecDeque::new(),
            outbox: VecDeque::new(),
        })
    }

    // ---- getters ----

    /// The configuration in force.
    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// The live workloads, in a stable order.
    pub fn specs(&self) -> impl Iterator<Item = &WorkloadSpec> {
        self.catalog.table().live().filter_map(|e| e.spec.as_deref())
    }

    /// Every catalog entry, tombstones included: what the node persists.
    pub fn catalog_entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.catalog.table().iter()
    }

    /// Every replica some live node reports (not Stopped), in a stable
    /// order: where each replica runs, and how it is doing.
    pub fn replica_statuses(&self) -> impl Iterator<Item = &StatusEntry> {
        self.statuses.live()
    }

    /// The placement this node's view gives, as of the last input: every
    /// workload's replicas on the live, settled members.
    pub fn placement(&self) -> Arc<Placement> {
        self.cached.as_ref().map(|(_, placement)| Arc::clone(placement)).unwrap_or_default()
    }

    /// What this node should run and stop, as of the last input. It is
    /// recomputed after any input that may change it (a member, the
    /// catalog, a replica's status) and when a settle time or a handover
    /// grace runs out (its deadline, in [`crate::Node::poll_timeout`]), and each change is
    /// announced by [`WorkloadEvent`]s: nobody needs to poll it.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// A fingerprint of what placement reads besides the statuses: the
    /// live members, which of them have settled, their capacities and
    /// labels, and the catalog. Every node that sees the same members and
    /// catalog has the same one; the simulator compares them to tell when
    /// views have settled.
    pub fn placement_view(&self) -> u64 {
        self.view
    }

    // ---- commands ----

    /// Adds or replaces a workload in the replicated catalog. Refused, with
    /// the field and the reason, if the spec is invalid; nothing changes then.
    pub(crate) fn submit(
        &mut self,
        now: Instant,
        spec: WorkloadSpec,
        members: &MemberTable,
    ) -> Result<CatalogEntry, SpecError> {
        spec.validate()?;
        let entry = self.catalog.write(spec.name.clone(), Some(Arc::new(spec)), self.id, now);
        self.outbox.push_back(Update::Workload(entry.clone()));
        self.note_catalog_change(&entry);
        self.refresh(now, members);
        Ok(entry)
    }

    /// Deletes a workload (a tombstone that spreads like any write). Returns
    /// the tombstone, or `None` if no such workload is live here.
    pub(crate) fn delete(&mut self, now: Instant, name: &str, members: &MemberTable) -> Option<CatalogEntry> {
        self.catalog.get(name).filter(|e| e.spec.is_some())?;
        let entry = self.catalog.write(name.to_string(), None, self.id, now);
        self.outbox.push_back(Update::Workload(entry.clone()));
        self.note_catalog_change(&entry);
        self.refresh(now, members);
        Some(entry)
    }

    /// Loads catalog entries persisted by an earlier run (the node calls this
    /// at start, before joining). Later entries from peers still win.
    pub(crate) fn restore_catalog(
        &mut self,
        now: Instant,
        entries: impl IntoIterator<Item = CatalogEntry>,
        members: &MemberTable,
    ) {
        for entry in entries {
            if matches!(self.catalog.apply(&entry, now), Applied::New | Applied::Changed) {
                self.note_catalog_change(&entry);
            }
        }
        self.refresh(now, members);
    }

    /// Replaces this node's report of the replicas it supervises (the
    /// driver's whole current set). Changed entries are gossiped; replicas
    /// missing from `replicas` are reported Stopped.
    pub(crate) fn report_replicas(
        &mut self,
        now: Instant,
        replicas: impl IntoIterator<Item = ReplicaStatus>,
        members: &MemberTable,
    ) {
        let mut reported: BTreeMap<ReplicaKey, ReplicaStatus> = BTreeMap::new();
        for mut status in replicas {
            let key = status.key();
            // A replica being handed over says so, so its new owner starts it.
            if self.losing.contains_key(&key) && status.state == ReplicaState::Running {
                status.state = ReplicaState::Releasing;
            }
            reported.insert(key, status.bounded());
        }
        let mut changed: Vec<ReplicaStatus> = Vec::new();
        for held in self.statuses.live().filter(|e| e.node == self.id) {
            if !reported.contains_key(&held.status.key()) {
                changed.push(ReplicaStatus {
                    detail: String::new(),
                    state: ReplicaState::Stopped,
                    ..held.status.clone()
                });
            }
        }
        for (key, status) in reported {
            let held = self.statuses.get(self.id, &key).map(|e| &e.status);
            if held != Some(&status) {
                changed.push(status);
            }
        }
        for status in changed {
            self.dirty = true;
            self.publish_own_status(now, status);
        }
        self.refresh(now, members);
    }

    // ---- inputs ----

    /// The membership layer's events from one of its inputs, in order
    /// (`members` is its table after them): a member that went Dead or
    /// Left runs nothing it reported, and its down counts against its next
    /// settle time; a member that restarted runs nothing of its last run;
    /// this node, declared gone and back, tells its replicas again.
    pub(crate) fn handle_member_events(&mut self, now: Instant, events: &[Event], members: &MemberTable) {
        for event in events {
            match *event {
                Event::MemberUp { id } => {
                    if let Some(member) = members.get(id) {
                        self.statuses.forget_node(id, member.generation);
                    }
                }
                Event::MemberDown { id } | Event::MemberLeft { id } => self.note_member_down(id, now, members),
                Event::SelfRefuted { declared_gone: true, .. } => self.republish_statuses(),
                Event::MemberSuspect { .. }
                | Event::MemberAlive { .. }
                | Event::MetadataChanged { .. }
                | Event::SelfRefuted { .. } => {}
            }
        }
        if !events.is_empty() {
            self.dirty = true;
        }
        self.refresh(now, members);
    }

    /// This node's own entry changed (it joined, left or published new
    /// metadata), or members were preloaded: the plan may change.
    pub(crate) fn handle_own_change(&mut self, now: Instant, members: &MemberTable) {
        self.dirty = true;
        self.refresh(now, members);
    }

    /// Acts on the deadline, if due: the plan is recomputed (and tombstones
    /// past their retention forgotten). Calling it early is harmless.
    pub(crate) fn handle_timeout(&mut self, now: Instant, members: &MemberTable) {
        if self.deadline.is_none_or(|at| at > now) {
            return;
        }
        self.deadline = None;
        self.dirty = true;
        self.refresh(now, members);
    }

    // ---- outputs ----

    /// The next workload event, if any.
    pub(crate) fn poll_event(&mut self) -> Option<WorkloadEvent> {
        self.events.pop_front()
    }

    /// The next fact this layer wants gossiped, if any (the membership
    /// layer takes them: [`crate::Node`] moves them after every call).
    pub(crate) fn poll_update(&mut self) -> Option<Update> {
        self.outbox.pop_front()
    }

    /// When [`Workloads::handle_timeout`] should next be called.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    // ---- helpers ----

    fn emit(&mut self, event: WorkloadEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Announces a catalog change (merged from a peer or written here).
    fn note_catalog_change(&mut self, entry: &CatalogEntry) {
        let name = entry.name.clone();
        let event = if entry.spec.is_some() {
            WorkloadEvent::WorkloadWritten { name }
        } else {
            WorkloadEvent::WorkloadDeleted { name }
        };
        self.emit(event);
        self.dirty = true;
    }

    /// Records and gossips a new status of one of this node's replicas.
    fn publish_own_status(&mut self, now: Instant, status: ReplicaStatus) {
        let held = self.statuses.get(self.id, &status.key()).map(|e| e.status.state);
        if held != Some(status.state) {
            self.emit(WorkloadEvent::ReplicaStateChanged { node: self.id, replica: status.key() });
        }
        self.status_version += 1;
        let entry = StatusEntry { node: self.id, generation: self.generation, version: self.status_version, status };
        self.statuses.apply(&entry, now);
        self.outbox.push_back(Update::Status(entry));
    }

    /// Queues this node's live status entries for gossip again.
    fn republish_statuses(&mut self) {
        let mine: Vec<StatusEntry> = self.statuses.live().filter(|e| e.node == self.id).cloned().collect();
        self.outbox.extend(mine.into_iter().map(Update::Status));
    }

    /// A member went Dead or Left: what it reported no longer holds (unless
    /// it is already back, in a newer run, later in the same input), and
    /// the down counts against its next settle time (once per down).
    fn note_member_down(&mut self, id: NodeId, now: Instant, members: &MemberTable) {
        let member = members.get(id);
        let back_in = member.filter(|m| m.state.is_live()).map_or(u64::MAX, |m| m.generation);
        self.statuses.forget_node(id, back_in);
        // When it went from live to gone: a gone member's later facts (Dead
        // at a higher incarnation, Left after Dead) are the same down, and
        // count once.
        let went = member.filter(|m| !m.state.is_live()).map_or(now, |m| m.state_since);
        let downs = self.downs.entry(id).or_default();
        if downs.back() == Some(&went) {
            return;
        }
        downs.push_back(went);
        while downs.len() > MAX_DOWNS {
            downs.pop_front();
        }
    }

    /// A catalog entry from a peer: the later stamp wins. Changes spread
    /// on, except first sightings learned by anti-entropy (a joiner's whole
    /// catalog).
    fn merge_catalog_entry(&mut self, now: Instant, entry: &CatalogEntry, from_sync: bool) -> Applied {
        let applied = self.catalog.apply(entry, now);
        if matches!(applied, Applied::New | Applied::Changed) {
            debug!(workload = %entry.name, deleted = entry.spec.is_none(), "catalog entry changed");
            self.note_catalog_change(entry);
            if !from_sync || applied == Applied::Changed {
                self.outbox.push_back(Update::Workload(entry.clone()));
            }
        }
        applied
    }

    /// A replica status from a peer: the greater version wins, if its node
    /// is live in the same generation here (anything else is stale, or
    /// ahead of what we know and will come again); this node is the only
    /// writer of its own. Like catalog entries, first sightings learned by
    /// anti-entropy do not spread on.
    fn merge_status_entry(
        &mut self,
        now: Instant,
        entry: &StatusEntry,
        from_sync: bool,
        members: &MemberTable,
    ) -> Applied {
        let accepted = entry.node != self.id
            && members.get(entry.node).is_some_and(|m| m.state.is_live() && m.generation == entry.generation);
        if !accepted {
            return Applied::Ignored;
        }
        let held = self.statuses.get(entry.node, &entry.status.key()).map(|e| e.status.state);
        let applied = self.statuses.apply(entry, now);
        if matches!(applied, Applied::New | Applied::Changed) {
            self.dirty = true;
            if held != Some(entry.status.state) {
                self.emit(WorkloadEvent::ReplicaStateChanged { node: entry.node, replica: entry.status.key() });
            }
            if !from_sync {
                self.outbox.push_back(Update::Status(entry.clone()));
            }
        }
        applied
    }

    /// Forgets what is past its retention: tombstones of the catalog and the
    /// statuses, and downs older than the flap window. Done on every
    /// refresh (each input that changed something), and the next one is
    /// part of the deadline, so it never waits for an input that may not
    /// come.
    fn reap(&mut self, now: Instant) {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        if due(self.catalog.table().next_reap(self.config.tombstone_retention)) {
            self.catalog.reap(now, self.config.tombstone_retention);
        }
        if due(self.statuses.table().next_reap(self.config.status_retention)) {
            self.statuses.reap(now, self.config.status_retention);
        }
        let window = self.config.flap_window;
        self.downs.retain(|_, downs| downs.back().is_some_and(|at| now.saturating_since(*at) < window));
    }

    /// Recomputes the plan if anything it depends on changed, announces
    /// what changed, and sets the deadline for the next moment the plan may
    /// change by itself. Called after every input and command.
    fn refresh(&mut self, now: Instant, members: &MemberTable) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.reap(now);
        let idle = self.catalog.table().iter().next().is_none()
            && self.plan == Plan::default()
            && !self.statuses.live().any(|e| e.node == self.id);
        if idle {
            self.deadline = self.next_reap();
            return;
        }
        let losing_before: BTreeSet<ReplicaKey> = self.losing.keys().cloned().collect();
        let plan = self.compute_plan(now, members);
        // A replica this node starts handing over says so at once (its new
        // owner starts only a replica no one else runs, or one Releasing),
        // whether or not the driver reports again.
        let released: Vec<ReplicaStatus> = self
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
        if std::mem::take(&mut self.placement_changed) {
            self.emit(WorkloadEvent::PlacementChanged);
        }
        let old = std::mem::take(&mut self.plan);
        for duty in plan.run.iter().filter(|duty| !old.run.iter().any(|d| d.key() == duty.key())) {
            self.emit(WorkloadEvent::ReplicaStart { replica: duty.key() });
        }
        for key in plan.stop.iter().filter(|key| !old.stop.contains(key)) {
            self.emit(WorkloadEvent::ReplicaStop { replica: key.clone() });
        }
        if plan.settled && !old.settled {
            self.emit(WorkloadEvent::PlanSettled);
        }
        self.plan = plan;
        self.deadline = self.next_deadline(now, members);
    }
}

/// The membership layer carries the catalog and the statuses: it gossips
/// this layer's facts and reconciles its tables in the same anti-entropy
/// exchanges as the members.
impl Replicated for Workloads {
    fn synced(&self) -> [&dyn Synced; 2] {
        [self.catalog.table(), self.statuses.table()]
    }

    fn handle_update(&mut self, now: Instant, update: &Update, from_sync: bool, members: &MemberTable) -> Applied {
        match update {
            Update::Workload(entry) => self.merge_catalog_entry(now, entry, from_sync),
            Update::Status(entry) => self.merge_status_entry(now, entry, from_sync, members),
            _ => Applied::Ignored,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod unit_tests;
