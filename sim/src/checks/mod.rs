//! The checks: one invariant per module, evaluated as the run goes.
//!
//! Safety checks look at every protocol event as it happens
//! ([`Check::on_event`]); liveness checks look every simulated 100 ms
//! ([`Check::on_tick`]) once the faults have healed, and must see the mesh
//! get there within a bound. Each check ends with an [`Outcome`].
//!
//! | module            | kind     | invariant |
//! |-------------------|----------|-----------|
//! | [`no_false_dead`] | safety   | no healthy, reachable member is declared Dead (beyond the allowed count) |
//! | [`convergence`]   | liveness | after faults heal, every running node sees exactly the running nodes Alive, within c·log2(N) periods |
//! | [`detection`]     | liveness | a crashed node is known Dead by every running node within a bound |
//! | [`mtu`]           | safety   | no datagram exceeds the MTU (anti-entropy streams excepted) |
//! | [`workloads`]     | liveness | with workloads: once quiet, every replica runs exactly once; moves bounded; no catalog entry lost |
//! | [`workloads`] (sides) | service | every node sees every replica Running on a member it believes live (each side of a split runs everything) |
//! | [`fixed_point`]   | stability | with workloads: once every node's view (members, settled, catalog) has agreed for a bound, no replica starts on a new node |
//! | [`coordinates`]   | accuracy | with sites: estimated round trips within the scenario's bounds on relative error (else reported only) |

// Durations computed in f64 microseconds are small and non-negative.
#![allow(clippy::cast_possible_truncation)]

pub mod convergence;
pub mod coordinates;
pub mod detection;
pub mod fixed_point;
pub mod mtu;
pub mod no_false_dead;
pub mod workloads;

use shoal_protocol::Event;

pub use crate::report::Outcome;
use crate::scenario::Scenario;
use crate::world::World;

/// One invariant.
pub trait Check: std::fmt::Debug {
    /// Its name (the module's).
    fn name(&self) -> &'static str;
    /// `viewer` emitted `event`; the world is as it is right after.
    fn on_event(&mut self, _world: &World, _viewer: usize, _event: &Event) {}
    /// `node` just crashed (the world still shows it as it was).
    fn on_crash(&mut self, _world: &World, _node: usize) {}
    /// `node` just (re)started with a new generation.
    fn on_start(&mut self, _world: &World, _node: usize) {}
    /// Every simulated 100 ms.
    fn on_tick(&mut self, _world: &World) {}
    /// The run is over.
    fn finish(&mut self, world: &World) -> Outcome;
}

/// The checks every run has.
pub fn standard(scenario: &Scenario, world: &World) -> Vec<Box<dyn Check>> {
    let mut checks: Vec<Box<dyn Check>> = vec![
        Box::new(no_false_dead::NoFalseDead::new(scenario, world)),
        Box::new(convergence::Convergence::new(scenario, world)),
        Box::new(detection::Detection::new(scenario, world)),
        Box::new(mtu::Mtu),
    ];
    if let Some(load) = &scenario.workloads {
        checks.push(Box::new(workloads::Replicas::new(scenario, world, load)));
        checks.push(Box::new(workloads::Sides::new(world, load)));
        checks.push(Box::new(fixed_point::FixedPoint::new(load)));
    }
    if let Some(accuracy) = coordinates::CoordinateAccuracy::new(scenario) {
        checks.push(Box::new(accuracy));
    }
    checks
}

/// `c · log2(N)` protocol periods plus the longest suspicion timeout: how
/// long the mesh may take to converge after the last fault heals.
pub fn convergence_bound_micros(scenario: &Scenario, world: &World) -> u64 {
    let n = scenario.nodes.max(2) as f64;
    let period = world.config.probe_interval.as_micros() as f64;
    let periods = scenario.checks.converge_c * n.log2() * period;
    world.suspicion_max_micros() + periods as u64
}
