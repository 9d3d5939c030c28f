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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, Swarm, mdns};
use shoal_protocol::Address;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::crypto::{SEAL_OVERHEAD, Sealer};

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

#[derive(NetworkBehaviour)]
struct Behaviour {
    stream: libp2p_stream::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

#[derive(Debug)]
enum SwarmCommand {
    /// Make sure there is a connection to `peer`, dialing `addr` if needed.
    Connect { peer: PeerId, addr: Multiaddr, reply: oneshot::Sender<Result<(), String>> },
    /// Dial an address whose peer id is not known yet.
    ConnectAddr { addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, String>> },
    /// Close every connection to `peer`.
    Disconnect(PeerId),
    /// `peer` restarted: close its connections; some were made with its
    /// previous process.
    Restarted(PeerId),
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

/// Waits for the listener's addresses; keeps what mDNS found meanwhile.
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

async fn first_listen_addrs(
    swarm: &mut Swarm<Behaviour>,
    found: &mut Vec<(PeerId, Multiaddr)>,
) -> Result<Vec<Multiaddr>, String> {
    let mut addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let wait = if addrs.is_empty() { deadline } else { tokio::time::Instant::now() + Duration::from_millis(50) };
        match tokio::time::timeout_at(wait, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => addrs.push(address),
            Ok(SwarmEvent::ListenerError { error, .. }) => return Err(error.to_string()),
            Ok(SwarmEvent::ListenerClosed { reason: Err(error), .. }) => return Err(error.to_string()),
            Ok(SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list)))) => found.extend(list),
            Ok(_) => {}
            Err(_) if addrs.is_empty() => return Err("no listen address after 5 s".into()),
            Err(_) => return Ok(addrs),
        }
    }
}

struct SwarmLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::UnboundedReceiver<SwarmCommand>,
    events: mpsc::Sender<TransportEvent>,
    counters: Arc<TransportCounters>,
    remotes: Arc<Mutex<HashMap<PeerId, Multiaddr>>>,
    waiting: HashMap<PeerId, Vec<oneshot::Sender<Result<(), String>>>>,
    waiting_addr: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<PeerId, String>>>,
}

impl SwarmLoop {
    async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
    }

    fn on_command(&mut self, command: SwarmCommand) {
        match command {
            SwarmCommand::Connect { peer, addr, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                self.waiting.entry(peer).or_default().push(reply);
                let opts =
                    DialOpts::peer_id(peer).addresses(vec![addr]).condition(PeerCondition::DisconnectedAndNotDialing);
                match self.swarm.dial(opts.build()) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {}
                    Err(error) => self.fail_peer(peer, &error.to_string()),
                }
            }
            SwarmCommand::ConnectAddr { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.waiting_addr.insert(id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
            }
            SwarmCommand::Disconnect(peer) => {
                bump(&self.counters.peers_disconnected, 1);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            SwarmCommand::Restarted(peer) => {
                debug!(%peer, "peer restarted; closing its connections");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn fail_peer(&mut self, peer: PeerId, why: &str) {
        for reply in self.waiting.remove(&peer).unwrap_or_default() {
            let _ = reply.send(Err(why.to_string()));
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                let (remote, _) = split_peer(endpoint.get_remote_address());
                debug!(peer = %peer_id, %remote, "connected");
                lock(&self.remotes).insert(peer_id, remote);
                for reply in self.waiting.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                if let Some(reply) = self.waiting_addr.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.update_gauge();
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                if num_established == 0 {
                    lock(&self.remotes).remove(&peer_id);
                }
                self.update_gauge();
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                debug!(?peer_id, %error, "dial failed");
                if let Some(reply) = self.waiting_addr.remove(&connection_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
                if let Some(peer) = peer_id.filter(|p| !self.swarm.is_connected(p)) {
                    self.fail_peer(peer, &error.to_string());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    discovered(&self.events, peer, addr);
                }
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            _ => {}
        }
    }

    fn update_gauge(&self) {
        let peers = self.swarm.network_info().num_peers() as u64;
        self.counters.connected_peers.store(peers, Ordering::Relaxed);
    }
}

fn discovered(events: &mpsc::Sender<TransportEvent>, peer: PeerId, addr: Multiaddr) {
    let addr = addr.with_p2p(peer).unwrap_or_else(|addr| addr);
    debug!(%peer, %addr, "mDNS discovered");
    if let Ok(addr) = Address::new(addr.to_string()) {
        let _ = events.try_send(TransportEvent::Discovered { addr });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One destination's outbound queue: keeps a stream open, writes frames.
struct Writer {
    target: Target,
    control: libp2p_stream::Control,
    swarm: mpsc::UnboundedSender<SwarmCommand>,
    counters: Arc<TransportCounters>,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<(Multiaddr, Vec<u8>)>) {
        let mut stream: Option<Stream> = None;
        let mut failed_at: Option<tokio::time::Instant> = None;
        while let Ok(Some((addr, frame))) = timeout(WRITER_IDLE, queue.recv()).await {
            if stream.is_none() {
                if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE) {
                    bump(&self.counters.outbound_dropped, 1);
                    continue;
                }
                match timeout(CONNECT_TIMEOUT, self.open(addr)).await {
                    Ok(Ok(opened)) => stream = Some(opened),
                    outcome => {
                        let why = match outcome {
                            Ok(Err(why)) => why,
                            _ => "timed out".to_string(),
                        };
                        debug!(target = ?self.target, %why, "cannot reach peer; message dropped");
                        bump(&self.counters.outbound_dropped, 1);
                        failed_at = Some(tokio::time::Instant::now());
                        continue;
                    }
                }
            }
            let Some(open) = stream.as_mut() else { continue };
            let len = u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes();
            let write = async {
                open.write_all(&len).await?;
                open.write_all(&frame).await?;
                open.flush().await
            };
            match timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    bump(&self.counters.frames_out, 1);
                    bump(&self.counters.bytes_out, frame.len() as u64 + 4);
                }
                _ => {
                    debug!(target = ?self.target, "stream broke; reopening on the next message");
                    bump(&self.counters.outbound_dropped, 1);
                    stream = None;
                }
            }
        }
        if let Some(mut open) = stream {
            let _ = timeout(WRITE_TIMEOUT, open.close()).await;
        }
    }

    async fn open(&mut self, addr: Multiaddr) -> Result<Stream, String> {
        let peer = match &self.target {
            Target::Peer(peer) => {
                let (reply, answer) = oneshot::channel();
                self.swarm.send(SwarmCommand::Connect { peer: *peer, addr, reply }).map_err(|e| e.to_string())?;
                answer.await.map_err(|e| e.to_string())??;
                *peer
            }
            Target::Addr(addr) => {
                let (reply, answer) = oneshot::channel();
                let command = SwarmCommand::ConnectAddr { addr: addr.clone(), reply };
                self.swarm.send(command).map_err(|e| e.to_string())?;
                answer.await.map_err(|e| e.to_string())??
            }
        };
        self.control.open_stream(peer, PROTOCOL).await.map_err(|e| e.to_string())
    }
}

/// Reads inbound streams.
#[derive(Clone)]
struct Readers {
    sealer: Sealer,
    counters: Arc<TransportCounters>,
    remotes: Arc<Mutex<HashMap<PeerId, Multiaddr>>>,
    events: mpsc::Sender<TransportEvent>,
    swarm: mpsc::UnboundedSender<SwarmCommand>,
    max_frame: usize,
}

impl Readers {
    async fn accept(self, mut incoming: libp2p_stream::IncomingStreams) {
        while let Some((peer, stream)) = incoming.next().await {
            tokio::spawn(self.clone().read(peer, stream));
        }
    }

    async fn read(self, peer: PeerId, mut stream: Stream) {
        let mut len = [0u8; 4];
        while stream.read_exact(&mut len).await.is_ok() {
            let len = u32::from_be_bytes(len) as usize;
            if len > self.max_frame {
                bump(&self.counters.frames_oversized, 1);
                warn!(%peer, len, "oversized frame; disconnecting peer");
                let _ = self.swarm.send(SwarmCommand::Disconnect(peer));
                return;
            }
            let mut frame = vec![0; len];
            if stream.read_exact(&mut frame).await.is_err() {
                return;
            }
            bump(&self.counters.frames_in, 1);
            bump(&self.counters.bytes_in, len as u64 + 4);
            let Ok(bytes) = self.sealer.open(&frame) else {
                bump(&self.counters.frames_rejected, 1);
                warn!(%peer, "frame does not open under our cluster key; disconnecting peer");
                let _ = self.swarm.send(SwarmCommand::Disconnect(peer));
                return;
            };
            let remote = lock(&self.remotes).get(&peer).cloned().unwrap_or_else(Multiaddr::empty);
            let from = remote.with_p2p(peer).unwrap_or_else(|addr| addr);
            let Ok(from) = Address::new(from.to_string()) else { continue };
            if self.events.try_send(TransportEvent::Message { from, bytes }).is_err() {
                bump(&self.counters.inbound_dropped, 1);
            }
        }
    }
}
