//! What the CLI prints. The only module that writes to stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde::Serialize;
use shoal_node::view::{MemberView, SelfView};
use shoal_node::workloads::{WorkloadDetail, WorkloadView};

pub(crate) fn line(text: &str) {
    println!("{text}");
}

pub(crate) fn error(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
}

pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An aligned table of members, alive first, then by name.
pub(crate) fn members_table(members: &[MemberView]) -> anyhow::Result<()> {
    print!("{}", render_members(members));
    Ok(())
}

pub(crate) fn render_members(members: &[MemberView]) -> String {
    let mut sorted: Vec<&MemberView> = members.iter().collect();
    sorted.sort_by(|a, b| (a.state, &a.name).cmp(&(b.state, &b.name)));
    let header = ["NAME", "STATE", "ADDRESS", "CPU", "MEMORY", "GEN", "INC", "LABELS"].map(String::from);
    let mut rows = vec![header.to_vec()];
    for m in sorted {
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(vec![
            m.name.clone(),
            shoal_node::metrics::state_name(m.state).to_string(),
            m.addr.clone(),
            format!("{}m", m.capacity.cpu_millis),
            human_bytes(m.capacity.memory_bytes),
            m.generation.to_string(),
            m.incarnation.to_string(),
            labels.join(","),
        ]);
    }
    table(&rows)
}

/// Rows as aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// An aligned table of workloads, by name.
pub(crate) fn workloads_table(workloads: &[WorkloadView]) -> anyhow::Result<()> {
    if workloads.is_empty() {
        println!("no workloads (`shoal submit FILE` adds one)");
        return Ok(());
    }
    print!("{}", render_workloads(workloads));
    Ok(())
}

pub(crate) fn render_workloads(workloads: &[WorkloadView]) -> String {
    let header = ["NAME", "DESIRED", "RUNNING", "NODES", "STATE"].map(String::from);
    let mut rows = vec![header.to_vec()];
    for w in workloads {
        let nodes: Vec<&str> = w.placement.iter().filter_map(|r| r.node.as_deref()).collect();
        rows.push(vec![
            w.name.clone(),
            w.replicas.to_string(),
            w.running.to_string(),
            if nodes.is_empty() { "-".into() } else { nodes.join(",") },
            w.state.to_string(),
        ]);
    }
    table(&rows)
}

pub(crate) fn workload_detail(detail: &WorkloadDetail) -> anyhow::Result<()> {
    let w = &detail.workload;
    let s = &detail.spec;
    let memory = s.resources.memory.as_ref().and_then(|m| m.bytes()).unwrap_or(0);
    println!("name:         {}", w.name);
    println!("state:        {}", w.state);
    let placed = w.placement.iter().filter(|r| r.node.is_some()).count();
    println!("replicas:     {} desired, {placed} placed, {} running", w.replicas, w.running);
    println!("resources:    {}m cpu, {} per replica", s.resources.cpu, human_bytes(memory));
    let constraints: Vec<String> = s.constraints.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("constraints:  {}", if constraints.is_empty() { "none".into() } else { constraints.join(", ") });
    let driver = serde_json::to_string(&s.driver)?;
    println!("driver:       {driver}");
    println!("restart:      {}", serde_json::to_string(&s.restart)?);
    println!("version:      {} (written by {})", detail.clock, detail.written_by);
    for r in &w.placement {
        let node = match (&r.node, &r.node_id) {
            (Some(name), Some(id)) => format!("on {name} ({id})"),
            _ => "on no node".to_string(),
        };
        let mut line = format!("replica {:<4}  {:<8} {node}", r.replica, r.state);
        if r.restarts > 0 {
            line.push_str(&format!(", {} restarts", r.restarts));
        }
        if !r.detail.is_empty() {
            line.push_str(&format!(": {}", r.detail));
        }
        if !r.elsewhere.is_empty() {
            line.push_str(&format!(" (handing over from {})", r.elsewhere.join(", ")));
        }
        println!("{line}");
    }
    if let Some(why) = &w.unplaced {
        println!("unplaced:     {why}");
    }
    if !detail.events.is_empty() {
        println!("recent events (this node's view):");
        for event in &detail.events {
            println!("  {:>6}  {}", format!("{}s ago", event.secs_ago), event.what);
        }
    }
    Ok(())
}

pub(crate) fn status(me: &SelfView) -> anyhow::Result<()> {
    let members: Vec<String> = me.members.iter().map(|(state, n)| format!("{n} {state}")).collect();
    let m = &me.member;
    println!("name:         {}", m.name);
    println!("state:        {}", shoal_node::metrics::state_name(m.state));
    println!("node id:      {}", m.id);
    println!("keys:         {} (primary first)", me.keys.join(", "));
    println!("address:      {}", m.addr);
    println!("generation:   {} (incarnation {})", m.generation, m.incarnation);
    println!("capacity:     {}m cpu, {}", m.capacity.cpu_millis, human_bytes(m.capacity.memory_bytes));
    println!("profile:      {}", me.profile);
    println!("members:      {}", members.join(", "));
    println!("local health: {} (0 is healthy)", me.local_health);
    println!("uptime:       {}s", me.uptime_secs);
    println!("data dir:     {}", me.data_dir);
    Ok(())
}

pub(crate) fn keys(view: &shoal_node::keys::KeysView) {
    println!("{}: {} of {} agents answered", view.op, view.ok, view.agents);
    println!("{:<10} {:>9} {:>9}", "KEY", "INSTALLED", "PRIMARY");
    for key in &view.keys {
        println!("{:<10} {:>9} {:>9}", key.id, format!("{}/{}", key.installed, view.agents), key.primary);
    }
    for failure in &view.failures {
        println!("failed on {}: {}", failure.node, failure.error);
    }
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}B") } else { format!("{value:.1}{}", units[unit]) }
}
