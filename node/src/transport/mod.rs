//! libp2p over QUIC, with mDNS, carrying sealed protocol messages.
//!
//! Each protocol message travels as one length-prefixed frame on a long-lived
//! unidirectional libp2p stream (`/shoal/membership/1`): one writer task per
//! destination keeps a stream open and writes frames in order; each inbound
//! stream gets a reader task. Frames are sealed with the cluster key
//! ([`crate::crypto`]); a frame that does not open, or is too long, is counted,
//! and the peer that sent it is disconnected.
//!
//! Queues are bounded and never block the agent: a full queue drops the
//! message, exactly as a lost datagram would (the protocol tolerates loss).

pub mod drops;
mod stream;
mod swarm;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol, mdns};
use shoal_protocol::Address;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::debug;

use crate::crypto::{SEAL_OVERHEAD, Sealer};

use self::stream::{Readers, Writer};
use self::swarm::{Behaviour, SwarmCommand, SwarmLoop, discovered, first_listen_addrs};

/// The libp2p protocol name of Shoal's membership stream.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/membership/1");

const WRITER_QUEUE: usize = 64;
const EVENT_QUEUE: usize = 1024;
const WRITER_IDLE: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Transport settings.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Where to listen (the gossip address).
    pub bind: SocketAddr,
    /// Whether to discover peers with mDNS.
    pub mdns: bool,
    /// Largest plaintext message accepted, in bytes.
    pub max_message: usize,
    /// QUIC idle timeout: a silent connection is closed after this.
    pub idle_timeout: Duration,
    /// QUIC keep-alive: idle but healthy peers ping each other this often, so
    /// they are never closed for being idle.
    pub keep_alive: Duration,
}

/// Why the transport could not start. Nothing is listening.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// libp2p refused the setup.
    #[error("cannot set up libp2p: {0}")]
    Setup(String),
    /// The gossip address could not be bound.
    #[error("cannot listen on {addr}: {why} (is another agent using this port? pass another --bind)")]
    Listen { addr: SocketAddr, why: String },
}

/// Something the network did.
#[derive(Debug)]
pub enum TransportEvent {
    /// A message arrived and opened under the cluster key.
    Message {
        /// The sender's transport address (a multiaddr ending in `/p2p/<peer>`).
        from: Address,
        /// The protocol message.
        bytes: Vec<u8>,
    },
    /// mDNS found a peer at this address (ending in `/p2p/<peer>`).
    Discovered { addr: Address },
}

/// What the transport counted. Monotonic, except `connected_peers`.
#[derive(Debug, Default)]
pub struct TransportCounters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Frames that did not open under the cluster key (wrong key, garbage).
    pub frames_rejected: AtomicU64,
    /// Frames whose length prefix exceeded the bound.
    pub frames_oversized: AtomicU64,
    /// Peers disconnected for sending such frames.
    pub peers_disconnected: AtomicU64,
    /// Inbound messages dropped because the agent fell behind.
    pub inbound_dropped: AtomicU64,
    /// Outbound messages dropped: queue full, or no connection could be made.
    pub outbound_dropped: AtomicU64,
    /// Addresses that are not a dialable multiaddr.
    pub unroutable: AtomicU64,
    /// Peers with at least one open connection (a gauge).
    pub connected_peers: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Where a writer sends: a known peer, or an address whose peer id we learn
/// on connecting (a bootstrap `HOST:PORT`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Target {
    Peer(PeerId),
    Addr(Multiaddr),
}

/// The agent's handle on the network. Owned by the agent's task.
pub struct Transport {
    local_peer: PeerId,
    control: libp2p_stream::Control,
    swarm_tx: mpsc::UnboundedSender<SwarmCommand>,
    writers: HashMap<Target, mpsc::Sender<(Multiaddr, Vec<u8>)>>,
    tasks: JoinSet<()>,
    swarm_task: tokio::task::JoinHandle<()>,
    sealer: Sealer,
    counters: Arc<TransportCounters>,
    listen_addrs: Vec<Multiaddr>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("local_peer", &self.local_peer).finish_non_exhaustive()
    }
}

/// The multiaddr of a QUIC socket address.
pub fn quic_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => Protocol::Ip4(ip),
        std::net::IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Protocol::Udp(addr.port())).with(Protocol::QuicV1)
}

/// `addr` without a trailing `/p2p/...`, and the peer id it named.
pub fn split_peer(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut addr = addr.clone();
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => {
            addr.pop();
            (addr, Some(peer))
        }
        _ => (addr, None),
    }
}

impl Transport {
    /// Starts listening on `config.bind`. Returns the handle and the stream of
    /// events, once the listener is up.
    pub async fn start(
        keypair: Keypair,
        config: &TransportConfig,
        sealer: Sealer,
    ) -> Result<(Transport, mpsc::Receiver<TransportEvent>), TransportError> {
        let local_peer = keypair.public().to_peer_id();
        let mdns_on = config.mdns;
        let (idle, keep_alive) = (config.idle_timeout, config.keep_alive);
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_quic_config(|mut quic| {
                quic.max_idle_timeout = u32::try_from(idle.as_millis()).unwrap_or(u32::MAX);
                quic.keep_alive_interval = keep_alive;
                quic
            })
            .with_behaviour(|key| {
                let mdns = if mdns_on {
                    let mdns_config = mdns::Config { query_interval: Duration::from_secs(30), ..Default::default() };
                    Some(mdns::tokio::Behaviour::new(mdns_config, key.public().to_peer_id())?)
                } else {
                    None
                };
                Ok(Behaviour { stream: libp2p_stream::Behaviour::new(), mdns: mdns.into() })
            })
            .map_err(|e| TransportError::Setup(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        // Accept streams before listening, so no early peer finds the protocol missing.
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control.accept(PROTOCOL).map_err(|e| TransportError::Setup(e.to_string()))?;
        let listen_error = |why: String| TransportError::Listen { addr: config.bind, why };
        swarm.listen_on(quic_multiaddr(config.bind)).map_err(|e| listen_error(e.to_string()))?;
        let mut found = Vec::new();
        let listen_addrs = first_listen_addrs(&mut swarm, &mut found).await.map_err(listen_error)?;
        let counters = Arc::new(TransportCounters::default());
        let remotes = Arc::new(Mutex::new(HashMap::new()));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (swarm_tx, swarm_rx) = mpsc::unbounded_channel();
        let readers = Readers {
            sealer: sealer.clone(),
            counters: Arc::clone(&counters),
            remotes: Arc::clone(&remotes),
            events: events_tx.clone(),
            swarm: swarm_tx.clone(),
            max_frame: config.max_message + SEAL_OVERHEAD,
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(readers.accept(incoming));
        for (peer, addr) in found {
            discovered(&events_tx, peer, addr);
        }
        let swarm_loop = SwarmLoop {
            swarm,
            commands: swarm_rx,
            events: events_tx,
            counters: Arc::clone(&counters),
            remotes,
            waiting: HashMap::new(),
            waiting_addr: HashMap::new(),
        };
        let swarm_task = tokio::spawn(swarm_loop.run());
        let transport = Transport {
            local_peer,
            control,
            swarm_tx,
            writers: HashMap::new(),
            tasks,
            swarm_task,
            sealer,
            counters,
            listen_addrs,
        };
        Ok((transport, events_rx))
    }

    /// This node's peer id.
    pub fn local_peer(&self) -> PeerId {
        self.local_peer
    }

    /// The addresses the listener is bound to (ports resolved).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Tells the transport that `peer` restarted (a higher generation). Its
    /// connections are closed, because some were made with its previous
    /// process and a writer would keep writing into one of them, unread,
    /// until the idle timeout; the next message dials afresh. (libp2p-quic
    /// derives its stateless-reset key from the identity, but keep-alives
    /// alone do not reliably get such connections reset, and which of a
    /// peer's connections is stale cannot be told from here.)
    pub fn peer_restarted(&self, peer: PeerId) {
        let _ = self.swarm_tx.send(SwarmCommand::Restarted(peer));
    }

    /// A handle that dials addresses to learn their peer ids.
    pub fn dialer(&self) -> Dialer {
        Dialer { swarm: self.swarm_tx.clone() }
    }

    /// The transport's counters.
    pub fn counters(&self) -> Arc<TransportCounters> {
        Arc::clone(&self.counters)
    }

    /// Seals `payload` and queues it for `addr`. Never blocks; drops (and
    /// counts) what cannot be queued.
    pub fn send(&mut self, addr: &Address, payload: &[u8]) {
        let frame = self.sealer.seal(payload);
        self.send_frame(addr, frame);
    }

    /// Queues `frame` as it is, unsealed. For tests that play a hostile peer.
    pub fn send_frame(&mut self, addr: &Address, frame: Vec<u8>) {
        let Ok(multiaddr) = addr.as_str().parse::<Multiaddr>() else {
            bump(&self.counters.unroutable, 1);
            debug!(%addr, "not a multiaddr; dropped");
            return;
        };
        let (bare, peer) = split_peer(&multiaddr);
        let target = match peer {
            Some(peer) if peer == self.local_peer => return,
            Some(peer) => Target::Peer(peer),
            None => Target::Addr(bare.clone()),
        };
        let mut item = (bare, frame);
        for _ in 0..2 {
            let sender = match self.writers.get(&target) {
                Some(sender) => sender.clone(),
                None => self.spawn_writer(target.clone()),
            };
            match sender.try_send(item) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    bump(&self.counters.outbound_dropped, 1);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    self.writers.remove(&target);
                    item = back;
                }
            }
        }
    }

    fn spawn_writer(&mut self, target: Target) -> mpsc::Sender<(Multiaddr, Vec<u8>)> {
        while self.tasks.try_join_next().is_some() {}
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = Writer {
            target: target.clone(),
            control: self.control.clone(),
            swarm: self.swarm_tx.clone(),
            counters: Arc::clone(&self.counters),
        };
        self.tasks.spawn(writer.run(rx));
        self.writers.insert(target, tx.clone());
        tx
    }

    /// Lets queued frames go out (up to `within`), then stops everything and
    /// closes every connection.
    pub async fn shutdown(mut self, within: Duration) {
        self.writers.clear();
        let drain = async {
            while let Some(next) = self.tasks.join_next().await {
                let _ = next;
                // The acceptor never ends on its own: stop once only it is left.
                if self.tasks.len() <= 1 {
                    break;
                }
            }
        };
        let _ = timeout(within, drain).await;
        // Let QUIC put the last frames on the wire before the connections close.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.tasks.abort_all();
        self.swarm_task.abort();
    }
}

/// Dials addresses to learn who answers there.
#[derive(Clone, Debug)]
pub struct Dialer {
    swarm: mpsc::UnboundedSender<SwarmCommand>,
}

impl Dialer {
    /// Connects to `addr` (no `/p2p/` part) and returns the peer id that
    /// answered.
    pub async fn peer_at(&self, addr: Multiaddr) -> Result<PeerId, String> {
        let (reply, answer) = oneshot::channel();
        self.swarm.send(SwarmCommand::ConnectAddr { addr, reply }).map_err(|e| e.to_string())?;
        answer.await.map_err(|e| e.to_string())?
    }
}
