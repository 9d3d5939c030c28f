//! A Jepsen-style nemesis on the real binary, built on the [`lab`](crate::lab):
//! N `shoal` agents (7 by default), one network namespace each, running exec
//! workloads (`sleep`, 1, 2 and 3 replicas, plus some submitted and deleted
//! during faults), and a seeded schedule of faults. After every heal it
//! checks, polling every 500 ms:
//!
//! 1. **catalog**: every running agent's `GET /v1/workloads` lists every
//!    workload submitted and not deleted, and no deleted one. An entry no
//!    agent lists any more is *lost*.
//! 2. **exactly-R**: each workload runs exactly its replicas, each replica
//!    index once, on distinct agents, counted from `/proc` (processes whose
//!    working directory is in an agent's `<data-dir>/workloads/`), not from
//!    what agents report; a deleted workload runs nowhere.
//! 3. **outside the mesh**: no copy runs on an agent that is down, on one
//!    some running agent does not list alive, or as an orphan (its parent is
//!    not its agent's current process: a `kill -9`'d agent leaves its copies
//!    to its next start, which must kill them). A gracefully stopped agent's
//!    copies must be gone within the leave bound of its SIGTERM (checked
//!    during the hold).
//! 4. **membership**: every running agent lists exactly the running agents
//!    alive.
//!
//! Faults ([`schedule::Action`]): loss (iptables `statistic`, 5-20%),
//! partition into two or three groups (half the time with a majority side,
//! half without), one-way partition, bridge, isolate one, SIGSTOP/SIGCONT
//! of one or two agents, `kill -9` of up to a majority then a restart with
//! the same data dir after the hold, and a graceful restart (SIGTERM, down
//! for the hold). Holds straddle the suspicion timeout. Halfway through some
//! holds a workload is submitted or deleted through an agent that is up.
//! The schedule is a pure function of the seed (the network is not), and a
//! run of N events replays the first N events of any longer run of the seed.
//!
//! **Profile: `local`.** The agents are on one machine (sub-millisecond
//! round trips over the bridge), which is what `local` is tuned for, and
//! the bounds scale with its timers: exactly-R after a partition waits for
//! the returning members to settle in every view (until then each side keeps
//! the copies it started), and the settle time doubles with each down in
//! the last hour, up to 64 times: 128 s with `local`, 640 s with `lan`,
//! which would make a 100-event run last many hours. The nemesis starts the
//! lab's agents with `--profile local` (`System::Shoal { profile }`); each
//! agent unblocks the stop signals the harness blocks itself (node's
//! `main.rs`), so its leave and its workloads' SIGTERM work.
//!
//! **Bounds** (after the heal; [`bounds::Bounds`] derives them from
//! `Config::local()` and prints them):
//! - membership: suspicion max (3 s x max(1, log10 N) x 6 = 18 s) + 2
//!   reconnect intervals (10 s) + push-pull (15 s) + join backoff max (10 s)
//!   + 10 s slack = 63 s;
//! - catalog: membership + one push-pull = 78 s;
//! - exactly-R: membership + settle (2 s) x 2^downs (downs: the most faults
//!   any agent was touched by in the last hour, at most 6) + handover grace
//!   (10 s) + stop grace (10 s) + 10 s slack: 95 s to 221 s;
//! - leave: leave timeout (3 s) + stop grace (10 s) + 2 s + 10 s slack = 25 s.
//!
//! What is not checked, by design of the agent: during a hold, a paused or
//! killed agent's copies keep running (nothing can stop them), and each side
//! of a partition runs every workload among its own members (the mesh is AP),
//! so copies above R during a fault are expected; after the heal they must go.
//!
//! A failure prints the seed, the event, what failed and the command that
//! replays it; the agents' logs, data dirs and `events.jsonl` (one record
//! per event) stay in the run dir.

pub mod bounds;
pub mod checks;
pub mod observe;
pub mod report;
mod run;
pub mod schedule;

use std::path::PathBuf;

pub use report::{EventRecord, Summary};
pub use run::run;

/// One nemesis run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seeds the schedule.
    pub seed: u64,
    /// Fault events.
    pub events: usize,
    /// Agents (at least 3).
    pub agents: usize,
    /// The real `shoal` binary.
    pub shoal_bin: PathBuf,
    /// Run dir: logs, data dirs, specs, `events.jsonl`.
    pub dir: PathBuf,
    /// Names the namespaces (`shlab-TAG-*`).
    pub tag: String,
    /// Addresses are `10.OCTET.0.0/16`.
    pub octet: u8,
    /// Run every event even after a violation (the long run's numbers).
    pub keep_going: bool,
    /// Start no event after this (a long run cut to a time budget still
    /// ends with its summary).
    pub deadline: Option<std::time::Instant>,
    /// How to replay: the command before `--seed`, e.g. `sudo
    /// target/release/shoal-nemesis`.
    pub replay_prefix: String,
}

impl Options {
    /// The command that replays this run up to event `number`.
    pub fn replay_command(&self, number: usize) -> String {
        format!("{} --seed {} --events {number} --agents {}", self.replay_prefix, self.seed, self.agents)
    }
}

/// Progress for a person, on stderr (stdout is the summary's).
pub(crate) fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}
