//! The nemesis loop: start the lab, submit the workloads, then for each
//! event apply the fault, hold it, heal, and wait for the checks.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::bounds::Bounds;
use super::checks::{self, Expected};
use super::observe::{DataDirs, World};
use super::report::{EventRecord, Summary};
use super::schedule::{Action, BASE_WORKLOADS, CatalogOp, Event, schedule};
use super::{Options, say};
use crate::lab::{Fault, Lab, System};

/// How often the checks look at the lab after a heal.
const POLL: Duration = Duration::from_millis(500);

/// A running nemesis: the lab and what it expects.
struct Nemesis<'a> {
    options: &'a Options,
    lab: Lab,
    dirs: DataDirs,
    bounds: Bounds,
    expected: Expected,
    /// Workloads whose submit or delete failed at the API: their fate is
    /// unknown, so no check counts them.
    uncertain: BTreeSet<String>,
    /// When each agent was last touched by a fault (its downs in the flap window).
    downs: Vec<VecDeque<Instant>>,
    specs: PathBuf,
    records: std::fs::File,
}

/// Runs the nemesis; the summary, whether or not checks failed (a failure
/// to set the lab up is an error).
pub fn run(options: &Options) -> Result<Summary> {
    let events = schedule(options.seed, options.events, options.agents);
    std::fs::create_dir_all(&options.dir)?;
    let bin = std::fs::canonicalize(&options.shoal_bin)
        .with_context(|| format!("{} (cargo build --release -p shoal-node)", options.shoal_bin.display()))?;
    let system = System::Shoal { bin, profile: "local".into() };
    let lab = Lab::new(system, options.agents, &options.tag, options.octet, &options.dir)?;
    let bounds = Bounds::new(
        &shoal_protocol::Config::local(),
        &shoal_protocol::WorkloadConfig::local(),
        options.agents,
        shoal_node::driver::SupervisorConfig::new("", "").stop_grace,
        shoal_node::agent::LEAVE_TIMEOUT,
    );
    say(&format!(
        "nemesis seed {}: {} events, {} agents, logs in {}",
        options.seed,
        events.len(),
        options.agents,
        options.dir.display()
    ));
    say(&bounds.describe());
    let specs = options.dir.join("specs");
    std::fs::create_dir_all(&specs)?;
    let mut nemesis = Nemesis {
        options,
        dirs: DataDirs::of(&lab),
        lab,
        bounds,
        expected: Expected::default(),
        uncertain: BTreeSet::new(),
        downs: vec![VecDeque::new(); options.agents],
        specs,
        records: std::fs::File::create(options.dir.join("events.jsonl"))?,
    };
    let result = nemesis.all(&events);
    nemesis.lab.stop_all();
    result
}

impl Nemesis<'_> {
    fn all(&mut self, events: &[Event]) -> Result<Summary> {
        self.lab.start_all()?;
        if self.lab.wait_all_see_all(Duration::from_secs(60)).is_none() {
            bail!("the mesh did not form within 60 s; logs in {}", self.options.dir.display());
        }
        for i in 0..self.options.agents {
            let pid = self.lab.pid(i).context("agent not started")?;
            if sigterm_blocked(pid) {
                bail!("agent a{i} (pid {pid}) runs with SIGTERM blocked: it could not leave gracefully");
            }
        }
        for (name, replicas) in BASE_WORKLOADS {
            self.submit(0, name, replicas).with_context(|| format!("submitting {name}"))?;
            self.expected.workloads.insert(name.to_owned(), replicas);
        }
        let mut records = vec![self.settle(None, Instant::now(), None, None)?];
        if !records[0].violations.is_empty() {
            bail!("the lab was not healthy before the first fault: {:?}", records[0].violations);
        }
        for event in events {
            if self.options.deadline.is_some_and(|d| Instant::now() >= d) {
                say(&format!("time budget spent: stopping before event {}", event.number));
                break;
            }
            let record = self.event(event)?;
            let failed = !record.violations.is_empty();
            if failed {
                self.report_failure(event, &record);
            }
            records.push(record);
            if failed && !self.options.keep_going {
                break;
            }
        }
        Ok(Summary::new(self.options.seed, events.len(), &records))
    }

    /// One event: fault, hold (with a catalog op halfway), heal, checks.
    fn event(&mut self, event: &Event) -> Result<EventRecord> {
        say(&format!(
            "event {}/{}: {} {} hold {:.1} s{}",
            event.number,
            self.options.events,
            event.action.kind(),
            targets(&event.action),
            Duration::from_millis(event.hold_ms).as_secs_f64(),
            event.catalog.as_ref().map(|c| format!(", then {c:?}")).unwrap_or_default()
        ));
        let started = Instant::now();
        let hold = Duration::from_millis(event.hold_ms);
        let leave_ms = self.apply(&event.action)?;
        sleep_until(started + hold / 2);
        let catalog_result = event.catalog.as_ref().map(|op| self.catalog_op(op));
        sleep_until(started + hold);
        self.heal(&event.action)?;
        let healed = Instant::now();
        for agent in event.action.touched(self.options.agents) {
            self.downs[agent].push_back(healed);
        }
        self.settle(Some(event.clone()), healed, catalog_result, leave_ms)
    }

    /// Applies the fault; for a graceful stop, how long the stopped agents'
    /// copies took to go (checked against the leave bound).
    fn apply(&mut self, action: &Action) -> Result<Option<u64>> {
        let fault = match action {
            Action::Loss { percent } => Fault::Loss(f64::from(*percent) / 100.0),
            Action::Partition { groups } => Fault::Partition(groups.clone()),
            Action::PartitionOneway { from, to } => Fault::PartitionOneway { from: from.clone(), to: to.clone() },
            Action::Bridge { a, b, via } => Fault::Bridge { a: a.clone(), b: b.clone(), via: *via },
            Action::Isolate { agent } => Fault::Isolate(*agent),
            Action::Pause { agents } => {
                for &i in agents {
                    self.lab.signal(i, Signal::SIGSTOP)?;
                }
                return Ok(None);
            }
            Action::Crash { agents } => {
                for &i in agents {
                    self.lab.kill(i)?;
                }
                return Ok(None);
            }
            Action::Restart { agents } => {
                let sigterm = Instant::now();
                for &i in agents {
                    self.lab.stop(i);
                }
                // A leaving agent stops its replicas before it exits: none
                // may be left once the leave bound has passed.
                let gone = self.dirs_clear_within(agents, sigterm + self.bounds.leave);
                return Ok(Some(u64::try_from(gone.duration_since(sigterm).as_millis()).unwrap_or(u64::MAX)));
            }
        };
        self.lab.fault(&fault)?;
        Ok(None)
    }

    /// Polls until no copy runs under `agents`' data dirs, or `deadline`;
    /// the instant it held (or the deadline).
    fn dirs_clear_within(&self, agents: &[usize], deadline: Instant) -> Instant {
        loop {
            let now = Instant::now();
            if !self.dirs.copies().iter().any(|c| agents.contains(&c.agent)) || now >= deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn heal(&mut self, action: &Action) -> Result<()> {
        self.lab.heal()?;
        match action {
            Action::Pause { agents } => {
                for &i in agents {
                    self.lab.signal(i, Signal::SIGCONT)?;
                }
            }
            Action::Crash { agents } | Action::Restart { agents } => {
                for &i in agents {
                    self.lab.start(i)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Polls the checks until all hold at once or the longest bound has
    /// passed since `healed`; the event's record.
    fn settle(
        &mut self,
        event: Option<Event>,
        healed: Instant,
        catalog_result: Option<String>,
        leave_ms: Option<u64>,
    ) -> Result<EventRecord> {
        let downs = self.recent_downs(healed);
        let bounds = [self.bounds.membership, self.bounds.catalog, self.bounds.copies(downs)];
        let patience = bounds.iter().max().copied().unwrap_or_default();
        let healed_unix_ms = unix_ms_at(healed);
        let mut first: [Option<Duration>; 3] = [None; 3];
        let mut waited_on: [Vec<String>; 3] = Default::default();
        let mut last_problems: [Vec<String>; 3];
        let mut world;
        loop {
            let running = self.lab.running();
            world = World::observe(&self.lab, &self.dirs, &running);
            let expected = self.countable();
            let names = &self.lab.names;
            let mut copies = checks::copies(&world, &expected);
            copies.extend(checks::outside(&world, &running, names));
            let problems =
                [checks::membership(&world, &running, names), checks::catalog(&world, &running, &expected), copies];
            let elapsed = healed.elapsed();
            for (k, p) in problems.iter().enumerate() {
                if first[k].is_none() {
                    if p.is_empty() {
                        first[k] = Some(elapsed);
                    } else {
                        waited_on[k].clone_from(p);
                    }
                }
            }
            let all_hold = problems.iter().all(Vec::is_empty);
            last_problems = problems;
            if all_hold || elapsed > patience {
                break;
            }
            std::thread::sleep(POLL);
        }
        let names = ["membership", "catalog", "exactly-R"];
        let mut violations = Vec::new();
        for k in 0..3 {
            match first[k] {
                Some(at) if at <= bounds[k] => {}
                Some(at) => violations.push(format!(
                    "{} held only {:.1} s after the heal (bound {:.0} s)",
                    names[k],
                    at.as_secs_f64(),
                    bounds[k].as_secs_f64()
                )),
                None => violations.push(format!(
                    "{} did not hold within {:.0} s of the heal: {}",
                    names[k],
                    patience.as_secs_f64(),
                    last_problems[k].join("; ")
                )),
            }
        }
        if violations.is_empty() && !last_problems.iter().all(Vec::is_empty) {
            violations.push(format!("the checks never held all at once: {:?}", last_problems));
        }
        if let Some(ms) = leave_ms.filter(|&ms| Duration::from_millis(ms) > self.bounds.leave) {
            violations.push(format!("a stopped agent's copies ran {ms} ms after its SIGTERM"));
        }
        let lost = checks::lost(&world, &self.countable());
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let record = EventRecord {
            event,
            catalog_result,
            leave_ms,
            downs,
            bounds_ms: bounds.map(ms),
            after_heal_ms: first.map(|f| f.map(ms)),
            waited_on,
            healed_unix_ms,
            lost,
            violations,
        };
        writeln!(self.records, "{}", serde_json::to_string(&record)?)?;
        if record.after_heal_ms[2].is_some_and(|ms| ms > 10_000) {
            say(&format!("  exactly-R was waiting on: {}", record.waited_on[2].join("; ")));
        }
        let shown: Vec<String> =
            record.after_heal_ms.iter().map(|t| t.map_or("-".into(), |ms| format!("{:.1}", ms as f64 / 1e3))).collect();
        say(&format!(
            "  after heal (s): membership {} catalog {} exactly-R {} (bound {:.0} s, downs {downs}){}",
            shown[0],
            shown[1],
            shown[2],
            bounds[2].as_secs_f64(),
            if record.violations.is_empty() { String::new() } else { format!("  VIOLATIONS: {:?}", record.violations) }
        ));
        Ok(record)
    }

    /// The most downs any agent had within the flap window before `now`.
    fn recent_downs(&mut self, now: Instant) -> usize {
        let window = self.bounds.flap_window;
        self.downs
            .iter_mut()
            .map(|d| {
                d.retain(|at| now.saturating_duration_since(*at) < window);
                d.len()
            })
            .max()
            .unwrap_or(0)
    }

    /// The expectations without the workloads of uncertain fate.
    fn countable(&self) -> Expected {
        let mut e = self.expected.clone();
        e.workloads.retain(|w, _| !self.uncertain.contains(w));
        e.deleted.retain(|w| !self.uncertain.contains(w));
        e
    }

    fn catalog_op(&mut self, op: &CatalogOp) -> String {
        let (name, result) = match op {
            CatalogOp::Submit { name, replicas, via } => {
                let result = self.submit(*via, name, *replicas);
                if result.is_ok() {
                    self.expected.workloads.insert(name.clone(), *replicas);
                }
                (name, result)
            }
            CatalogOp::Delete { name, via } => {
                let result = self.lab.cli(*via, &["delete", name]).map(drop);
                if result.is_ok() {
                    self.expected.workloads.remove(name);
                    self.expected.deleted.insert(name.clone());
                }
                (name, result)
            }
        };
        match result {
            Ok(()) => "ok".into(),
            Err(e) => {
                self.uncertain.insert(name.clone());
                say(&format!("  catalog op failed, {name} no longer checked: {e:#}"));
                format!("failed: {e:#}")
            }
        }
    }

    /// Submits an exec workload of `sleep` through agent `via`'s CLI.
    fn submit(&self, via: usize, name: &str, replicas: u32) -> Result<()> {
        let file = self.specs.join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\nreplicas = {replicas}\n[driver]\nkind = \"exec\"\ncommand = \"sleep\"\n\
                 args = [\"1000000\"]\n"
            ),
        )?;
        self.lab.cli(via, &["submit", &file.display().to_string()])?;
        Ok(())
    }

    fn report_failure(&self, event: &Event, record: &EventRecord) {
        say(&format!(
            "\nNEMESIS FAILURE: seed {} event {} ({} {}):\n  {}\n  logs: {}\n  replay: {}\n",
            self.options.seed,
            event.number,
            event.action.kind(),
            targets(&event.action),
            record.violations.join("\n  "),
            self.options.dir.display(),
            self.options.replay_command(event.number)
        ));
    }
}

/// Who an action targets, in words.
fn targets(action: &Action) -> String {
    match action {
        Action::Loss { percent } => format!("{percent}%"),
        Action::Partition { groups } => format!("{groups:?}"),
        Action::PartitionOneway { from, to } => format!("{from:?} -/-> {to:?}"),
        Action::Bridge { a, b, via } => format!("{a:?} <-a{via}-> {b:?}"),
        Action::Isolate { agent } => format!("a{agent}"),
        Action::Pause { agents } | Action::Crash { agents } | Action::Restart { agents } => {
            let names: Vec<String> = agents.iter().map(|i| format!("a{i}")).collect();
            names.join(",")
        }
    }
}

/// `at` (a past instant) in milliseconds since the Unix epoch.
fn unix_ms_at(at: Instant) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.saturating_sub(at.elapsed()).as_millis()).unwrap_or(0)
}

/// Whether SIGTERM (signal 15) is in the process's blocked mask (`SigBlk`
/// in `/proc/PID/status`, a hex bit set where bit n-1 is signal n).
fn sigterm_blocked(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << 14) != 0)
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}
