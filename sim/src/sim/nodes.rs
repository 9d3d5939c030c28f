//! Node lifecycle: start, crash, restart, timers and message delivery, and
//! draining each node's transmits and events after every input.

// Node indexes fit u32 (at most MAX_NODES); times in f64 seconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use shoal_protocol::{Event, Instant, NodeId};

use crate::impls::Boot;
use crate::scenario::Bootstrap;
use crate::trace::{self, Kind};

use super::{Action, BACKLOG_LIMIT, Simulation};

fn event_subject(event: &Event) -> Option<NodeId> {
    match *event {
        Event::MemberUp { id }
        | Event::MemberSuspect { id }
        | Event::MemberAlive { id }
        | Event::MemberDown { id }
        | Event::MemberLeft { id }
        | Event::MetadataChanged { id } => Some(id),
        Event::SelfRefuted { .. } => None,
    }
}

fn event_name(event: &Event) -> (&'static str, u64) {
    match event {
        Event::MemberUp { .. } => ("MemberUp", 1),
        Event::MemberSuspect { .. } => ("MemberSuspect", 2),
        Event::MemberAlive { .. } => ("MemberAlive", 3),
        Event::MemberDown { .. } => ("MemberDown", 4),
        Event::MemberLeft { .. } => ("MemberLeft", 5),
        Event::MetadataChanged { .. } => ("MetadataChanged", 6),
        Event::SelfRefuted { .. } => ("SelfRefuted", 7),
    }
}

impl Simulation {
    pub(super) fn start(&mut self, i: usize) {
        let seeds: Vec<usize> = match self.scenario.bootstrap {
            _ if i == 0 => Vec::new(),
            Bootstrap::Formed => Vec::new(),
            Bootstrap::OneSeed { .. } => vec![0],
            Bootstrap::Staggered { .. } => {
                let running: Vec<usize> =
                    self.started.iter().copied().filter(|&s| self.world.nodes[s].running()).collect();
                if running.is_empty() { vec![0] } else { vec![running[self.rng.random_range(0..running.len())]] }
            }
        };
        self.started.push(i);
        // Only a node's first run starts formed; a restart joins.
        let formed = self.scenario.bootstrap == Bootstrap::Formed && self.world.nodes[i].generation == 0;
        self.boot(i, &seeds, formed);
    }

    /// Starts a fresh process on node `i` (new generation) joining via
    /// `seeds`, or knowing the whole mesh if `formed`.
    pub(super) fn boot(&mut self, i: usize, seeds: &[usize], formed: bool) {
        let now = self.world.now;
        let protocol_seed = self.rng.next_u64();
        let slot = &mut self.world.nodes[i];
        slot.generation += 1;
        slot.epoch += 1;
        slot.wake_at = u64::MAX;
        slot.paused = false;
        slot.wake_pending = false;
        slot.backlog.clear();
        let local = Instant::from_micros(slot.clock.local(now));
        let generation = slot.generation;
        let span = tracing::debug_span!("node", node = i);
        let _entered = span.enter();
        let boot = Boot {
            index: i,
            generation,
            seed: protocol_seed,
            now: local,
            addr: &self.addrs[i],
            seeds: seeds.iter().map(|&s| self.addrs[s].clone()).collect(),
            formed: self.formed.as_deref().filter(|_| formed),
        };
        let node = match self.imp.boot(boot) {
            Ok(node) => node,
            Err(error) => {
                // Validated up front; a refusal here is a simulator bug.
                tracing::error!(%error, "node refused to start");
                return;
            }
        };
        drop(_entered);
        let slot = &mut self.world.nodes[i];
        slot.node = Some(node);
        slot.up_since = Some(now);
        self.world.running += 1;
        self.trace.fold(Kind::Start, now, i as u64, generation, 0);
        self.trace.write_start(now, i, generation);
        for check in &mut self.checks {
            check.on_start(&self.world, i);
        }
        self.after_input(i);
    }

    pub(super) fn crash(&mut self, i: usize) {
        if !self.world.nodes[i].running() {
            return;
        }
        for check in &mut self.checks {
            check.on_crash(&self.world, i);
        }
        let now = self.world.now;
        // What a restart that keeps state would rejoin through.
        let rejoin_via = self.world.nodes[i]
            .node
            .as_ref()
            .map(|node| {
                node.members()
                    .filter(|m| m.state.is_live())
                    .filter_map(|m| self.world.index_of(m.id))
                    .filter(|&p| p != i)
                    .take(64)
                    .collect()
            })
            .unwrap_or_default();
        let slot = &mut self.world.nodes[i];
        slot.rejoin_via = rejoin_via;
        slot.node = None;
        slot.epoch += 1;
        slot.wake_at = u64::MAX;
        slot.paused = false;
        slot.wake_pending = false;
        slot.backlog.clear();
        if let Some(since) = slot.up_since.take() {
            slot.up_micros += now - since;
        }
        self.world.running -= 1;
    }

    pub(super) fn restart(&mut self, i: usize, keep_state: bool) {
        if self.world.nodes[i].running() {
            return;
        }
        let mut via = if keep_state { std::mem::take(&mut self.world.nodes[i].rejoin_via) } else { Vec::new() };
        via.retain(|&p| self.world.nodes[p].running());
        via.shuffle(&mut self.rng);
        via.truncate(5);
        if via.is_empty() {
            // The bootstrap list: three random running nodes.
            let running: Vec<usize> =
                (0..self.world.nodes.len()).filter(|&p| p != i && self.world.nodes[p].running()).collect();
            for _ in 0..3.min(running.len()) {
                via.push(running[self.rng.random_range(0..running.len())]);
            }
            via.sort_unstable();
            via.dedup();
        }
        self.boot(i, &via, false);
    }

    pub(super) fn wake(&mut self, i: usize, epoch: u32) {
        let slot = &mut self.world.nodes[i];
        if slot.epoch != epoch || slot.wake_at != self.world.now {
            return; // stale
        }
        slot.wake_at = u64::MAX;
        if slot.paused {
            slot.wake_pending = true;
            return;
        }
        let Some(node) = slot.node.as_mut() else { return };
        let local = Instant::from_micros(slot.clock.local(self.world.now));
        {
            let span = tracing::debug_span!("node", node = i);
            let _entered = span.enter();
            node.handle_timeout(local);
        }
        self.trace.fold(Kind::Timer, self.world.now, i as u64, 0, 0);
        self.trace.write_timer(self.world.now, i);
        self.after_input(i);
    }

    pub(super) fn deliver(&mut self, from: usize, to: usize, payload: Vec<u8>) {
        let slot = &mut self.world.nodes[to];
        if slot.node.is_none() {
            self.net.to_down_node += 1;
            return;
        }
        if slot.paused {
            if slot.backlog.len() < BACKLOG_LIMIT {
                slot.backlog.push_back((from as u32, payload));
            } else {
                self.net.backlog_dropped += 1;
            }
            return;
        }
        self.handle_message(from, to, &payload);
    }

    pub(super) fn handle_message(&mut self, from: usize, to: usize, payload: &[u8]) {
        let slot = &mut self.world.nodes[to];
        let Some(node) = slot.node.as_mut() else { return };
        let local = Instant::from_micros(slot.clock.local(self.world.now));
        {
            let span = tracing::debug_span!("node", node = to);
            let _entered = span.enter();
            node.handle_message(local, &self.addrs[from], payload);
        }
        self.net.delivered += 1;
        self.trace.fold(Kind::Deliver, self.world.now, from as u64, to as u64, trace::hash_bytes(payload));
        self.trace.write_deliver(self.world.now, from, to, payload);
        self.after_input_from(to, Some(payload));
    }

    pub(super) fn after_input(&mut self, i: usize) {
        self.after_input_from(i, None);
    }

    /// Drains node `i`'s events and transmits, then schedules its next
    /// wakeup. `input` is the message it just handled, if any.
    pub(super) fn after_input_from(&mut self, i: usize, input: Option<&[u8]>) {
        let mut events = std::mem::take(&mut self.ev_buf);
        let mut transmits = std::mem::take(&mut self.tx_buf);
        if let Some(node) = self.world.nodes[i].node.as_mut() {
            while let Some(event) = node.poll_event() {
                events.push(event);
            }
            while let Some(transmit) = node.poll_transmit() {
                transmits.push(transmit);
            }
        }
        for event in events.drain(..) {
            self.on_event(i, &event, input);
        }
        for transmit in transmits.drain(..) {
            self.send(i, transmit);
        }
        self.ev_buf = events;
        self.tx_buf = transmits;
        self.reschedule(i);
    }

    pub(super) fn reschedule(&mut self, i: usize) {
        let now = self.world.now;
        let slot = &mut self.world.nodes[i];
        let Some(deadline) = slot.node.as_ref().and_then(|node| node.poll_timeout()) else { return };
        let at = slot.clock.global(deadline.as_micros()).saturating_add(slot.slow_micros).max(now);
        if at < slot.wake_at {
            slot.wake_at = at;
            let epoch = slot.epoch;
            self.push(at, Action::Wake { node: i as u32, epoch });
        }
    }

    pub(super) fn on_event(&mut self, viewer: usize, event: &Event, input: Option<&[u8]>) {
        let now = self.world.now;
        let subject = event_subject(event).and_then(|id| self.world.index_of(id));
        let (name, code) = event_name(event);
        self.trace.fold(Kind::Event, now, viewer as u64, code, subject.map_or(u64::MAX, |s| s as u64));
        if self.trace.writing() {
            self.trace.write_event(now, viewer, name, subject);
        }
        if let Event::MemberDown { id } = *event {
            self.detections += 1;
            // Who declared it: the viewer itself (a suspicion expired), or
            // the `by` of the Dead fact in the message it just handled.
            self.world.dead_origin = match input {
                None => Some(viewer),
                Some(payload) => self.imp.declared_by(payload, id).and_then(|by| self.world.index_of(by)),
            };
        }
        for check in &mut self.checks {
            check.on_event(&self.world, viewer, event);
        }
    }
}
