//! chitchat (Quickwit's scuttlebutt gossip) against Shoal, loopback-like:
//! no loss, every node joins through node 0 at once.
//!
//! chitchat runs N real instances in one process over its `ChannelTransport`
//! (which counts every serialised message), on a current-thread tokio runtime
//! with the clock paused: time advances only when every task waits, so a
//! run is virtual time like the simulator's. Shoal runs in the simulator
//! with a constant 100 µs latency and no loss.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use chitchat::transport::ChannelTransport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion, spawn_chitchat};
use shoal_sim::net::Latency;
use shoal_sim::scenario::Bootstrap;
use shoal_sim::units::Dur;
use shoal_sim::{Scenario, Simulation};

use crate::rows::GossipRow;
use crate::say;

/// Quickwit's gossip interval; chitchat's failure detector defaults.
const GOSSIP: Duration = Duration::from_secs(1);
/// Give up on convergence after this long (virtual).
const LIMIT: Duration = Duration::from_secs(300);
/// Steady-state window for bytes per node per second.
const STEADY: Duration = Duration::from_secs(60);

fn addr(i: usize) -> SocketAddr {
    let port = u16::try_from(10_000 + i).unwrap_or(u16::MAX);
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn all_see_all(handles: &[ChitchatHandle], n: usize) -> bool {
    for handle in handles {
        let live = handle.with_chitchat(|c| c.live_nodes().count()).await;
        if live < n {
            return false;
        }
    }
    true
}

async fn chitchat_cluster(n: usize) -> Result<GossipRow> {
    let transport = ChannelTransport::default();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(format!("node-{i}"), 0, addr(i)),
            cluster_id: "bench".to_owned(),
            gossip_interval: GOSSIP,
            listen_addr: addr(i),
            seed_nodes: vec![addr(0).to_string()],
            failure_detector_config: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        handles.push(spawn_chitchat(config, Vec::new(), &transport).await?);
    }
    let start = tokio::time::Instant::now();
    let mut converge_s = None;
    while start.elapsed() < LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if all_see_all(&handles, n).await {
            converge_s = Some(start.elapsed().as_secs_f64());
            break;
        }
    }
    let before = transport.statistics();
    tokio::time::sleep(STEADY).await;
    let after = transport.statistics();
    let per = |x: u64| x as f64 / STEADY.as_secs_f64() / n as f64;
    for handle in handles {
        handle.shutdown().await?;
    }
    Ok(GossipRow {
        system: "chitchat".to_owned(),
        nodes: n,
        converge_s,
        bytes_per_node_s: per(after.num_bytes_total - before.num_bytes_total),
        msgs_per_node_s: per(after.num_messages_total - before.num_messages_total),
        config: format!(
            "chitchat 0.13, gossip every {GOSSIP:?} (Quickwit's), phi threshold 8, protocol V1, channel transport"
        ),
    })
}

fn chitchat(n: usize) -> Result<GossipRow> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
    runtime.block_on(chitchat_cluster(n))
}

fn shoal(n: usize) -> Result<GossipRow> {
    let mut scenario = Scenario::builtin("steady").ok_or_else(|| anyhow::anyhow!("no steady built-in"))?;
    scenario = scenario.with_nodes(n).with_duration(Dur::secs(240));
    scenario.bootstrap = Bootstrap::OneSeed { over: Dur::secs(0) };
    scenario.network.latency = Latency::Constant { value: Dur::from_micros(100) };
    let mut sim = Simulation::new(scenario, 1)?;
    sim.leak_on_finish();
    let report = sim.run();
    let converge = report.summary("time_to_converge_s").filter(|s| s.count > 0).map(|s| s.max);
    Ok(GossipRow {
        system: "shoal".to_owned(),
        nodes: n,
        converge_s: converge,
        bytes_per_node_s: report.bytes_per_node_s_second_half,
        msgs_per_node_s: report.msgs_per_node_s.mean,
        config: "Shoal `lan` preset, simulator, constant 100 µs latency, no loss".to_owned(),
    })
}

/// Both systems at each size.
pub(crate) fn run_all(nodes: &[usize]) -> Result<Vec<GossipRow>> {
    let mut rows = Vec::new();
    for &n in nodes {
        say(&format!("chitchat: N={n}"));
        rows.push(shoal(n)?);
        rows.push(chitchat(n)?);
    }
    Ok(rows)
}
