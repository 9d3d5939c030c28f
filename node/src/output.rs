//! What the CLI prints. The only module that writes to stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use shoal_node::api::CoordinatesView;
use shoal_node::view::{MemberView, SelfView};
use shoal_node::workloads::{WorkloadDetail, WorkloadView};
use shoal_protocol::Coordinate;

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

/// An aligned table of members, alive first, then by name, with the round
/// trip this agent's coordinates estimate (`rtts`, milliseconds by member
/// id) when there are any.
pub(crate) fn members_table(members: &[MemberView], rtts: &BTreeMap<String, f64>) -> anyhow::Result<()> {
    print!("{}", render_members_with_rtt(members, rtts));
    Ok(())
}

pub(crate) fn render_members(members: &[MemberView]) -> String {
    render_members_with_rtt(members, &BTreeMap::new())
}

pub(crate) fn render_members_with_rtt(members: &[MemberView], rtts: &BTreeMap<String, f64>) -> String {
    let mut sorted: Vec<&MemberView> = members.iter().collect();
    sorted.sort_by(|a, b| (a.state, &a.name).cmp(&(b.state, &b.name)));
    let mut header = ["NAME", "STATE", "ADDRESS", "CPU", "MEMORY", "GEN", "INC", "LABELS"].map(String::from).to_vec();
    let with_rtt = !rtts.is_empty();
    if with_rtt {
        header.insert(3, "RTT".into());
    }
    let mut rows = vec![header];
    for m in sorted {
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut row = vec![
            m.name.clone(),
            shoal_node::metrics::state_name(m.state).to_string(),
            m.addr.clone(),
            format!("{}m", m.capacity.cpu_millis),
            human_bytes(m.capacity.memory_bytes),
            m.generation.to_string(),
            m.incarnation.to_string(),
            labels.join(","),
        ];
        if with_rtt {
            row.insert(3, rtts.get(&m.id).map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}ms")));
        }
        rows.push(row);
    }
    table(&rows)
}

/// The estimated round trips in a coordinates view, milliseconds by member id.
pub(crate) fn rtts_by_id(view: &CoordinatesView) -> BTreeMap<String, f64> {
    view.members.iter().filter_map(|m| Some((m.id.clone(), m.rtt_ms?))).collect()
}

/// The member named `wanted` (by name, id, or unique id prefix) and the
/// coordinate the agent holds for it.
pub(crate) fn find_coordinate(view: &CoordinatesView, wanted: &str) -> anyhow::Result<(String, Coordinate)> {
    let by_name: Vec<_> = view.members.iter().filter(|m| m.name == wanted || m.id == wanted).collect();
    let found = if by_name.len() == 1 {
        by_name
    } else {
        view.members.iter().filter(|m| !wanted.is_empty() && m.id.starts_with(wanted)).collect()
    };
    let member = match found.as_slice() {
        [one] => *one,
        [] => anyhow::bail!("no live member named `{wanted}` (names, ids and id prefixes are accepted)"),
        _ => anyhow::bail!("`{wanted}` names {} members: give the id", found.len()),
    };
    let coordinate = member.coordinate.as_ref().with_context(|| {
        format!("this agent holds no coordinate for {} yet: it learns one when it probes the member", member.name)
    })?;
    Ok((member.name.clone(), coordinate.to_coordinate()))
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

#[cfg(test)]
mod tests {
    use shoal_node::api::{CoordinateView, MemberCoordinateView};

    use super::*;

    fn member(id: &str, name: &str, x: Option<f64>) -> MemberCoordinateView {
        let coordinate = x.map(|x| CoordinateView { vec: vec![x, 0.0], error: 0.2, adjustment: 0.0, height: 0.001 });
        MemberCoordinateView { id: id.into(), name: name.into(), coordinate, rtt_ms: x.map(|x| x * 1e3 + 2.0) }
    }

    fn view() -> CoordinatesView {
        let coordinate = CoordinateView { vec: vec![0.0, 0.0], error: 0.2, adjustment: 0.0, height: 0.001 };
        let members =
            vec![member("aa01", "me", Some(0.0)), member("ab02", "far", Some(0.05)), member("ab03", "new", None)];
        CoordinatesView { id: "aa01".into(), coordinate, members }
    }

    #[test]
    fn members_are_found_by_name_id_or_unique_prefix() -> anyhow::Result<()> {
        let view = view();
        let (name, far) = find_coordinate(&view, "far")?;
        assert_eq!((name.as_str(), far.vec[0]), ("far", 0.05));
        assert_eq!(find_coordinate(&view, "aa")?.0, "me");
        assert_eq!(find_coordinate(&view, "ab02")?.0, "far");
        let ambiguous = find_coordinate(&view, "ab").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(ambiguous.contains("names 2 members"), "{ambiguous}");
        let missing = find_coordinate(&view, "nobody").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(missing.contains("no live member"), "{missing}");
        let unknown = find_coordinate(&view, "new").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(unknown.contains("holds no coordinate for new"), "{unknown}");
        let rtt = shoal_protocol::estimate_rtt(&find_coordinate(&view, "me")?.1, &far).context("comparable")?;
        assert!((rtt.as_secs_f64() - 0.052).abs() < 1e-9, "50 ms apart plus two 1 ms heights: {rtt:?}");
        Ok(())
    }

    #[test]
    fn the_member_table_shows_estimated_round_trips_when_there_are_any() {
        let member = |id: &str, name: &str| MemberView {
            id: id.into(),
            name: name.into(),
            state: shoal_protocol::State::Alive,
            addr: "10.0.0.1:7946".into(),
            capacity: shoal_protocol::Capacity { cpu_millis: 1000, memory_bytes: 1 << 30 },
            labels: BTreeMap::new(),
            generation: 1,
            incarnation: 0,
        };
        let members = vec![member("ab02", "far"), member("ab03", "new")];
        let plain = render_members(&members);
        assert!(!plain.contains("RTT"));
        let table = render_members_with_rtt(&members, &rtts_by_id(&view()));
        let rtt_column: Vec<&str> = table.lines().filter_map(|line| line.split_whitespace().nth(3)).collect();
        assert_eq!(rtt_column, vec!["RTT", "52.0ms", "-"], "{table}");
    }
}
