//! Sending: a node's transmit through the link rules, loss, the uplink and
//! latency into the event queue.

// Node indexes fit u32 (at most MAX_NODES); times in f64 seconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

use rand::Rng;
use shoal_protocol::Transmit;

use crate::net;

use super::{Action, Simulation};

impl Simulation {
    pub(super) fn send(&mut self, from: usize, transmit: Transmit) {
        let now = self.world.now;
        let payload = transmit.payload;
        let len = payload.len();
        self.bytes_sent += len as u64;
        let slot = &mut self.world.nodes[from];
        slot.bytes_out += len as u64;
        slot.msgs_out += 1;
        self.net.sent += 1;
        let Some(to) = net::index_of(transmit.addr.as_str()).filter(|&t| t < self.world.nodes.len()) else {
            self.net.unknown_address += 1;
            return;
        };
        let reliable = self.imp.reliable(&payload);
        if reliable {
            self.net.streamed += 1;
        } else {
            self.world.largest_datagram = self.world.largest_datagram.max(len);
            if len > self.world.mtu {
                self.world.mtu_violations += 1;
                return;
            }
        }
        if !self.rules.is_empty() {
            match net::judge(&self.rules, from, to, reliable, &mut self.rng) {
                net::Verdict::Pass => {}
                net::Verdict::Cut => {
                    self.net.cut += 1;
                    return;
                }
                net::Verdict::Lost => {
                    self.net.lost += 1;
                    return;
                }
                net::Verdict::Hold(rule) => {
                    self.net.held += 1;
                    let fault = self.rules[rule].fault;
                    self.held.entry(fault).or_default().push((from as u32, to as u32, payload));
                    return;
                }
            }
        }
        let spec = &self.scenario.network;
        if !reliable && spec.loss > 0.0 && self.rng.random::<f64>() < spec.loss {
            self.net.lost += 1;
            return;
        }
        let mut depart = now;
        if let Some(bandwidth) = spec.bandwidth.filter(|b| *b > 0) {
            let slot = &mut self.world.nodes[from];
            let start = slot.egress_busy.max(now);
            if !reliable && start - now > spec.queue_limit.micros() {
                self.net.queue_dropped += 1;
                return;
            }
            slot.egress_busy = start + (len as u64 * 1_000_000).div_ceil(bandwidth);
            depart = slot.egress_busy;
        }
        let duplicate = !reliable && spec.duplicate > 0.0 && self.rng.random::<f64>() < spec.duplicate;
        if duplicate {
            self.net.duplicated += 1;
            let at = depart + self.latency(from, to, reliable);
            self.push(at, Action::Deliver { from: from as u32, to: to as u32, payload: payload.clone() });
        }
        let at = depart + self.latency(from, to, reliable);
        self.push(at, Action::Deliver { from: from as u32, to: to as u32, payload });
    }

    pub(super) fn latency(&mut self, from: usize, to: usize, reliable: bool) -> u64 {
        let spec = &self.scenario.network;
        let mut latency = match &spec.sites {
            Some(sites) => sites.sample(from, to, &mut self.rng),
            None => spec.latency.sample(&mut self.rng),
        };
        if !reliable && spec.reorder > 0.0 && self.rng.random::<f64>() < spec.reorder {
            self.net.reordered += 1;
            latency += self.rng.random_range(0..=spec.reorder_delay.micros());
        }
        latency
    }
}
