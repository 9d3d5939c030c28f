//! The Serf comparison: the same steps, measured the same way, for each
//! system and size. One [`NetRow`] per (system, N).
//!
//! 1. join: agent 0 starts; once it is up, every other agent starts and
//!    joins through it; time from the last start until every agent's log
//!    says every agent is alive;
//! 2. steady: after `settle`, over `window`: bytes sent per agent per second
//!    (the IP bytes each host sent, and its `eth0` TX counter, which adds
//!    Ethernet framing and ARP), CPU, RSS, open UDP and TCP sockets;
//! 3. loss: every host drops `loss_p` of what it receives for `loss`:
//!    (viewer, member) pairs reported failed until the views are whole again;
//! 4. pause: agent 1 SIGSTOPped for `pause`, then watched for `after_pause`:
//!    the same count;
//! 5. kill and rejoin, `rounds` times: an agent gets `kill -9` (time until
//!    every other agent's log reports it failed), then starts again and
//!    joins through agent 0 (time until it and every other agent see each
//!    other alive); the next round waits `recover` so no agent's Lifeguard
//!    health still counts the last one. One kill is one draw of where the
//!    victim sits in every prober's round-robin, so a single sample says
//!    little: the row keeps the median and every sample.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::{Fault, Lab, System, procfs};

/// How long each step lasts.
#[derive(Clone, Debug)]
pub struct Timing {
    /// From the mesh formed to the start of the steady window.
    pub settle: Duration,
    /// The steady window.
    pub window: Duration,
    /// How long the loss lasts.
    pub loss: Duration,
    /// The fraction of packets lost.
    pub loss_p: f64,
    /// How long the paused agent stays stopped.
    pub pause: Duration,
    /// How long false failures are watched for after it resumes.
    pub after_pause: Duration,
    /// Give up on a join, a recovery or a detection after this.
    pub limit: Duration,
    /// Kill-and-rejoin rounds.
    pub rounds: usize,
    /// Formations measured (the run's own, then fresh labs): one formation
    /// is one draw of the joiners' start order, so one sample says little.
    pub joins: usize,
    /// The pause between rounds.
    pub recover: Duration,
}

impl Timing {
    /// The measurement: a 60 s window 3 minutes after the mesh formed, 60 s
    /// of 5% loss, a 3 s pause watched for 20 s.
    pub fn full() -> Timing {
        Timing {
            settle: Duration::from_secs(180),
            window: Duration::from_secs(60),
            loss: Duration::from_secs(60),
            loss_p: 0.05,
            pause: Duration::from_secs(3),
            after_pause: Duration::from_secs(20),
            limit: Duration::from_secs(120),
            rounds: 5,
            recover: Duration::from_secs(10),
            joins: 5,
        }
    }

    /// For development: the same steps in about a minute.
    pub fn quick() -> Timing {
        Timing {
            settle: Duration::from_secs(10),
            window: Duration::from_secs(10),
            loss: Duration::from_secs(20),
            after_pause: Duration::from_secs(10),
            rounds: 2,
            recover: Duration::from_secs(3),
            joins: 1,
            ..Timing::full()
        }
    }
}

/// One (system, N) measurement; the fields of `NetRow` in
/// sim/src/bin/compare/rows.rs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetRow {
    /// `shoal` or `serf`.
    pub system: String,
    /// Agents.
    pub nodes: usize,
    /// Where: `namespaces` (one per agent, on a bridge).
    pub lab: String,
    /// Seconds from the last agent started until every agent listed every
    /// agent alive: the median of `join_samples`.
    pub join_s: Option<f64>,
    /// Every formation's join time: the run's own first, then one per
    /// extra formation (`Timing::joins`), each on a fresh lab.
    pub join_samples: Vec<Option<f64>>,
    /// Seconds it took to start the agents (agent 0 up, then the others).
    pub start_s: f64,
    /// Seconds from `kill -9` until every other agent reported it failed:
    /// the median of `detect_samples`.
    pub detect_s: Option<f64>,
    /// Every kill round's detection time, in order (`None`: not within the
    /// limit).
    pub detect_samples: Vec<Option<f64>>,
    /// Seconds from a killed agent's restart until it and every other agent
    /// see each other alive (one agent joining through one seed): the median
    /// of `rejoin_samples`.
    pub rejoin_s: Option<f64>,
    /// Every round's rejoin time, in order.
    pub rejoin_samples: Vec<Option<f64>>,
    /// (viewer, member) pairs reported failed during the loss.
    pub false_loss: Option<u64>,
    /// The same around the pause of one agent.
    pub false_pause: Option<u64>,
    /// Mean resident memory per agent, KiB, at the end of the window.
    pub rss_kib: Option<f64>,
    /// CPU per agent over the window, percent of one core.
    pub cpu_pct: Option<f64>,
    /// Bytes sent per agent per second over the window (mean of the
    /// agents): each host's `eth0` TX counter, so Ethernet framing and the
    /// kernel's ARP traffic are in.
    pub bytes_per_s: Option<f64>,
    /// The busiest agent's.
    pub bytes_per_s_max: Option<f64>,
    /// IP bytes sent per agent per second (`IpExt: OutOctets`): what the
    /// agent sent, IP and UDP/TCP headers included, without Ethernet framing
    /// or ARP.
    pub ip_bytes_per_s: Option<f64>,
    /// The busiest agent's.
    pub ip_bytes_per_s_max: Option<f64>,
    /// The `shoal` agent's own traffic counters over the window, per agent
    /// per second (a few agents' mean): bytes and messages by kind, streams,
    /// syncs. Empty for Serf.
    pub agent_rates: BTreeMap<String, f64>,
    /// Open UDP sockets per agent (mean), at the end of the window.
    pub sockets_udp: Option<f64>,
    /// Open TCP sockets per agent (mean, listening ones included).
    pub sockets_tcp: Option<f64>,
    /// Seconds from the mesh formed to the window's start.
    pub settle_s: f64,
    /// The window, seconds.
    pub window_s: f64,
    /// Seconds of loss, and its rate.
    pub loss_s: f64,
    /// Loss rate.
    pub loss_p: f64,
    /// The configuration in words.
    pub config: String,
}

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Runs every step on `lab` (fresh, no agent started) and stops its agents.
pub fn run(lab: &mut Lab, timing: &Timing) -> Result<NetRow> {
    let n = lab.len();
    let (system, config) = (lab.system.name(), lab.system.describe());
    say(&format!("== {system}, {n} agents ({config})"));
    let mut row = NetRow {
        system,
        nodes: n,
        lab: "namespaces".into(),
        config,
        settle_s: timing.settle.as_secs_f64(),
        window_s: timing.window.as_secs_f64(),
        loss_s: timing.loss.as_secs_f64(),
        loss_p: timing.loss_p,
        ..NetRow::default()
    };
    let begun = Instant::now();
    let started = lab.start_all()?;
    row.start_s = secs(started - begun);
    let formed = lab.wait_all_see_all(timing.limit);
    let join = formed.map(|at| secs(at.saturating_duration_since(started)));
    row.join_samples.push(join);
    row.join_s = join;
    say(&format!("   started in {:.2} s; all see all after {}", row.start_s, show(join)));
    let Some(formed) = formed else { bail!("the mesh did not form within {:?}", timing.limit) };

    sleep_until(formed + timing.settle);
    steady(lab, timing.window, &mut row)?;

    let loss_began = Instant::now();
    lab.fault(&Fault::Loss(timing.loss_p))?;
    std::thread::sleep(timing.loss);
    lab.heal()?;
    let _ = lab.wait_all_see_all(timing.limit);
    row.false_loss = Some(lab.views.failed_pairs(loss_began).len() as u64);
    say(&format!(
        "   {}% loss for {:?}: {} false failures",
        timing.loss_p * 100.0,
        timing.loss,
        show_u(row.false_loss)
    ));

    if n > 1 {
        let paused = Instant::now();
        lab.signal(1, Signal::SIGSTOP)?;
        std::thread::sleep(timing.pause);
        lab.signal(1, Signal::SIGCONT)?;
        std::thread::sleep(timing.after_pause);
        let _ = lab.wait_all_see_all(timing.limit);
        row.false_pause = Some(lab.views.failed_pairs(paused).len() as u64);
        say(&format!("   {:?} pause of a1: {} false failures", timing.pause, show_u(row.false_pause)));
    }

    if n > 2 {
        for round in 0..timing.rounds {
            // Never agent 0 (the seed) or 1 (the one paused above).
            let victim = 2 + (n / 2 - 2 + round) % (n - 2);
            let (detect, rejoin) = kill_and_rejoin(lab, victim, timing)?;
            say(&format!(
                "   round {round}: kill -9 of a{victim}: known failed everywhere after {}; rejoined in {}",
                show(detect),
                show(rejoin)
            ));
            row.detect_samples.push(detect);
            row.rejoin_samples.push(rejoin);
        }
        row.detect_s = median(&row.detect_samples);
        row.rejoin_s = median(&row.rejoin_samples);
    }
    lab.stop_all();
    Ok(row)
}

/// How many agents' own counters the steady window reads (a sample: the
/// agents are alike, and N API calls would disturb the window).
const COUNTER_SAMPLE: usize = 5;

/// The `shoal` agent's counters that say where its bytes go.
fn is_traffic_counter(name: &str) -> bool {
    ["shoal_bytes_out_total", "shoal_messages_out_total", "shoal_syncs_started_total", "shoal_transport_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The traffic counters of a few agents (`shoal` only: Serf has no such
/// endpoint), to subtract at the end of the window.
fn sample_counters(lab: &Lab, live: &[usize]) -> Vec<(usize, BTreeMap<String, f64>)> {
    if !matches!(lab.system, System::Shoal { .. }) {
        return Vec::new();
    }
    live.iter()
        .take(COUNTER_SAMPLE)
        .filter_map(|&i| Some((i, lab.metrics(i).ok()?.into_iter().filter(|(k, _)| is_traffic_counter(k)).collect())))
        .collect()
}

/// Per agent per second, the mean over the sampled agents of each counter's
/// growth since `before`.
fn counter_rates(lab: &Lab, before: &[(usize, BTreeMap<String, f64>)], elapsed: f64) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut agents = 0.0_f64;
    for (i, then) in before {
        let Ok(now) = lab.metrics(*i) else { continue };
        agents += 1.0;
        for (name, old) in then {
            *sums.entry(name.clone()).or_default() += now.get(name).map_or(0.0, |new| new - old) / elapsed;
        }
    }
    sums.into_iter().filter(|(_, v)| *v > 0.0).map(|(k, v)| (k, v / agents.max(1.0))).collect()
}

/// One round: `kill -9` of `victim`, the time until every other agent
/// reports it failed; then its restart, the time until every agent sees
/// every other alive again; then `recover`.
fn kill_and_rejoin(lab: &mut Lab, victim: usize, timing: &Timing) -> Result<(Option<f64>, Option<f64>)> {
    let killed = Instant::now();
    lab.kill(victim)?;
    let viewers = lab.running();
    let deadline = killed + timing.limit;
    let detect = loop {
        if let Some(at) = lab.views.all_failed(&lab.names[victim], &viewers, killed) {
            break Some(secs(at - killed));
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let started = Instant::now();
    lab.start(victim)?;
    let rejoin = lab.wait_all_see_all(timing.limit).map(|at| secs(at.saturating_duration_since(started)));
    std::thread::sleep(timing.recover);
    Ok((detect, rejoin))
}

/// One more formation on `lab` (fresh, no agent started): seconds from the
/// last start until all see all, for [`NetRow::join_samples`]. Stops the
/// agents.
pub fn join(lab: &mut Lab, timing: &Timing) -> Result<Option<f64>> {
    let started = lab.start_all()?;
    let join = lab.wait_all_see_all(timing.limit).map(|at| secs(at.saturating_duration_since(started)));
    say(&format!("   another formation: all see all after {}", show(join)));
    lab.stop_all();
    Ok(join)
}

impl NetRow {
    /// Adds an extra formation's join time; `join_s` becomes the median.
    pub fn add_join(&mut self, join: Option<f64>) {
        self.join_samples.push(join);
        self.join_s = median(&self.join_samples);
    }
}

/// The median of the samples that have a value (`None` if any is missing:
/// a detection that never happened is not averaged away).
fn median(samples: &[Option<f64>]) -> Option<f64> {
    let mut values: Vec<f64> = samples.iter().copied().collect::<Option<_>>()?;
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 { values[mid] } else { f64::midpoint(values[mid - 1], values[mid]) })
}

/// The steady-state window: bytes, CPU, memory and sockets.
fn steady(lab: &Lab, window: Duration, row: &mut NetRow) -> Result<()> {
    let live = lab.running();
    let pids: Vec<u32> = live.iter().filter_map(|&i| lab.pid(i)).collect();
    let tx = |lab: &Lab| -> Result<Vec<(u64, u64)>> {
        live.iter()
            .map(|&i| Ok((procfs::tx_bytes(lab.net.host(i))?, procfs::ip_out_octets(lab.net.host(i))?)))
            .collect()
    };
    let cpu = |pids: &[u32]| -> Vec<u64> { pids.iter().map(|&p| procfs::cpu_ticks(p).unwrap_or(0)).collect() };
    let sampled = sample_counters(lab, &live);
    let (tx0, cpu0, t0) = (tx(lab)?, cpu(&pids), Instant::now());
    std::thread::sleep(window);
    let (tx1, cpu1, elapsed) = (tx(lab)?, cpu(&pids), t0.elapsed().as_secs_f64());
    row.agent_rates = counter_rates(lab, &sampled, elapsed);
    let n = pids.len().max(1) as f64;
    let rate = |pick: fn(&(u64, u64)) -> u64| -> Vec<f64> {
        tx0.iter().zip(&tx1).map(|(a, b)| pick(b).saturating_sub(pick(a)) as f64 / elapsed).collect()
    };
    let (wire, ip) = (rate(|c| c.0), rate(|c| c.1));
    row.bytes_per_s = Some(wire.iter().sum::<f64>() / n);
    row.bytes_per_s_max = wire.iter().copied().reduce(f64::max);
    row.ip_bytes_per_s = Some(ip.iter().sum::<f64>() / n);
    row.ip_bytes_per_s_max = ip.iter().copied().reduce(f64::max);
    let ticks: u64 = cpu0.iter().zip(&cpu1).map(|(a, b)| b.saturating_sub(*a)).sum();
    row.cpu_pct = Some(100.0 * ticks as f64 / procfs::ticks_per_s() / elapsed / n);
    let rss: u64 = pids.iter().filter_map(|&p| procfs::rss_kib(p)).sum();
    row.rss_kib = Some(rss as f64 / n);
    let mut udp = 0;
    let mut tcp = 0;
    for &pid in &pids {
        let s = procfs::sockets(pid).with_context(|| format!("sockets of {pid}"))?;
        udp += s.udp;
        tcp += s.tcp;
    }
    row.sockets_udp = Some(f64::from(udp) / n);
    row.sockets_tcp = Some(f64::from(tcp) / n);
    say(&format!(
        "   steady over {elapsed:.0} s: {:.0} IP B/s per agent ({:.0} on eth0, max {:.0}), CPU {:.2}%, RSS {:.0} KiB, sockets {:.1} UDP + {:.1} TCP",
        row.ip_bytes_per_s.unwrap_or(0.0),
        row.bytes_per_s.unwrap_or(0.0),
        row.bytes_per_s_max.unwrap_or(0.0),
        row.cpu_pct.unwrap_or(0.0),
        row.rss_kib.unwrap_or(0.0),
        row.sockets_udp.unwrap_or(0.0),
        row.sockets_tcp.unwrap_or(0.0),
    ));
    Ok(())
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "never (limit reached)".into(), |v| format!("{v:.2} s"))
}

fn show_u(v: Option<u64>) -> String {
    v.map_or_else(|| "—".into(), |v| v.to_string())
}
