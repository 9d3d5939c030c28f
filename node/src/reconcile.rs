//! The reconcile loop: makes the [`Supervisor`] run what `Workloads::plan`
//! says this node owns, stops what it lost, and reports what runs.
//!
//! Two halves, so that no driver call can stall the protocol:
//!
//! - The agent task (which owns the `Node`) calls [`Reconciler::step`]
//!   within [`MIN_GAP`] of a workload event from the protocol (its plan
//!   changed), a member event, an API request or a replica status change,
//!   and never otherwise: the protocol's own timers (settle, handover
//!   grace) announce the plan's changes in time. A step reads the plan,
//!   hands it over if it changed (a `watch`: only the latest plan matters),
//!   and reports the supervisor's statuses. Nothing there waits.
//! - A worker task applies each plan: `ensure_running` for every duty (it
//!   returns at once), and a task of its own per stop (a stop waits for the
//!   replica to exit, up to the stop grace, and a docker call may hang). A
//!   replica being stopped is not started again until its stop is done, so
//!   its instances never overlap.
//!
//! A replica stays in the supervisor's statuses until its stop is done, so it
//! is gossiped Running until then and Stopped once gone. Once this node has
//! settled, containers a previous agent on this data dir left (and that the
//! plan does not claim) are stopped. On leave, the worker stops every
//! replica; the agent waits for that up to the leave timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::{Duty, Instant, Node, Plan};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{Instrument, debug, info, warn};

use crate::driver::{DriverError, ReplicaKey, Supervisor, default_docker_socket};

/// The shortest between two steps after a change: a burst of changes is
/// taken in one step.
const MIN_GAP: Duration = Duration::from_millis(50);
/// How long the search for a previous agent's containers may take.
const LEFTOVERS_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's side: plans in, statuses out.
#[derive(Debug)]
pub struct Reconciler {
    supervisor: Arc<Supervisor>,
    /// `None` once leaving: no plan is applied after that.
    plans: Option<watch::Sender<Plan>>,
    worker: JoinHandle<()>,
    last_step: tokio::time::Instant,
    changed: bool,
}

impl Reconciler {
    /// Starts the worker for `supervisor` (on the current runtime and span).
    pub fn start(supervisor: Supervisor) -> Reconciler {
        let supervisor = Arc::new(supervisor);
        let (plans, updates) = watch::channel(Plan::default());
        let worker = tokio::spawn(Worker::new(Arc::clone(&supervisor)).run(updates).in_current_span());
        Reconciler { supervisor, plans: Some(plans), worker, last_step: tokio::time::Instant::now(), changed: true }
    }

    /// Changes whenever a replica's status does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.supervisor.subscribe()
    }

    /// Notes that something the plan depends on may have changed: a step
    /// comes within [`MIN_GAP`].
    pub fn poke(&mut self) {
        self.changed = true;
    }

    /// When the next step is due: `None` until something changes.
    pub fn due(&self) -> Option<tokio::time::Instant> {
        self.changed.then(|| self.last_step + MIN_GAP)
    }

    /// Computes the plan, hands it to the worker if it changed, and reports
    /// every replica the supervisor runs (those it no longer lists are
    /// gossiped Stopped).
    pub fn step(&mut self, protocol: &mut Node, now: Instant) {
        self.last_step = tokio::time::Instant::now();
        self.changed = false;
        if let Some(plans) = &self.plans {
            let plan = protocol.workloads().plan();
            plans.send_if_modified(|current| {
                let changed = current != plan;
                if changed {
                    *current = plan.clone();
                }
                changed
            });
        }
        protocol.report_replicas(now, self.supervisor.statuses());
    }

    /// Stops applying plans and stops every replica (call after
    /// `Node::leave`, so peers take the work over).
    pub fn leave(&mut self) {
        if self.plans.take().is_some() {
            info!(replicas = self.supervisor.statuses().len(), "stopping every replica");
        }
    }

    /// Waits until every replica has stopped (after [`Reconciler::leave`]),
    /// up to `within`, and never less than the stop grace (plus a margin), so
    /// a workload that shuts down slowly still gets its SIGTERM grace.
    /// Replicas still running then are killed as the agent exits (exec), or
    /// left for the next agent to adopt (docker).
    pub async fn finish(mut self, within: Duration) {
        let within = within.max(self.supervisor.stop_grace() + STOP_MARGIN);
        self.leave();
        if tokio::time::timeout(within, &mut self.worker).await.is_err() {
            let left: Vec<String> =
                self.supervisor.statuses().iter().map(|s| format!("{}/{}", s.workload, s.replica)).collect();
            warn!(?left, "replicas did not stop within {within:?}; exiting anyway");
            self.worker.abort();
        }
    }
}

/// What stopping every replica may take beyond one replica's grace (the
/// stops run in parallel; this covers signalling and reaping).
const STOP_MARGIN: Duration = Duration::from_secs(2);

/// Applies plans; owns the stops in progress.
struct Worker {
    supervisor: Arc<Supervisor>,
    stopping: BTreeSet<ReplicaKey>,
    stops: JoinSet<ReplicaKey>,
    stop_keys: BTreeMap<tokio::task::Id, ReplicaKey>,
    /// The search for a previous agent's containers: not started, running, done.
    leftovers: Leftovers,
}

enum Leftovers {
    NotYet,
    Searching(JoinHandle<Result<Vec<ReplicaKey>, DriverError>>),
    Done,
}

impl Worker {
    fn new(supervisor: Arc<Supervisor>) -> Worker {
        // Without an engine there is nothing to search for.
        let leftovers = if default_docker_socket().exists() { Leftovers::NotYet } else { Leftovers::Done };
        Worker { supervisor, stopping: BTreeSet::new(), stops: JoinSet::new(), stop_keys: BTreeMap::new(), leftovers }
    }

    async fn run(mut self, mut plans: watch::Receiver<Plan>) {
        loop {
            tokio::select! {
                changed = plans.changed() => if changed.is_err() { break },
                Some(done) = self.stops.join_next_with_id() => self.stopped(done),
                found = wait_leftovers(&mut self.leftovers) => {
                    self.leftovers = Leftovers::Done;
                    let plan = plans.borrow().clone();
                    self.stop_leftovers(found, &plan);
                }
            }
            let plan = plans.borrow_and_update().clone();
            self.apply(&plan).await;
        }
        // The agent is leaving: everything stops, those being stopped included.
        self.supervisor.stop_all().await;
        while let Some(done) = self.stops.join_next_with_id().await {
            self.stopped(done);
        }
        info!("every replica stopped");
    }

    async fn apply(&mut self, plan: &Plan) {
        for duty in &plan.run {
            if !self.stopping.contains(&duty.key()) {
                self.supervisor.ensure_running(&duty.spec, duty.replica).await;
            }
        }
        for key in &plan.stop {
            // The plan may be older than the stop that already removed it.
            if self.supervisor.status(&key.workload, key.replica).is_some() {
                self.stop(key.clone(), "this node no longer runs it");
            }
        }
        if plan.settled && matches!(self.leftovers, Leftovers::NotYet) {
            let supervisor = Arc::clone(&self.supervisor);
            let search = async move {
                tokio::time::timeout(LEFTOVERS_TIMEOUT, supervisor.leftovers()).await.unwrap_or_else(|_| Ok(Vec::new()))
            };
            self.leftovers = Leftovers::Searching(tokio::spawn(search.in_current_span()));
        }
    }

    /// Stops a replica on a task of its own, unless that is under way.
    fn stop(&mut self, key: ReplicaKey, why: &str) {
        if !self.stopping.insert(key.clone()) {
            return;
        }
        info!(replica = %key, "stopping a replica: {why}");
        let supervisor = Arc::clone(&self.supervisor);
        let stopped = key.clone();
        let task = async move {
            supervisor.stop(&stopped.workload, stopped.replica).await;
            stopped
        };
        let handle = self.stops.spawn(task.in_current_span());
        self.stop_keys.insert(handle.id(), key);
    }

    fn stopped(&mut self, done: Result<(tokio::task::Id, ReplicaKey), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, _)) => id,
            Err(error) => {
                warn!(%error, "a replica's stop failed");
                error.id()
            }
        };
        if let Some(key) = self.stop_keys.remove(&id) {
            debug!(replica = %key, "replica stopped");
            self.stopping.remove(&key);
        }
    }

    fn stop_leftovers(&mut self, found: Result<Vec<ReplicaKey>, DriverError>, plan: &Plan) {
        let owned: BTreeSet<ReplicaKey> = plan.run.iter().map(Duty::key).collect();
        match found {
            Ok(keys) => {
                for key in keys.into_iter().filter(|k| !owned.contains(k)) {
                    self.stop(key, "a previous agent left its container, and this node does not own it");
                }
            }
            Err(error) => debug!(%error, "cannot look for containers a previous agent left"),
        }
    }
}

/// Resolves with the leftover search's result, once there is one.
async fn wait_leftovers(leftovers: &mut Leftovers) -> Result<Vec<ReplicaKey>, DriverError> {
    match leftovers {
        Leftovers::Searching(search) => match search.await {
            Ok(found) => found,
            Err(error) => {
                warn!(%error, "the search for leftover containers failed");
                Ok(Vec::new())
            }
        },
        Leftovers::NotYet | Leftovers::Done => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::ReplicaState;

    use super::*;
    use crate::driver::SupervisorConfig;
    use crate::spec::parse;

    /// Takes about a second to stop: SIGTERM runs a trap that sleeps first.
    /// Writes `ready` in its folder once the trap is set.
    const SLOW_STOPPER: &str = r#"name = "slow"
[driver]
kind = "exec"
command = "sh"
args = ["-c", "trap 'sleep 1; exit 0' TERM; touch ready; sleep 30 & wait"]
"#;

    fn state(supervisor: &Supervisor) -> Option<ReplicaState> {
        supervisor.status("slow", 0).map(|s| s.state)
    }

    async fn wait_for_state(supervisor: &Supervisor, wanted: Option<ReplicaState>) {
        let mut changes = supervisor.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while state(supervisor) != wanted {
                let _ = changes.changed().await;
            }
        });
        assert!(waited.await.is_ok(), "replica never reached {wanted:?}: {:?}", state(supervisor));
    }

    #[tokio::test]
    async fn a_replica_being_stopped_is_not_started_again_until_its_stop_is_done() {
        let dir = std::env::temp_dir().join(format!("shoal-reconcile-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let supervisor = Arc::new(Supervisor::new(SupervisorConfig::new(&dir, "n")));
        let mut worker = Worker::new(Arc::clone(&supervisor));
        // Not settled: no search for leftover containers.
        let run = Plan {
            run: vec![Duty {
                workload: "slow".into(),
                replica: 0,
                spec: Arc::new(parse(SLOW_STOPPER).expect("a spec")),
            }],
            ..Plan::default()
        };
        let stop = Plan { stop: vec![ReplicaKey::new("slow", 0)], ..Plan::default() };

        worker.apply(&run).await;
        let ready = dir.join("workloads/slow-0/ready");
        let trapped = tokio::time::timeout(Duration::from_secs(10), async {
            while !ready.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(trapped.await.is_ok(), "the replica never started");
        let first = supervisor.status("slow", 0).expect("a status");
        assert_eq!(first.state, ReplicaState::Running);
        let stopping = std::time::Instant::now();
        worker.apply(&stop).await;
        // Let the stop begin (the supervisor no longer has the replica's runner).
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Owned again while the stop runs: nothing new starts (the old
        // instance keeps its status), and a second stop is not started.
        worker.apply(&run).await;
        worker.apply(&stop).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(supervisor.status("slow", 0), Some(first));
        assert_eq!(worker.stopping.len(), 1);
        assert_eq!(worker.stops.len(), 1);

        let done = worker.stops.join_next_with_id().await.expect("a stop");
        assert!(stopping.elapsed() > Duration::from_millis(500), "the stop took its time");
        worker.stopped(done);
        assert_eq!(state(&supervisor), None, "stopped, and forgotten");
        assert!(worker.stopping.is_empty() && worker.stop_keys.is_empty());
        // The stale plan does not stop it twice; the next run starts it.
        worker.apply(&stop).await;
        assert!(worker.stops.is_empty());
        worker.apply(&run).await;
        wait_for_state(&supervisor, Some(ReplicaState::Running)).await;
        supervisor.stop_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
