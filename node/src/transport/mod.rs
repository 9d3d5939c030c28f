//! The agent's network: sealed UDP datagrams for the protocol, and a TCP
//! connection per destination, opened when needed and closed when idle, for
//! what does not fit a datagram.
//!
//! This is memberlist's model. Probes, acks, indirect probes and gossip are
//! single datagrams sealed with the cluster key ([`crate::crypto`]): no
//! per-peer connection, keep-alive or handshake, so the bytes on the wire
//! are the protocol's bytes plus a fixed 45-byte seal and the IP/UDP header
//! (ALGORITHM.md, "On the wire"). Anti-entropy messages (`Body::Sync`, which
//! the simulator also treats as reliable and unbounded by the MTU) and key
//! operations ride TCP on the same port, in sealed length-prefixed frames
//! ([`frame`]). Addresses are plain `HOST:PORT`.
//!
//! Nothing here blocks the agent: a datagram is handed to the kernel with a
//! non-blocking send, a frame to a bounded queue; what cannot be sent at once
//! is dropped and counted, which the protocol treats as loss. Every datagram
//! or frame that does not open under the keyring is dropped and counted by
//! reason; nothing that did not open reaches the protocol.

mod datagram;
pub mod frame;
pub mod mdns;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shoal_protocol::Address;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::crypto::{OpenError, SEAL_OVERHEAD};
use crate::keys::KeyStore;

pub use self::stream::{KeyRequester, RequestError};
use self::stream::{StreamConfig, Streams};

const EVENT_QUEUE: usize = 1024;
/// The UDP receive buffer asked of the kernel (memberlist's 2 MiB): a burst
/// of gossip while the agent is busy waits here instead of being dropped.
const UDP_RECEIVE_BUFFER: usize = 2 << 20;

/// Transport settings.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Where to listen: UDP and TCP on the same port (0 picks one).
    pub bind: SocketAddr,
    /// Largest datagram payload the protocol sends (its datagram budget).
    pub max_datagram: usize,
    /// Largest plaintext message accepted on a stream, in bytes.
    pub max_message: usize,
}

/// Why the transport could not start. Nothing is listening.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The gossip address could not be bound.
    #[error("cannot listen on {addr}, UDP and TCP (is another agent using this port? pass another --bind)")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Something the network did.
#[derive(Debug)]
pub enum TransportEvent {
    /// A message arrived and opened under the keyring.
    Message {
        /// Where to answer: the sender's gossip address, `HOST:PORT`.
        from: Address,
        /// The protocol message.
        bytes: Vec<u8>,
    },
    /// mDNS found an agent at this gossip address.
    Discovered { addr: Address },
    /// An ICMP "port unreachable" came back for a datagram sent to this
    /// address: its host is up and nothing listens there.
    Unreachable { addr: Address },
}

/// A counter per reason a sealed message did not open.
#[derive(Debug, Default)]
pub struct ByOpenError([AtomicU64; 3]);

impl ByOpenError {
    fn bump(&self, reason: OpenError) {
        let at = OpenError::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        bump(&self.0[at], 1);
    }

    /// The count for one reason.
    pub fn get(&self, reason: OpenError) -> u64 {
        let at = OpenError::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.0[at].load(Ordering::Relaxed)
    }

    /// The count over every reason.
    pub fn total(&self) -> u64 {
        OpenError::ALL.into_iter().map(|r| self.get(r)).sum()
    }
}

/// What the transport counted. Monotonic, except the gauges.
#[derive(Debug, Default)]
pub struct TransportCounters {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    /// Sealed bytes (UDP payloads) received and sent.
    pub datagram_bytes_in: AtomicU64,
    pub datagram_bytes_out: AtomicU64,
    /// Datagrams that did not open, by reason (garbage, another key, forged).
    pub datagrams_rejected: ByOpenError,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Frame bytes (prefix and seal included) received and sent.
    pub frame_bytes_in: AtomicU64,
    pub frame_bytes_out: AtomicU64,
    /// Frames that did not open, by reason; their connection was closed.
    pub frames_rejected: ByOpenError,
    /// Frames with a length out of bounds, or that opened but did not decode.
    pub frames_malformed: AtomicU64,
    /// TCP connections opened to peers, and accepted from them.
    pub streams_opened: AtomicU64,
    pub streams_accepted: AtomicU64,
    /// Open TCP connections, both ways (a gauge).
    pub streams_open: AtomicU64,
    /// Inbound messages dropped because the agent fell behind.
    pub inbound_dropped: AtomicU64,
    /// Outbound messages dropped: socket buffer or queue full, or no
    /// connection could be made.
    pub outbound_dropped: AtomicU64,
    /// Addresses that are not `HOST:PORT` with an IP.
    pub unroutable: AtomicU64,
    /// ICMP "port unreachable" reports for datagrams this agent sent.
    pub unreachable: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// The agent's handle on the network. Owned by the agent's task.
#[derive(Debug)]
pub struct Transport {
    udp: Arc<UdpSocket>,
    local_addr: SocketAddr,
    keys: Arc<KeyStore>,
    counters: Arc<TransportCounters>,
    streams: Streams,
    events: mpsc::Sender<TransportEvent>,
    max_datagram: usize,
    tasks: JoinSet<()>,
}

impl Transport {
    /// Binds UDP and TCP on `config.bind` and starts receiving. Returns the
    /// handle and the stream of events.
    pub async fn start(
        config: &TransportConfig,
        keys: Arc<KeyStore>,
    ) -> Result<(Transport, mpsc::Receiver<TransportEvent>), TransportError> {
        let (udp, tcp) = bind_both(config.bind).await?;
        let local_addr = udp.local_addr().map_err(|source| TransportError::Listen { addr: config.bind, source })?;
        let udp = Arc::new(udp);
        let counters = Arc::new(TransportCounters::default());
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let stream_config = StreamConfig {
            keys: Arc::clone(&keys),
            counters: Arc::clone(&counters),
            events: events_tx.clone(),
            max_sealed: config.max_message + SEAL_OVERHEAD + 1024,
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(datagram::receive(Arc::clone(&udp), Arc::clone(&keys), Arc::clone(&counters), events_tx.clone()));
        tasks.spawn(datagram::watch_errors(Arc::clone(&udp), Arc::clone(&counters), events_tx.clone()));
        let streams = Streams::start(stream_config, tcp, &mut tasks);
        let transport = Transport {
            udp,
            local_addr,
            keys,
            counters,
            streams,
            events: events_tx,
            max_datagram: config.max_datagram,
            tasks,
        };
        Ok((transport, events_rx))
    }

    /// The bound address (port resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Tells the transport the address peers know this agent by, which
    /// stream messages carry so that answers come back to the gossip port.
    pub fn set_advertised(&mut self, addr: &Address) {
        self.streams.set_reply_to(addr.as_str().to_string());
    }

    /// A sender for discovery events (mDNS).
    pub fn event_sender(&self) -> mpsc::Sender<TransportEvent> {
        self.events.clone()
    }

    /// The transport's counters.
    pub fn counters(&self) -> Arc<TransportCounters> {
        Arc::clone(&self.counters)
    }

    /// The keyring it seals and opens with.
    pub fn keys(&self) -> Arc<KeyStore> {
        Arc::clone(&self.keys)
    }

    /// A handle that asks peers to change their keyrings.
    pub fn key_requester(&self) -> KeyRequester {
        self.streams.requester()
    }

    /// Seals `payload` and sends it to `addr`: as one datagram, or on a
    /// stream if it is anti-entropy or too large. Never blocks; drops (and
    /// counts) what cannot be sent at once.
    pub fn send(&mut self, addr: &Address, payload: &[u8]) {
        let Ok(dest) = addr.as_str().parse::<SocketAddr>() else {
            bump(&self.counters.unroutable, 1);
            tracing::debug!(%addr, "not an IP:PORT address; dropped");
            return;
        };
        if shoal_protocol::wire::is_sync(payload) || payload.len() > self.max_datagram {
            self.streams.send(dest, payload);
        } else {
            let sealed = self.keys.seal(payload);
            self.send_datagram(dest, &sealed);
        }
    }

    /// Sends `bytes` as one datagram, as they are. `send` seals first; tests
    /// that play a hostile peer call this directly.
    pub fn send_datagram(&self, dest: SocketAddr, bytes: &[u8]) {
        // Straight to the non-blocking socket: tokio's `try_send_to` also
        // refuses while the reactor has not yet seen the socket writable
        // (after start, or after any full buffer), which would drop
        // datagrams the kernel would have taken.
        match socket2::SockRef::from(&*self.udp).send_to(bytes, &dest.into()) {
            Ok(sent) => {
                bump(&self.counters.datagrams_out, 1);
                bump(&self.counters.datagram_bytes_out, sent as u64);
            }
            Err(error) => {
                bump(&self.counters.outbound_dropped, 1);
                tracing::debug!(%dest, %error, "datagram not sent");
            }
        }
    }

    /// Lets queued frames go out (up to `within`), then stops everything.
    pub async fn shutdown(mut self, within: Duration) {
        self.streams.close();
        let _ = tokio::time::timeout(within, self.streams.drained()).await;
        self.tasks.abort_all();
    }
}

/// Binds UDP, then TCP on the same port. With port 0 the kernel picks the
/// UDP port, which may be taken for TCP: try a few times.
async fn bind_both(bind: SocketAddr) -> Result<(UdpSocket, TcpListener), TransportError> {
    let listen_error = |source| TransportError::Listen { addr: bind, source };
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(bind).await.map_err(listen_error)?;
        // The kernel caps it (net.core.rmem_max) and keeps what it allows.
        let _ = socket2::SockRef::from(&udp).set_recv_buffer_size(UDP_RECEIVE_BUFFER);
        // ICMP errors for what we send, in the socket's error queue: without
        // this, an unconnected UDP socket never hears of them.
        if let Err(error) = datagram::report_errors(&udp, bind.is_ipv6()) {
            tracing::debug!(%error, "cannot ask for ICMP errors; probes of a dead agent end at the period's end");
        }
        let port = udp.local_addr().map_err(listen_error)?.port();
        match TcpListener::bind(SocketAddr::new(bind.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if bind.port() == 0 && attempts < 16 => attempts += 1,
            Err(source) => return Err(listen_error(source)),
        }
    }
}
