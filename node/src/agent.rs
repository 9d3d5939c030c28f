//! The agent: one task that owns the protocol state machine and drives it
//! with the real clock, the network and the API.
//!
//! After every input or command it drains `poll_transmit` (to the network)
//! and `poll_event` (to the log), then sleeps until `poll_timeout`. Every
//! call into the protocol runs inside the span `agent{node = <name>}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::{Address, Event, Identity, Instant, Metadata, Node, State};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{self, ApiRequest, KeyService};
use crate::config::Settings;
use crate::driver::backoff::Backoff;
use crate::driver::{Supervisor, SupervisorConfig};
use crate::events::WorkloadEvents;
use crate::keys::KeyStore;
use crate::metrics;
use crate::persist::CatalogSaver;
use crate::reconcile::Reconciler;
use crate::store::{DataDir, StoreError};
use crate::transport::mdns::{self, Mdns};
use crate::transport::{Transport, TransportConfig, TransportError, TransportEvent};
use crate::view::{HealthView, MemberView, PeerView, SelfView, node_id_hex};
use crate::workloads::{self, WorkloadDetail};

/// The protocol's cluster id. Meshes are told apart by their keys (nothing
/// that does not open under the keyring reaches the protocol), so the id in
/// every message header stays 0, one byte on the wire.
pub const CLUSTER_ID: u64 = 0;
/// After a leave, how long the agent keeps gossiping before it exits anyway.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);
const JOIN_BACKOFF_MIN: Duration = Duration::from_millis(250);
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the protocol refused to start: {0}")]
    Protocol(#[from] shoal_protocol::Error),
    #[error("cannot serve the HTTP API on {addr}: {source} (is another agent running? pass another --api)")]
    Api { addr: SocketAddr, source: std::io::Error },
    #[error("advertised address {0} is too long")]
    Address(String),
}

/// Runs an agent until `shutdown` completes (then leaves gracefully) or a
/// `POST /v1/leave` arrives.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let span = info_span!("agent", node = %settings.name);
    run_inner(settings, shutdown).instrument(span).await
}

async fn run_inner(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let started = std::time::Instant::now();
    let data_dir = DataDir::open(&settings.data_dir)?;
    let loaded = data_dir.load()?;
    let catalog = data_dir.load_catalog()?;
    let keys = Arc::new(KeyStore::load(&data_dir, settings.cluster_key.clone())?);
    let mut config = settings.profile.config();
    config.cluster_id = CLUSTER_ID;
    let transport_config = TransportConfig {
        bind: settings.bind,
        max_datagram: config.datagram_budget,
        max_message: config.sync_budget.max(config.datagram_budget),
    };
    let (mut transport, events) = Transport::start(&transport_config, Arc::clone(&keys)).await?;
    let gossip = advertised(&settings, transport.local_addr());
    let addr = Address::new(gossip.to_string()).map_err(|_| AgentError::Address(gossip.to_string()))?;
    transport.set_advertised(&addr);
    let mdns =
        if settings.mdns { mdns::start(&node_id_hex(loaded.id), gossip, transport.event_sender()) } else { None };
    let meta = Metadata {
        name: settings.name.clone(),
        addrs: vec![addr.clone()],
        capacity: settings.capacity,
        labels: settings.labels.clone(),
    };
    let identity = Identity { id: loaded.id, generation: loaded.generation, meta };
    let clock = Clock { origin: tokio::time::Instant::now() };
    let workload_config = settings.profile.workload_config();
    let mut protocol = Node::new(config, workload_config, identity, rand::random(), clock.now())?;
    // Before joining: what this node knew survives even a restart of every node.
    let restored = catalog.len();
    protocol.restore_catalog(clock.now(), catalog);
    let saver = CatalogSaver::start(data_dir.clone(), &protocol);
    // Kills what a crashed agent on this data dir left running; the plan
    // starts this node's replicas again once it has settled.
    let supervisor = Supervisor::new(SupervisorConfig::new(data_dir.path(), node_id_hex(loaded.id)));
    let reconciler = Reconciler::start(supervisor);

    let listener = tokio::net::TcpListener::bind(settings.api)
        .await
        .map_err(|source| AgentError::Api { addr: settings.api, source })?;
    let (api_tx, api_rx) = mpsc::channel(64);
    let key_service = KeyService::new(Arc::clone(&keys), transport.key_requester(), settings.name.clone());
    tokio::spawn(api::serve(listener, api_tx, key_service, settings.api_security.clone()).in_current_span());
    let (seeds_tx, seeds_rx) = mpsc::channel(4);
    if !settings.join.is_empty() {
        tokio::spawn(resolve_seeds(settings.join.clone(), gossip, seeds_tx).in_current_span());
    }
    if settings.cluster_key.is_none() && keys.ids() == [crate::crypto::ClusterKey::open_cluster().id()] {
        warn!("no --cluster-key: any shoal agent without a key can join this mesh (run `shoal keygen`)");
    }
    info!(
        %addr, api = %settings.api, generation = loaded.generation, data_dir = %data_dir.path().display(),
        profile = settings.profile.name(), mdns = mdns.is_some(), catalog_entries = restored,
        keys = ?keys.ids().iter().map(ToString::to_string).collect::<Vec<_>>(), "agent started"
    );
    let agent = Agent {
        protocol,
        saver,
        reconciler,
        events: WorkloadEvents::default(),
        transport,
        _mdns: mdns,
        clock,
        settings,
        started,
        data_dir: data_dir.path().display().to_string(),
        leaving_since: None,
        seeds: Vec::new(),
        next_join: None,
        join_backoff: Backoff::between(JOIN_BACKOFF_MIN, JOIN_BACKOFF_MAX),
    };
    agent.run(events, api_rx, seeds_rx, shutdown).await;
    Ok(())
}

/// The advertised gossip address: --advertise, else the bound one, else
/// (bound to 0.0.0.0 or ::) this host's first non-loopback address of that
/// family, with the bound port.
fn advertised(settings: &Settings, bound: SocketAddr) -> SocketAddr {
    if let Some(advertise) = settings.advertise {
        return advertise;
    }
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let same_family = |ip: &IpAddr| ip.is_ipv4() == bound.is_ipv4();
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let ip = interfaces.iter().map(if_addrs::Interface::ip).find(|ip| same_family(ip) && !ip.is_loopback());
    let ip = ip.unwrap_or(if bound.is_ipv4() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
    });
    SocketAddr::new(ip, bound.port())
}

/// Resolves the --join list (DNS names included), retrying with backoff
/// until at least one entry resolves, then hands the addresses to the
/// agent, which joins through them (and again, with backoff, while nobody
/// answers).
async fn resolve_seeds(join: Vec<String>, own: SocketAddr, seeds: mpsc::Sender<Vec<Address>>) {
    let mut backoff = Backoff::between(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let mut found = Vec::new();
        for entry in &join {
            if entry.starts_with('/') {
                warn!(join = %entry, "multiaddrs are no longer used: pass HOST:PORT, e.g. 10.0.0.1:7946");
                continue;
            }
            match tokio::net::lookup_host(entry.as_str()).await {
                Ok(addrs) => found.extend(addrs.filter(|a| *a != own)),
                Err(error) => warn!(join = %entry, %error, "cannot resolve; will retry"),
            }
        }
        found.dedup();
        if !found.is_empty() {
            let _ = seeds.send(found.iter().filter_map(|a| Address::new(a.to_string()).ok()).collect()).await;
            return;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.origin + Duration::from_micros(at.as_micros().min(u64::MAX / 4))
    }
}

struct Agent {
    protocol: Node,
    saver: CatalogSaver,
    reconciler: Reconciler,
    events: WorkloadEvents,
    transport: Transport,
    /// The mDNS announcement and browse, while it runs.
    _mdns: Option<Mdns>,
    clock: Clock,
    settings: Settings,
    started: std::time::Instant,
    data_dir: String,
    leaving_since: Option<tokio::time::Instant>,
    seeds: Vec<Address>,
    next_join: Option<tokio::time::Instant>,
    join_backoff: Backoff,
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Agent {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<TransportEvent>,
        mut api: mpsc::Receiver<ApiRequest>,
        mut seeds: mpsc::Receiver<Vec<Address>>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut shutdown_done = false;
        let mut statuses = self.reconciler.subscribe();
        loop {
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let wake = self.protocol.poll_timeout().map_or(far, |at| self.clock.deadline(at));
            tokio::select! {
                Some(event) = events.recv() => self.on_transport(event),
                Some(request) = api.recv() => self.on_api(request),
                Some(addrs) = seeds.recv() => {
                    info!(seeds = ?addrs.iter().map(Address::as_str).collect::<Vec<_>>(), "joining");
                    self.seeds = addrs;
                    self.join_seeds();
                }
                () = sleep_until_some(self.next_join), if self.next_join.is_some() => self.join_seeds(),
                () = sleep_until_some(self.saver.due()), if self.saver.due().is_some() => {
                    self.saver.save(&self.protocol);
                }
                () = tokio::time::sleep_until(wake) => self.protocol.handle_timeout(self.clock.now()),
                () = sleep_until_some(self.reconciler.due()), if self.reconciler.due().is_some() => {
                    self.reconciler.step(&mut self.protocol, self.clock.now());
                }
                Ok(()) = statuses.changed() => self.reconciler.poke(),
                () = &mut shutdown, if !shutdown_done => {
                    shutdown_done = true;
                    info!("signal received: leaving");
                    self.leave();
                }
            }
            self.drain();
            // A catalog change (here or learnt from a peer) may change the plan.
            let unsaved = self.saver.due().is_some();
            self.saver.note(&self.protocol);
            if !unsaved && self.saver.due().is_some() {
                self.reconciler.poke();
            }
            if self.done_leaving() {
                break;
            }
        }
        info!("left; stopping");
        // Peers already know this node left and take its replicas over.
        let stop_within = LEAVE_TIMEOUT.saturating_sub(self.leaving_since.map_or(Duration::ZERO, |at| at.elapsed()));
        tokio::join!(self.reconciler.finish(stop_within), self.saver.finish(&self.protocol, Duration::from_secs(5)));
        self.transport.shutdown(Duration::from_secs(1)).await;
    }

    /// Joins through the seeds, and again with backoff while no other
    /// member has answered (the protocol itself retries only every
    /// `reconnect_interval`).
    fn join_seeds(&mut self) {
        if self.leaving_since.is_some() || self.seeds.is_empty() || self.protocol.membership().live_members() > 1 {
            self.next_join = None;
            return;
        }
        if self.next_join.is_some() {
            debug!("no member answered yet; joining again");
        }
        self.protocol.join(self.clock.now(), self.seeds.clone());
        self.next_join = Some(tokio::time::Instant::now() + self.join_backoff.next_delay());
    }

    fn leave(&mut self) {
        if self.leaving_since.is_none() {
            self.leaving_since = Some(tokio::time::Instant::now());
            self.protocol.leave(self.clock.now());
            self.reconciler.leave();
        }
    }

    /// Leaving is done once the leave has been gossiped, nobody is left to
    /// tell, or the time bound has passed.
    fn done_leaving(&self) -> bool {
        let Some(since) = self.leaving_since else { return false };
        self.protocol.membership().pending_broadcasts() == 0
            || self.protocol.membership().live_members() == 0
            || since.elapsed() > LEAVE_TIMEOUT
    }

    fn on_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Message { from, bytes } => self.protocol.handle_message(self.clock.now(), &from, &bytes),
            TransportEvent::Unreachable { addr } => self.protocol.handle_unreachable(self.clock.now(), &addr),
            TransportEvent::Discovered { addr } => {
                let loopback = addr.as_str().parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
                if !loopback && !self.is_live_peer(&addr) && self.leaving_since.is_none() {
                    info!(%addr, "mDNS found an agent; joining it");
                    self.protocol.join(self.clock.now(), [addr]);
                }
            }
        }
    }

    /// Whether a live member advertises `addr`.
    fn is_live_peer(&self, addr: &Address) -> bool {
        self.protocol.membership().members().any(|m| m.state.is_live() && m.meta.primary_addr() == Some(addr))
    }

    fn drain(&mut self) {
        while let Some(transmit) = self.protocol.poll_transmit() {
            self.transport.send(&transmit.addr, &transmit.payload);
        }
        while let Some(event) = self.protocol.poll_event() {
            self.reconciler.poke();
            self.log_event(event);
        }
        while let Some(event) = self.protocol.poll_workload_event() {
            self.reconciler.poke();
            debug!(?event, "workload event");
            self.events.note(&self.protocol, &event);
        }
    }

    fn log_event(&self, event: Event) {
        let describe =
            |id| self.protocol.membership().member(id).map(|m| (m.meta.name.clone(), m.generation)).unwrap_or_default();
        match event {
            Event::MemberUp { id } => {
                let (name, generation) = describe(id);
                info!(member = %name, %id, generation, "member up");
            }
            Event::MemberSuspect { id } => info!(member = %describe(id).0, %id, "member suspect"),
            Event::MemberAlive { id } => info!(member = %describe(id).0, %id, "member refuted suspicion"),
            Event::MemberDown { id } => warn!(member = %describe(id).0, %id, "member dead"),
            Event::MemberLeft { id } => info!(member = %describe(id).0, %id, "member left"),
            Event::MetadataChanged { id } => debug!(member = %describe(id).0, %id, "member metadata changed"),
            Event::SelfRefuted { incarnation, .. } => warn!(incarnation, "this node was suspected and refuted it"),
        }
    }

    fn on_api(&mut self, request: ApiRequest) {
        match request {
            ApiRequest::Members(reply) => {
                let _ = reply.send(self.protocol.membership().members().map(MemberView::of).collect());
            }
            ApiRequest::SelfInfo(reply) => {
                let _ = reply.send(self.self_view());
            }
            ApiRequest::Health(reply) => {
                let status = if self.leaving_since.is_some() { "leaving" } else { "ok" };
                let _ = reply.send(HealthView {
                    status: status.into(),
                    live_members: self.protocol.membership().live_members(),
                    local_health: self.protocol.membership().local_health(),
                    datagrams_dropped: self.transport.counters().datagrams_rejected.total(),
                });
            }
            ApiRequest::Metrics(reply) => {
                let _ = reply.send(metrics::render(&self.protocol, &self.transport.counters()));
            }
            ApiRequest::Workloads(reply) => {
                let _ = reply.send(workloads::list(&self.protocol));
            }
            ApiRequest::Workload(name, reply) => {
                let detail = workloads::detail(&self.protocol, &name);
                let _ = reply.send(detail.map(|d| WorkloadDetail { events: self.events.recent(&name), ..d }));
            }
            ApiRequest::Submit(spec, reply) => {
                let name = spec.name.clone();
                let outcome = workloads::submit(&mut self.protocol, self.clock.now(), *spec);
                if outcome.is_ok() {
                    self.reconciler.poke();
                    info!(workload = %name, "workload submitted");
                }
                let _ = reply.send(outcome);
            }
            ApiRequest::Delete(name, reply) => {
                let deleted = self.protocol.delete_workload(self.clock.now(), &name).is_some();
                if deleted {
                    self.reconciler.poke();
                    info!(workload = %name, "workload deleted");
                }
                let _ = reply.send(deleted);
            }
            ApiRequest::Peers(reply) => {
                let me = self.protocol.membership().id();
                let peers = self.protocol.membership().members().filter(|m| m.state.is_live() && m.id != me);
                let _ = reply.send(peers.map(PeerView::of).collect());
            }
            ApiRequest::Coordinates(reply) => {
                let _ = reply.send(crate::api::CoordinatesView::of(self.protocol.membership()));
            }
            ApiRequest::Mesh(crate::ui::MeshQuery { since: last, reply }) => {
                let _ = reply.send(crate::ui::mesh::snapshot_if_changed(&self.protocol, self.clock.now(), last));
            }
            ApiRequest::Leave(reply) => {
                info!("leave requested through the API");
                self.leave();
                let _ = reply.send(());
            }
        }
    }

    fn self_view(&self) -> SelfView {
        let id = self.protocol.membership().id();
        let member = self.protocol.membership().member(id).map(MemberView::of).unwrap_or_else(|| MemberView {
            id: String::new(),
            name: self.settings.name.clone(),
            state: State::Alive,
            addr: String::new(),
            capacity: self.settings.capacity,
            labels: BTreeMap::new(),
            generation: self.protocol.membership().generation(),
            incarnation: self.protocol.membership().incarnation(),
        });
        let mut members = BTreeMap::new();
        for m in self.protocol.membership().members() {
            *members.entry(metrics::state_name(m.state).to_string()).or_insert(0) += 1;
        }
        SelfView {
            member,
            keys: self.transport.keys().ids().iter().map(ToString::to_string).collect(),
            profile: self.settings.profile.name().into(),
            members,
            local_health: self.protocol.membership().local_health(),
            uptime_secs: self.started.elapsed().as_secs(),
            data_dir: self.data_dir.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}
