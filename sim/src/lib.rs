//! `shoal-sim`: the deterministic simulator.
//!
//! It runs many real [`shoal_protocol::Node`] instances in one process,
//! in virtual time, over a simulated network with faults, and checks as it
//! goes that the mesh behaves. A run is a pure function of (seed, scenario,
//! build): one ChaCha8 rng seeded from the seed drives the topology, every
//! latency, loss and fault, and the per-node protocol seeds; the event trace
//! is folded into a hash that two runs of the same seed reproduce bit for bit.
//!
//! ```no_run
//! use shoal_sim::{Scenario, Simulation};
//!
//! let scenario = Scenario::builtin("crash-one").expect("built in").with_nodes(50);
//! let report = Simulation::new(scenario, 7)?.run();
//! assert!(report.passed(), "{}", report.replay);
//! # Ok::<(), shoal_sim::SimError>(())
//! ```
//!
//! Layout: [`scenario`] (what to run: TOML and the built-ins), [`net`] (the
//! network model), [`fault`] (what can go wrong, and when), [`sim`] (the
//! event loop), [`impls`] (what it drives: Shoal, or foca for comparison), [`checks`] (one invariant per module), [`report`] (what a
//! run says), [`trace`] (the trace hash and the JSONL trace), [`plot`] (SVG).

pub mod checks;
pub mod error;
pub mod fault;
pub mod impls;
pub mod net;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod shrink;
pub mod sim;
pub mod stats;
pub mod trace;
pub mod units;
pub mod workloads;
pub mod world;

pub use report::{Report, Verdict};
pub use scenario::Scenario;
pub use sim::{SimError, Simulation};

/// The protocol crate the simulator drives, re-exported for its users.
pub use shoal_protocol as protocol;
