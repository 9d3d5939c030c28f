//! `GET /metrics`: the protocol's counters, members by state, replicas by
//! state, the probe round-trip histogram and the transport's counters (with
//! the datagrams and frames that did not open, by reason), in Prometheus text.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use shoal_protocol::{Node, ReplicaState, RttHistogram, State};

use crate::crypto::OpenError;
use crate::transport::{ByOpenError, TransportCounters};

/// Renders every metric. Counter names follow the protocol's field names, so a
/// counter the protocol adds shows up here without a change.
pub fn render(protocol: &Node, transport: &TransportCounters) -> String {
    let mut out = String::new();
    let counters = serde_json::to_value(protocol.membership().counters()).unwrap_or_default();
    if let Some(fields) = counters.as_object() {
        for (name, value) in fields {
            if let Some(n) = value.as_u64() {
                counter(&mut out, &format!("shoal_{name}_total"), "", n);
            } else if let Some(kinds) = value.as_object().filter(|_| name != "probe_rtt") {
                let metric = format!("shoal_{name}_total");
                let _ = writeln!(out, "# TYPE {metric} counter");
                for (kind, n) in kinds {
                    let _ = writeln!(out, "{metric}{{kind=\"{kind}\"}} {}", n.as_u64().unwrap_or(0));
                }
            }
        }
    }
    rtt_histogram(&mut out, &protocol.membership().counters().probe_rtt);

    let _ = writeln!(out, "# TYPE shoal_members gauge");
    for state in [State::Alive, State::Suspect, State::Dead, State::Left] {
        let n = protocol.membership().members().filter(|m| m.state == state).count();
        let _ = writeln!(out, "shoal_members{{state=\"{}\"}} {n}", state_name(state));
    }
    // Every node's reports as this node knows them, and this node's own.
    let here = protocol.membership().id();
    for (metric, only_here) in [("shoal_replicas", false), ("shoal_local_replicas", true)] {
        let _ = writeln!(out, "# TYPE {metric} gauge");
        for state in [ReplicaState::Starting, ReplicaState::Running, ReplicaState::Failed] {
            let n = protocol
                .workloads()
                .replica_statuses()
                .filter(|e| e.status.state == state && (!only_here || e.node == here))
                .count();
            let _ = writeln!(out, "{metric}{{state=\"{}\"}} {n}", crate::view::ReplicaPhase::from(state));
        }
    }
    let _ =
        writeln!(out, "# TYPE shoal_local_health gauge\nshoal_local_health {}", protocol.membership().local_health());
    let _ = writeln!(
        out,
        "# TYPE shoal_pending_broadcasts gauge\nshoal_pending_broadcasts {}",
        protocol.membership().pending_broadcasts()
    );

    let t = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    for (name, value) in [
        ("datagrams_in", t(&transport.datagrams_in)),
        ("datagrams_out", t(&transport.datagrams_out)),
        ("datagram_bytes_in", t(&transport.datagram_bytes_in)),
        ("datagram_bytes_out", t(&transport.datagram_bytes_out)),
        ("frames_in", t(&transport.frames_in)),
        ("frames_out", t(&transport.frames_out)),
        ("frame_bytes_in", t(&transport.frame_bytes_in)),
        ("frame_bytes_out", t(&transport.frame_bytes_out)),
        ("frames_malformed", t(&transport.frames_malformed)),
        ("streams_opened", t(&transport.streams_opened)),
        ("streams_accepted", t(&transport.streams_accepted)),
        ("inbound_dropped", t(&transport.inbound_dropped)),
        ("outbound_dropped", t(&transport.outbound_dropped)),
        ("unroutable", t(&transport.unroutable)),
        ("unreachable", t(&transport.unreachable)),
    ] {
        counter(&mut out, &format!("shoal_transport_{name}_total"), "", value);
    }
    by_reason(&mut out, "shoal_transport_datagrams_rejected_total", &transport.datagrams_rejected);
    by_reason(&mut out, "shoal_transport_frames_rejected_total", &transport.frames_rejected);
    let _ = writeln!(out, "# TYPE shoal_transport_streams_open gauge");
    let _ = writeln!(out, "shoal_transport_streams_open {}", t(&transport.streams_open));
    out
}

fn by_reason(out: &mut String, metric: &str, counts: &ByOpenError) {
    let _ = writeln!(out, "# TYPE {metric} counter");
    for reason in OpenError::ALL {
        let _ = writeln!(out, "{metric}{{reason=\"{}\"}} {}", reason.name(), counts.get(reason));
    }
}

/// The lowercase name of a state, as the API and metrics spell it.
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Alive => "alive",
        State::Suspect => "suspect",
        State::Dead => "dead",
        State::Left => "left",
    }
}

fn counter(out: &mut String, metric: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "# TYPE {metric} counter\n{metric}{labels} {value}");
}

fn rtt_histogram(out: &mut String, rtt: &RttHistogram) {
    let metric = "shoal_probe_rtt_seconds";
    let _ = writeln!(out, "# TYPE {metric} histogram");
    let mut cumulative = 0;
    for (i, bound) in RttHistogram::BOUNDS_MICROS.iter().enumerate() {
        cumulative += rtt.buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{metric}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
    }
    let total: u64 = rtt.buckets.iter().sum();
    let _ = writeln!(out, "{metric}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{metric}_sum {}", rtt.sum_micros as f64 / 1e6);
    let _ = writeln!(out, "{metric}_count {total}");
}
