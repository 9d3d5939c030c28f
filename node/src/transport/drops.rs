//! Datagrams QUIC dropped before they reached any connection: random bytes,
//! truncated or undecryptable Initials, packets for connections this endpoint
//! never had. libp2p-quic hands quinn the UDP socket and exposes no count of
//! these, and quinn's own `EndpointStats` counts only handshakes; but
//! `quinn_proto::endpoint` emits exactly one trace or debug event for every
//! datagram it discards. [`layer`] counts those events, whatever `RUST_LOG`
//! says, through a per-layer filter that lets only that one target through.
//!
//! The counters are per process: the `shoal` binary runs one agent per
//! process, and quinn's events carry nothing that names the endpoint.
//!
//! The match is on the events' message prefixes, as quinn-proto 0.11 words
//! them (see `Endpoint::handle` and `Endpoint::accept`); the garbage
//! integration test (`tests/tests/garbage.rs`) fails if an upgrade rewords them.

use std::fmt::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;

/// quinn-proto's module whose events say a datagram was discarded.
const TARGET: &str = "quinn_proto::endpoint";

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The header does not parse (random bytes, truncated packets).
    Malformed,
    /// A long header with a QUIC version nobody in the mesh speaks (answered
    /// with a version negotiation when it is at least 1200 bytes).
    UnsupportedVersion,
    /// A packet for a connection this endpoint does not have: a connection id
    /// it never issued (random bytes), or one of a connection that is gone
    /// (a peer's late packets after a close or one of our restarts).
    UnknownConnection,
    /// An Initial (connection attempt) that is too short, does not decrypt,
    /// or is otherwise invalid.
    BadInitial,
    /// An Initial ignored because the endpoint is saturated with attempts.
    Overload,
}

impl DropReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [DropReason; 5] = [
        DropReason::Malformed,
        DropReason::UnsupportedVersion,
        DropReason::UnknownConnection,
        DropReason::BadInitial,
        DropReason::Overload,
    ];

    /// The label value metrics use.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnsupportedVersion => "unsupported_version",
            DropReason::UnknownConnection => "unknown_connection",
            DropReason::BadInitial => "bad_initial",
            DropReason::Overload => "overload",
        }
    }
}

/// quinn-proto's messages for a discarded datagram, by prefix.
const MESSAGES: [(&str, DropReason); 18] = [
    ("malformed header", DropReason::Malformed),
    ("dropping packet with unsupported version", DropReason::UnsupportedVersion),
    ("dropping short packet with unsupported version", DropReason::UnsupportedVersion),
    ("sending version negotiation", DropReason::UnsupportedVersion),
    ("ignoring non-initial packet for unknown connection", DropReason::UnknownConnection),
    ("dropping packet with invalid CID", DropReason::UnknownConnection),
    ("dropping unrecognized short packet without ID", DropReason::UnknownConnection),
    ("packet for unrecognized connection", DropReason::UnknownConnection),
    // Both "... within minimum stateless reset interval" and "... byte packet: not larger ...".
    ("ignoring unexpected ", DropReason::UnknownConnection),
    ("sending stateless reset", DropReason::UnknownConnection),
    ("ignoring short initial", DropReason::BadInitial),
    ("ignoring initial packet version", DropReason::BadInitial),
    ("rejecting connection due to invalid DCID length", DropReason::BadInitial),
    ("unable to decode initial packet", DropReason::BadInitial),
    ("dropping connection attempt with invalid reserved bits", DropReason::BadInitial),
    ("rejecting invalid retry token", DropReason::BadInitial),
    ("failed to authenticate initial packet", DropReason::BadInitial),
    ("ignoring initial for connection", DropReason::Overload),
];

static DROPPED: [AtomicU64; DropReason::ALL.len()] = [const { AtomicU64::new(0) }; DropReason::ALL.len()];

/// How many datagrams were dropped for `reason` in this process so far.
pub fn dropped(reason: DropReason) -> u64 {
    DROPPED[reason as usize].load(Ordering::Relaxed)
}

/// The reason a quinn-proto endpoint message names, if it is a drop.
pub fn classify(message: &str) -> Option<DropReason> {
    MESSAGES.iter().find(|(prefix, _)| message.starts_with(prefix)).map(|(_, reason)| *reason)
}

/// The counting layer, filtered to quinn-proto's endpoint events. Add it to
/// the process's subscriber next to the log output.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    DropCounter.with_filter(Targets::new().with_target(TARGET, Level::TRACE))
}

#[derive(Debug)]
struct DropCounter;

impl<S: Subscriber> Layer<S> for DropCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut message = Prefix::default();
        event.record(&mut message);
        if let Some(reason) = classify(message.as_str()) {
            DROPPED[reason as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The first bytes of an event's message: enough to classify it, without
/// allocating for every dropped datagram of a flood.
struct Prefix {
    bytes: [u8; 64],
    len: usize,
}

impl Default for Prefix {
    fn default() -> Prefix {
        Prefix { bytes: [0; 64], len: 0 }
    }
}

impl Prefix {
    fn as_str(&self) -> &str {
        let kept = &self.bytes[..self.len];
        // A cut inside a multi-byte character leaves a valid prefix before it.
        std::str::from_utf8(kept).unwrap_or_else(|e| std::str::from_utf8(&kept[..e.valid_up_to()]).unwrap_or(""))
    }
}

impl Write for Prefix {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        // Stop formatting once full.
        if take < s.len() { Err(fmt::Error) } else { Ok(()) }
    }
}

impl Visit for Prefix {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" && self.len == 0 {
            let _ = write!(self, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn quinn_messages_are_classified() {
        assert_eq!(classify("malformed header: unexpected end of packet"), Some(DropReason::Malformed));
        assert_eq!(classify("dropping packet with invalid CID"), Some(DropReason::UnknownConnection));
        assert_eq!(classify("ignoring unexpected 12 byte packet: not larger"), Some(DropReason::UnknownConnection));
        assert_eq!(classify("failed to authenticate initial packet"), Some(DropReason::BadInitial));
        assert_eq!(classify("ignoring initial for connection 0a1b due to saturation"), Some(DropReason::Overload));
        // Healthy traffic's events are not drops.
        assert_eq!(classify("new connection"), None);
        assert_eq!(classify("peer retired CID 3: 0a1b"), None);
    }

    #[test]
    fn the_layer_counts_only_endpoint_drops_even_when_logs_are_quiet() {
        // Another test may count too (the counters are process-wide), so
        // measure with a message none other sends.
        let before = dropped(DropReason::Overload);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::filter::LevelFilter::ERROR))
            .with(layer());
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..3 {
                tracing::trace!(target: "quinn_proto::endpoint", "ignoring initial for connection {n} due to saturation");
            }
            tracing::debug!(target: "quinn_proto::endpoint", "handshake failed: x");
            tracing::debug!(target: "quinn_proto::connection", "ignoring initial for connection 9 due to saturation");
            tracing::warn!("ignoring initial for connection 9 due to saturation");
        });
        assert_eq!(dropped(DropReason::Overload) - before, 3);
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        let mut prefix = Prefix::default();
        let _ = write!(prefix, "{}", "é".repeat(40));
        assert_eq!(prefix.as_str(), "é".repeat(32));
    }
}
