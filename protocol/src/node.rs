//! One node of the mesh: the membership layer and the workload layer above
//! it, driven as one state machine.
//!
//! The two layers talk only here, and only in one direction each way: the
//! workload layer hears the membership layer's events and reads its member
//! table; the membership layer carries the workload layer's facts (gossip)
//! and tables (anti-entropy). After every input or command the driver
//! drains [`Node::poll_transmit`], [`Node::poll_event`] and
//! [`Node::poll_workload_event`], then sleeps until [`Node::poll_timeout`]
//! and calls [`Node::handle_timeout`]. Nothing needs to be polled on a
//! period.

use std::collections::VecDeque;

use crate::membership::{Error, Event, Identity, Membership, Transmit};
use crate::workloads::{WorkloadConfig, WorkloadEvent, Workloads};
use crate::{
    Address, CatalogEntry, Config, Instant, Metadata, MetadataCache, MetadataError, Peer, ReplicaStatus, SpecError,
    WorkloadSpec,
};

/// One node's protocol: membership, and the workloads it carries.
#[derive(Debug)]
pub struct Node {
    membership: Membership,
    workloads: Workloads,
    /// Membership events already shown to the workload layer, for the driver.
    events: VecDeque<Event>,
}

impl Node {
    /// A node that knows only itself, with its timers starting at `now`.
    /// Every random choice it makes comes from `seed`.
    pub fn new(
        config: Config,
        workload_config: WorkloadConfig,
        identity: Identity,
        seed: u64,
        now: Instant,
    ) -> Result<Node, Error> {
        let workloads = Workloads::new(workload_config, identity.id, identity.generation)?;
        let membership = Membership::new(config, identity, seed, now)?;
        Ok(Node { membership, workloads, events: VecDeque::new() })
    }

    // ---- getters ----

    /// The membership layer: members, counters, configuration.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The workload layer: catalog, statuses, placement and plan.
    pub fn workloads(&self) -> &Workloads {
        &self.workloads
    }

    // ---- membership commands ----

    /// Contacts `seeds` with a push-pull exchange, and remembers them: they are
    /// retried whenever no live member has their address, so a node that was
    /// cut off finds its way back.
    pub fn join(&mut self, now: Instant, seeds: impl IntoIterator<Item = Address>) {
        self.membership.join(now, seeds, &self.workloads);
        self.workloads.handle_own_change(now, self.membership.member_table());
        self.after_input(now);
    }

    /// Leaves gracefully: peers will see this node as Left, not Dead. The node
    /// stops probing; it keeps gossiping until its leave has been sent.
    pub fn leave(&mut self, now: Instant) {
        self.membership.leave(now);
        self.workloads.handle_own_change(now, self.membership.member_table());
        self.after_input(now);
    }

    /// Publishes new metadata (it spreads like any update).
    pub fn set_metadata(&mut self, now: Instant, meta: Metadata) -> Result<(), MetadataError> {
        self.membership.set_metadata(now, meta)?;
        self.workloads.handle_own_change(now, self.membership.member_table());
        self.after_input(now);
        Ok(())
    }

    /// Starts from a known membership (see `Membership::preload`): every
    /// peer not already known becomes an Alive member at once, with no
    /// gossip and no events. Returns how many members were added.
    pub fn preload(&mut self, now: Instant, peers: &[Peer]) -> usize {
        let added = self.membership.preload(now, peers);
        if added > 0 {
            self.workloads.handle_own_change(now, self.membership.member_table());
            self.after_input(now);
        }
        added
    }

    /// Drops the pending gossip of this node's own Alive fact: the caller
    /// asserts every peer already knows this node at its current generation
    /// and incarnation (a mesh built formed, as the simulator's `formed`
    /// bootstrap does).
    pub fn assume_announced(&mut self) {
        self.membership.assume_announced();
    }

    /// Shares decoded metadata with other instances in this process (see
    /// [`MetadataCache`]); it changes nothing this node does.
    pub fn share_metadata(&mut self, cache: MetadataCache) {
        self.membership.share_metadata(cache);
    }

    /// Breaks this node on purpose (see [`crate::Bug`]). Test builds only.
    #[cfg(feature = "bug-injection")]
    pub fn inject_bug(&mut self, bug: crate::Bug) {
        self.membership.inject_bug(bug);
    }

    // ---- workload commands ----

    /// Adds or replaces a workload in the replicated catalog. Refused, with
    /// the field and the reason, if the spec is invalid; nothing changes then.
    pub fn submit(&mut self, now: Instant, spec: WorkloadSpec) -> Result<CatalogEntry, SpecError> {
        let entry = self.workloads.submit(now, spec, self.membership.member_table())?;
        self.after_input(now);
        Ok(entry)
    }

    /// Deletes a workload (a tombstone that spreads like any write). Returns
    /// the tombstone, or `None` if no such workload is live here.
    pub fn delete_workload(&mut self, now: Instant, name: &str) -> Option<CatalogEntry> {
        let entry = self.workloads.delete(now, name, self.membership.member_table())?;
        self.after_input(now);
        Some(entry)
    }

    /// Loads catalog entries persisted by an earlier run (the node calls this
    /// at start, before joining). Later entries from peers still win.
    pub fn restore_catalog(&mut self, now: Instant, entries: impl IntoIterator<Item = CatalogEntry>) {
        self.workloads.restore_catalog(now, entries, self.membership.member_table());
        self.after_input(now);
    }

    /// Replaces this node's report of the replicas it supervises (the
    /// driver's whole current set). Changed entries are gossiped; replicas
    /// missing from `replicas` are reported Stopped.
    pub fn report_replicas(&mut self, now: Instant, replicas: impl IntoIterator<Item = ReplicaStatus>) {
        self.workloads.report_replicas(now, replicas, self.membership.member_table());
        self.after_input(now);
    }

    // ---- inputs ----

    /// Handles one message that arrived from transport address `from`.
    /// Undecodable messages are dropped and counted; nothing else changes.
    pub fn handle_message(&mut self, now: Instant, from: &Address, bytes: &[u8]) {
        self.membership.handle_message(now, from, bytes, &mut self.workloads);
        self.after_input(now);
    }

    /// The transport learned that nothing listens at `addr` (an ICMP "port
    /// unreachable"): an unanswered probe of the member there ends at once,
    /// as failed. Harmless for any other address.
    pub fn handle_unreachable(&mut self, now: Instant, addr: &Address) {
        self.membership.handle_unreachable(now, addr);
        self.after_input(now);
    }

    /// Acts on every timer of either layer due at `now`. Calling it early or
    /// twice is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.membership.handle_timeout(now, &self.workloads);
        self.after_input(now);
        self.workloads.handle_timeout(now, self.membership.member_table());
        self.after_input(now);
    }

    // ---- outputs ----

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.membership.poll_transmit()
    }

    /// The next membership event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next workload event, if any.
    pub fn poll_workload_event(&mut self) -> Option<WorkloadEvent> {
        self.workloads.poll_event()
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.membership.poll_timeout(), self.workloads.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- the seam ----

    /// Shows the membership layer's new events to the workload layer (which
    /// then plans again if anything it reads changed), then hands the workload layer's new facts to the membership layer to
    /// gossip.
    fn after_input(&mut self, now: Instant) {
        let first_new = self.events.len();
        while let Some(event) = self.membership.poll_event() {
            self.events.push_back(event);
        }
        // Also when there is no new event: the input may have brought the
        // workload layer facts (a message) that it has yet to plan from.
        let new: Vec<Event> = self.events.range(first_new..).copied().collect();
        self.workloads.handle_member_events(now, &new, self.membership.member_table());
        while let Some(update) = self.workloads.poll_update() {
            self.membership.disseminate(now, &update);
        }
    }
}
