//! Who each agent says is alive, from the membership events in its log,
//! stamped by the harness when the line arrives.
//!
//! Every system logs its membership events (Serf: `serf: EventMemberJoin:
//! NAME ADDR`; the `shoal` agent with `--log-format json`: `member up`,
//! `member dead`, ...), so N agents are observed by reading N pipes, with no
//! process spawned and no API polled during a measurement.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// What a viewer says about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Seen {
    /// Alive (joined, or refuted a suspicion).
    Alive,
    /// Suspected (the `shoal` agent says so; Serf lists suspects alive).
    Suspect,
    /// Failed (Serf) or dead (the `shoal` agent).
    Failed,
    /// Left gracefully, or reaped.
    Left,
}

/// One event from one viewer's log.
#[derive(Clone, Debug)]
pub struct Observation {
    /// When the harness read the line.
    pub at: Instant,
    /// The agent whose log it is (its index in the lab).
    pub viewer: usize,
    /// The member it is about (its name).
    pub member: String,
    /// What the viewer now says of it.
    pub seen: Seen,
}

#[derive(Debug, Default)]
struct Inner {
    log: Vec<Observation>,
    now: Vec<BTreeMap<String, Seen>>,
}

/// Every agent's view, shared with the threads that read their logs.
#[derive(Clone, Debug, Default)]
pub struct Views(Arc<Mutex<Inner>>);

impl Views {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records what `viewer` just logged about `member`.
    pub fn record(&self, viewer: usize, member: &str, seen: Seen) {
        let mut inner = self.lock();
        if inner.now.len() <= viewer {
            inner.now.resize_with(viewer + 1, BTreeMap::new);
        }
        inner.now[viewer].insert(member.to_owned(), seen);
        inner.log.push(Observation { at: Instant::now(), viewer, member: member.to_owned(), seen });
    }

    /// Forgets `viewer`'s view (it restarted).
    pub fn reset(&self, viewer: usize) {
        if let Some(view) = self.lock().now.get_mut(viewer) {
            view.clear();
        }
    }

    /// Whether each of `viewers` says every one of `members` other than
    /// itself is alive (`names[i]` is agent `i`'s name).
    pub fn all_alive(&self, names: &[String], viewers: &[usize], members: &[usize]) -> bool {
        let inner = self.lock();
        viewers.iter().all(|&v| {
            let view = inner.now.get(v);
            members.iter().filter(|&&m| m != v).all(|&m| view.and_then(|w| w.get(&names[m])) == Some(&Seen::Alive))
        })
    }

    /// How many of `viewers` still miss some member alive (for progress).
    pub fn incomplete(&self, names: &[String], viewers: &[usize], members: &[usize]) -> usize {
        viewers.iter().filter(|&&v| !self.all_alive(names, &[v], members)).count()
    }

    /// Every (viewer, member) pair reported failed at or after `since`.
    pub fn failed_pairs(&self, since: Instant) -> BTreeSet<(usize, String)> {
        let inner = self.lock();
        inner
            .log
            .iter()
            .filter(|o| o.at >= since && o.seen == Seen::Failed)
            .map(|o| (o.viewer, o.member.clone()))
            .collect()
    }

    /// When the last of `viewers` reported `member` failed after `since`, if
    /// all of them have.
    pub fn all_failed(&self, member: &str, viewers: &[usize], since: Instant) -> Option<Instant> {
        let inner = self.lock();
        let mut last = since;
        for &v in viewers {
            let at = inner
                .log
                .iter()
                .find(|o| o.at >= since && o.viewer == v && o.member == member && o.seen == Seen::Failed)?
                .at;
            last = last.max(at);
        }
        Some(last)
    }

    /// The last event before `until` that made the views complete (for
    /// join time): the latest `Alive` observation at or before `until`.
    pub fn last_alive_before(&self, until: Instant) -> Option<Instant> {
        self.lock().log.iter().filter(|o| o.at <= until && o.seen == Seen::Alive).map(|o| o.at).max()
    }
}
