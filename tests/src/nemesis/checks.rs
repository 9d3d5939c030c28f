//! The four checks, as pure functions of one look at the lab ([`World`])
//! and what the nemesis expects. Each returns the problems it found, in
//! words a failure report can print; none means the check holds.

use std::collections::{BTreeMap, BTreeSet};

use super::observe::World;

/// What the catalog should hold: workloads submitted (name to replicas) and
/// those deleted since.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// Workloads that must be in every catalog, with their replicas.
    pub workloads: BTreeMap<String, u32>,
    /// Workloads deleted: in no catalog, and no copy running.
    pub deleted: BTreeSet<String>,
}

/// (1) Every running agent's catalog holds every expected workload and no
/// deleted one.
pub fn catalog(world: &World, running: &[usize], expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    for &i in running {
        match &world.catalogs[i] {
            Err(e) => problems.push(format!("a{i}: catalog unreadable: {e}")),
            Ok(names) => {
                let missing: Vec<&String> = expected.workloads.keys().filter(|w| !names.contains(*w)).collect();
                let resurrected: Vec<&String> = names.iter().filter(|w| expected.deleted.contains(*w)).collect();
                let unknown: Vec<&String> = names
                    .iter()
                    .filter(|w| !expected.workloads.contains_key(*w) && !expected.deleted.contains(*w))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("a{i}: catalog misses {missing:?}"));
                }
                if !resurrected.is_empty() {
                    problems.push(format!("a{i}: catalog holds deleted {resurrected:?}"));
                }
                if !unknown.is_empty() {
                    problems.push(format!("a{i}: catalog holds never-submitted {unknown:?}"));
                }
            }
        }
    }
    problems
}

/// Catalog entries lost: expected workloads that no agent that answered
/// lists (none answering counts as nothing known lost).
pub fn lost(world: &World, expected: &Expected) -> Vec<String> {
    let answered: Vec<&BTreeSet<String>> = world.catalogs.iter().filter_map(|c| c.as_ref().ok()).collect();
    if answered.is_empty() {
        return Vec::new();
    }
    expected.workloads.keys().filter(|w| answered.iter().all(|c| !c.contains(*w))).cloned().collect()
}

/// (2) Each expected workload runs exactly its replicas, each replica index
/// once, on distinct agents; deleted (or unknown) workloads run nowhere.
/// Counted from processes.
pub fn copies(world: &World, expected: &Expected) -> Vec<String> {
    let mut by_workload: BTreeMap<&str, Vec<(u16, usize)>> = BTreeMap::new();
    for copy in &world.copies {
        by_workload.entry(&copy.workload).or_default().push((copy.replica, copy.agent));
    }
    let mut problems = Vec::new();
    for (name, &replicas) in &expected.workloads {
        let running = by_workload.remove(name.as_str()).unwrap_or_default();
        let agents: BTreeSet<usize> = running.iter().map(|&(_, a)| a).collect();
        let indices: BTreeSet<u16> = running.iter().map(|&(r, _)| r).collect();
        let want: BTreeSet<u16> = (0..u16::try_from(replicas).unwrap_or(u16::MAX)).collect();
        if running.len() != replicas as usize || agents.len() != running.len() || indices != want {
            problems.push(format!("{name}: want {replicas}, running {}", describe(&running)));
        }
    }
    for (name, running) in by_workload {
        problems.push(format!("{name} (deleted or unknown): running {}", describe(&running)));
    }
    problems
}

/// (3) No copy runs outside the mesh: every copy's agent runs, is in every
/// running agent's alive set, and is the copy's parent (a copy whose agent
/// process died is an orphan its next start must kill).
pub fn outside(world: &World, running: &[usize], names: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for copy in &world.copies {
        let who = format!("{}/{} (pid {}) on a{}", copy.workload, copy.replica, copy.pid, copy.agent);
        match world.pids[copy.agent] {
            None => problems.push(format!("{who}: the agent is down")),
            Some(pid) if pid != copy.parent => {
                problems.push(format!("{who}: orphan (parent {}, agent pid {pid})", copy.parent));
            }
            Some(_) => {
                let outcast: Vec<usize> = running
                    .iter()
                    .copied()
                    .filter(|&i| world.alive[i].as_ref().is_ok_and(|a| !a.contains(&names[copy.agent])))
                    .collect();
                if !outcast.is_empty() {
                    problems.push(format!("{who}: the agent is not alive for {outcast:?}"));
                }
            }
        }
    }
    problems
}

/// (4) Every running agent lists exactly the running agents alive.
pub fn membership(world: &World, running: &[usize], names: &[String]) -> Vec<String> {
    let want: BTreeSet<String> = running.iter().map(|&i| names[i].clone()).collect();
    let mut problems = Vec::new();
    for &i in running {
        match &world.alive[i] {
            Err(e) => problems.push(format!("a{i}: members unreadable: {e}")),
            Ok(alive) if *alive != want => {
                let missing: Vec<&String> = want.difference(alive).collect();
                let extra: Vec<&String> = alive.difference(&want).collect();
                problems.push(format!("a{i}: alive lacks {missing:?}, has extra {extra:?}"));
            }
            Ok(_) => {}
        }
    }
    problems
}

fn describe(running: &[(u16, usize)]) -> String {
    if running.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = running.iter().map(|(r, a)| format!("#{r}@a{a}")).collect();
    format!("{} [{}]", running.len(), parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::observe::Copy;

    fn copy(workload: &str, replica: u16, agent: usize) -> Copy {
        let n = u32::try_from(agent).unwrap_or(u32::MAX - 1000);
        Copy { workload: workload.into(), replica, agent, pid: 1000 + n, parent: 100 + n }
    }

    fn world(copies: Vec<Copy>) -> World {
        let names: BTreeSet<String> = (0..3).map(|i| format!("a{i}")).collect();
        World {
            copies,
            catalogs: vec![Ok(["w".to_owned()].into()); 3],
            alive: vec![Ok(names); 3],
            pids: (0..3).map(|i| Some(100 + i)).collect(),
        }
    }

    #[test]
    fn exactly_r_on_distinct_agents() {
        let expected = Expected { workloads: [("w".to_owned(), 2)].into(), deleted: BTreeSet::new() };
        assert!(copies(&world(vec![copy("w", 0, 0), copy("w", 1, 2)]), &expected).is_empty());
        assert_eq!(copies(&world(vec![copy("w", 0, 0)]), &expected).len(), 1, "one short");
        assert_eq!(copies(&world(vec![copy("w", 0, 0), copy("w", 1, 0)]), &expected).len(), 1, "same agent");
        let three = vec![copy("w", 0, 0), copy("w", 1, 1), copy("w", 1, 2)];
        assert_eq!(copies(&world(three), &expected).len(), 1, "one too many");
        assert_eq!(copies(&world(vec![copy("w", 0, 0), copy("w", 1, 1), copy("x", 0, 2)]), &expected).len(), 1);
    }

    #[test]
    fn orphans_and_outcasts_are_outside() {
        let names: Vec<String> = (0..3).map(|i| format!("a{i}")).collect();
        let mut w = world(vec![copy("w", 0, 1)]);
        assert!(outside(&w, &[0, 1, 2], &names).is_empty());
        w.copies[0].parent = 1;
        assert_eq!(outside(&w, &[0, 1, 2], &names).len(), 1, "orphan");
        w.copies[0].parent = 101;
        w.alive[0] = Ok(["a0".to_owned(), "a2".to_owned()].into());
        assert_eq!(outside(&w, &[0, 1, 2], &names).len(), 1, "a0 does not see a1");
        assert_eq!(membership(&w, &[0, 1, 2], &names).len(), 1);
    }
}
