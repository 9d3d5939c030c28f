//! The fault schedule: a pure function of (seed, events, agents). The real
//! network is not deterministic, but what the nemesis does, to whom, for how
//! long and in which order is: the same seed replays the same faults.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Workloads submitted before the first event, never deleted: (name, replicas).
pub const BASE_WORKLOADS: [(&str, u32); 3] = [("nem-one", 1), ("nem-two", 2), ("nem-three", 3)];

/// The short run's seed (tests/nemesis.rs): its first [`SHORT_EVENTS`]
/// events draw every kind, a crash of a majority, partitions with and
/// without a majority side, submits and deletes during faults.
pub const SHORT_SEED: u64 = 53;
/// The short run's events.
pub const SHORT_EVENTS: usize = 10;

/// What one event does to the lab (names as turmoil and Jepsen use them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Every host drops this share of the packets it receives (iptables `statistic`).
    Loss {
        /// Percent, 5 to 20.
        percent: u32,
    },
    /// Hosts in different groups cannot reach each other.
    Partition {
        /// The groups; sometimes one holds a majority, sometimes none does.
        groups: Vec<Vec<usize>>,
    },
    /// Packets from `from` to `to` are dropped; the other way works.
    PartitionOneway {
        /// Senders cut off.
        from: Vec<usize>,
        /// Receivers that stop hearing them.
        to: Vec<usize>,
    },
    /// Two halves that cannot reach each other, and one host that reaches both.
    Bridge {
        /// One half.
        a: Vec<usize>,
        /// The other half.
        b: Vec<usize>,
        /// The host in both.
        via: usize,
    },
    /// One host cut off from everyone.
    Isolate {
        /// The host.
        agent: usize,
    },
    /// SIGSTOP for the hold, then SIGCONT.
    Pause {
        /// The agents paused.
        agents: Vec<usize>,
    },
    /// `kill -9`, down for the hold, then started again with the same data dir.
    Crash {
        /// The agents killed.
        agents: Vec<usize>,
    },
    /// SIGTERM (the agent leaves and stops its replicas), down for the hold,
    /// then started again with the same data dir.
    Restart {
        /// The agents restarted.
        agents: Vec<usize>,
    },
}

impl Action {
    /// The kind's name, for counts and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Loss { .. } => "loss",
            Action::Partition { .. } => "partition",
            Action::PartitionOneway { .. } => "partition_oneway",
            Action::Bridge { .. } => "bridge",
            Action::Isolate { .. } => "isolate",
            Action::Pause { .. } => "pause",
            Action::Crash { .. } => "crash",
            Action::Restart { .. } => "restart",
        }
    }

    /// Agents whose process the action stops, pauses or kills (their API
    /// does not answer during the hold).
    pub fn downed(&self) -> &[usize] {
        match self {
            Action::Pause { agents } | Action::Crash { agents } | Action::Restart { agents } => agents,
            _ => &[],
        }
    }

    /// Agents some other agent may declare Dead because of this action:
    /// every agent a network fault touches, or the downed ones.
    pub fn touched(&self, agents: usize) -> BTreeSet<usize> {
        match self {
            Action::Pause { agents: a } | Action::Crash { agents: a } | Action::Restart { agents: a } => {
                a.iter().copied().collect()
            }
            // Each side of a cut sees the other go (an isolated agent sees
            // everyone go); loss may make anyone look dead.
            _ => (0..agents).collect(),
        }
    }
}

/// A change to the catalog made during the hold, through one agent's API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogOp {
    /// Submit a new exec workload.
    Submit {
        /// Its name (`nem-x{event}`).
        name: String,
        /// Replicas, 1 to 3.
        replicas: u32,
        /// The agent whose API takes it.
        via: usize,
    },
    /// Delete a workload an earlier event submitted.
    Delete {
        /// Its name.
        name: String,
        /// The agent whose API takes it.
        via: usize,
    },
}

/// One fault event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// 1-based, as reports and replays count.
    pub number: usize,
    /// The fault.
    pub action: Action,
    /// How long the fault holds before the heal, in milliseconds.
    pub hold_ms: u64,
    /// A catalog change halfway through the hold, if any.
    pub catalog: Option<CatalogOp>,
}

/// The events for `seed`, for a lab of `agents` (at least 3).
pub fn schedule(seed: u64, events: usize, agents: usize) -> Vec<Event> {
    assert!(agents >= 3, "the nemesis needs at least 3 agents");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut extras: Vec<String> = Vec::new();
    (1..=events)
        .map(|number| {
            let (action, hold_ms) = draw_action(&mut rng, agents);
            let catalog = draw_catalog_op(&mut rng, number, agents, &action, &mut extras);
            Event { number, action, hold_ms, catalog }
        })
        .collect()
}

fn shuffled(rng: &mut ChaCha8Rng, agents: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..agents).collect();
    all.shuffle(rng);
    all
}

fn sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
}

fn draw_action(rng: &mut ChaCha8Rng, n: usize) -> (Action, u64) {
    // Holds straddle the suspicion timeout (3 to 18 s with `local` at this
    // size): some faults heal before anyone is declared Dead, most after.
    let action = match rng.random_range(0..8u32) {
        0 => Action::Loss { percent: rng.random_range(5..=20) },
        1 => Action::Partition { groups: draw_groups(rng, n) },
        2 => {
            let all = shuffled(rng, n);
            let senders = rng.random_range(1..=n / 2);
            let receivers = rng.random_range(1..=n - senders);
            let from = sorted(all[..senders].to_vec());
            let to = sorted(all[senders..senders + receivers].to_vec());
            Action::PartitionOneway { from, to }
        }
        3 => {
            let all = shuffled(rng, n);
            let half = rng.random_range(1..=n - 2);
            Action::Bridge { via: all[0], a: sorted(all[1..=half].to_vec()), b: sorted(all[half + 1..].to_vec()) }
        }
        4 => Action::Isolate { agent: rng.random_range(0..n) },
        5 => Action::Pause { agents: sorted(shuffled(rng, n)[..rng.random_range(1..=2)].to_vec()) },
        // Up to a majority of the mesh down at once, now and then.
        6 => Action::Crash { agents: sorted(shuffled(rng, n)[..rng.random_range(1..=n.div_ceil(2))].to_vec()) },
        _ => Action::Restart { agents: sorted(shuffled(rng, n)[..rng.random_range(1..=2)].to_vec()) },
    };
    let hold_ms = match action {
        Action::Loss { .. } => rng.random_range(5_000..=20_000),
        Action::Pause { .. } => rng.random_range(1_000..=12_000),
        Action::Crash { .. } | Action::Restart { .. } => rng.random_range(0..=10_000),
        _ => rng.random_range(2_000..=20_000),
    };
    (action, hold_ms)
}

/// Two or three groups; half the time one of them is a majority, otherwise
/// none is.
fn draw_groups(rng: &mut ChaCha8Rng, n: usize) -> Vec<Vec<usize>> {
    let all = shuffled(rng, n);
    let majority = n / 2 + 1;
    let sizes: Vec<usize> = if rng.random_bool(0.5) {
        let big = rng.random_range(majority..n);
        let rest = n - big;
        if rest >= 2 && rng.random_bool(0.5) {
            let second = rng.random_range(1..rest);
            vec![big, second, rest - second]
        } else {
            vec![big, rest]
        }
    } else {
        // Every group below a majority: cut points drawn until that holds.
        loop {
            let mut cuts = [rng.random_range(1..n), rng.random_range(1..n)];
            cuts.sort_unstable();
            let sizes: Vec<usize> = [cuts[0], cuts[1] - cuts[0], n - cuts[1]].into_iter().filter(|&s| s > 0).collect();
            if sizes.len() >= 2 && sizes.iter().all(|&s| s < majority) {
                break sizes;
            }
        }
    };
    let mut start = 0;
    sizes
        .iter()
        .map(|&size| {
            let group = sorted(all[start..start + size].to_vec());
            start += size;
            group
        })
        .collect()
}

fn draw_catalog_op(
    rng: &mut ChaCha8Rng,
    number: usize,
    n: usize,
    action: &Action,
    extras: &mut Vec<String>,
) -> Option<CatalogOp> {
    // Only an agent whose process runs through the hold can take a request.
    let up: Vec<usize> = (0..n).filter(|i| !action.downed().contains(i)).collect();
    let via = up[rng.random_range(0..up.len())];
    let roll: f64 = rng.random();
    if roll < 0.3 {
        let name = format!("nem-x{number}");
        extras.push(name.clone());
        Some(CatalogOp::Submit { name, replicas: rng.random_range(1..=3), via })
    } else if roll < 0.45 && !extras.is_empty() {
        let name = extras.remove(rng.random_range(0..extras.len()));
        Some(CatalogOp::Delete { name, via })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        assert_eq!(schedule(42, 200, 7), schedule(42, 200, 7));
        assert_ne!(schedule(42, 200, 7), schedule(43, 200, 7));
        // A shorter run is a prefix of a longer one, so `--events N` replays
        // the first N events of any longer run.
        assert_eq!(schedule(42, 20, 7), schedule(42, 200, 7)[..20].to_vec());
    }

    #[test]
    fn the_short_run_draws_every_kind() {
        let events = schedule(SHORT_SEED, SHORT_EVENTS, 7);
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.action.kind()).collect();
        assert_eq!(kinds.len(), 8, "{kinds:?}");
        assert!(events.iter().any(|e| matches!(e.catalog, Some(CatalogOp::Delete { .. }))));
    }

    #[test]
    fn every_kind_is_drawn_and_every_shape_is_valid() {
        let events = schedule(7, 400, 7);
        let kinds: BTreeSet<&str> = events.iter().map(|e| e.action.kind()).collect();
        assert_eq!(kinds.len(), 8, "{kinds:?}");
        let (mut with_majority, mut without) = (0, 0);
        for event in &events {
            if let Action::Partition { groups } = &event.action {
                let all: BTreeSet<usize> = groups.iter().flatten().copied().collect();
                assert_eq!(all.len(), 7, "{groups:?}");
                if groups.iter().any(|g| g.len() >= 4) {
                    with_majority += 1;
                } else {
                    without += 1;
                }
            }
            if let Some(CatalogOp::Submit { via, .. } | CatalogOp::Delete { via, .. }) = &event.catalog {
                assert!(!event.action.downed().contains(via));
            }
        }
        assert!(with_majority > 0 && without > 0);
    }
}
