//! The agent: one task that owns the protocol state machine and drives it
//! with the real clock, the network and the API.
//!
//! After every input or command it drains `poll_transmit` (to the network)
//! and `poll_event` (to the log), then sleeps until `poll_timeout`. Every
//! call into the protocol runs inside the span `agent{node = <name>}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use shoal_protocol::{Address, Event, Identity, Instant, Membership, Metadata, NodeId, State};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{self, ApiRequest};
use crate::config::Settings;
use crate::driver::{Supervisor, SupervisorConfig};
use crate::events::WorkloadEvents;
use crate::metrics;
use crate::persist::CatalogSaver;
use crate::reconcile::Reconciler;
use crate::store::{DataDir, StoreError};
use crate::transport::drops::{self, DropReason};
use crate::transport::{
    Dialer, Transport, TransportConfig, TransportError, TransportEvent, quic_multiaddr, split_peer,
};
use crate::view::{HealthView, MemberView, SelfView, node_id_hex};
use crate::workloads::{self, WorkloadDetail};

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
    let mut config = settings.profile.config();
    config.cluster_id = settings.cluster_key.cluster_id();
    let transport_config = TransportConfig {
        bind: settings.bind,
        mdns: settings.mdns,
        max_message: config.sync_budget.max(config.datagram_budget),
        idle_timeout: Duration::from_secs(15),
        keep_alive: Duration::from_secs(5),
    };
    let (transport, events) =
        Transport::start(loaded.keypair, &transport_config, settings.cluster_key.sealer()).await?;
    let advertise = advertised(&settings, transport.listen_addrs());
    let addr = advertise.with_p2p(transport.local_peer()).unwrap_or_else(|a| a);
    let addr = Address::new(addr.to_string()).map_err(|_| AgentError::Address(addr.to_string()))?;
    let meta = Metadata {
        name: settings.name.clone(),
        addrs: vec![addr.clone()],
        capacity: settings.capacity,
        labels: settings.labels.clone(),
    };
    let identity = Identity { id: loaded.id, generation: loaded.generation, meta };
    let clock = Clock { origin: tokio::time::Instant::now() };
    let mut membership = Membership::new(config, identity, rand::random(), clock.now())?;
    // Before joining: what this node knew survives even a restart of every node.
    let restored = catalog.len();
    membership.restore_catalog(clock.now(), catalog);
    let saver = CatalogSaver::start(data_dir.clone(), &membership);
    // Kills what a crashed agent on this data dir left running; the plan
    // starts this node's replicas again once it has settled.
    let supervisor = Supervisor::new(SupervisorConfig::new(data_dir.path(), node_id_hex(loaded.id)));
    let reconciler = Reconciler::start(supervisor);

    let listener = tokio::net::TcpListener::bind(settings.api)
        .await
        .map_err(|source| AgentError::Api { addr: settings.api, source })?;
    let (api_tx, api_rx) = mpsc::channel(64);
    tokio::spawn(api::serve(listener, api_tx).in_current_span());
    let (seeds_tx, seeds_rx) = mpsc::channel(4);
    if !settings.join.is_empty() {
        let own = transport.listen_addrs().to_vec();
        let seeding = resolve_seeds(settings.join.clone(), transport.dialer(), own, seeds_tx);
        tokio::spawn(seeding.in_current_span());
    }
    if !settings.keyed {
        warn!("no --cluster-key: any shoal agent without a key can join this mesh (run `shoal keygen`)");
    }
    info!(
        %addr, api = %settings.api, generation = loaded.generation, data_dir = %data_dir.path().display(),
        profile = settings.profile.name(), mdns = settings.mdns, catalog_entries = restored, "agent started"
    );
    let agent = Agent {
        membership,
        saver,
        reconciler,
        events: WorkloadEvents::default(),
        transport,
        clock,
        settings,
        started,
        data_dir: data_dir.path().display().to_string(),
        leaving_since: None,
        seeds: Vec::new(),
        next_join: None,
        join_backoff: JOIN_BACKOFF_MIN,
        generations: BTreeMap::new(),
    };
    agent.run(events, api_rx, seeds_rx, shutdown).await;
    Ok(())
}

/// The advertised socket: --advertise, else the bound one, else (bound to
/// 0.0.0.0 or ::) the first non-loopback listen address.
fn advertised(settings: &Settings, listening: &[Multiaddr]) -> Multiaddr {
    if let Some(advertise) = settings.advertise {
        return quic_multiaddr(advertise);
    }
    let is_loopback = |a: &Multiaddr| {
        a.iter().any(|p| {
            matches!(p, Protocol::Ip4(ip) if ip.is_loopback()) || matches!(p, Protocol::Ip6(ip) if ip.is_loopback())
        })
    };
    listening
        .iter()
        .find(|a| !is_loopback(a))
        .or_else(|| listening.first())
        .cloned()
        .unwrap_or_else(|| quic_multiaddr(settings.bind))
}

/// Resolves the --join list (DNS names included) and learns the peer id at
/// each address, with backoff, until at least one answers (or ~15 s pass),
/// then hands the addresses to the agent. A seed given with its peer id is
/// the very address its member advertises, so the protocol stops retrying it
/// once that member is live; a bare `HOST:PORT` would be retried forever.
async fn resolve_seeds(join: Vec<String>, dialer: Dialer, own: Vec<Multiaddr>, seeds: mpsc::Sender<Vec<Address>>) {
    let mut backoff = Duration::from_millis(250);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (mut identified, mut unanswered) = (Vec::new(), Vec::new());
        for entry in &join {
            let (known, bare) = identify_seed(entry, &dialer, &own).await;
            // A name that resolved to several addresses (IPv4 and IPv6, say)
            // needs only the ones that answered.
            if known.is_empty() {
                unanswered.extend(bare);
            }
            identified.extend(known);
        }
        let timed_out = tokio::time::Instant::now() > give_up;
        if !identified.is_empty() || (timed_out && !unanswered.is_empty()) {
            let found = identified.into_iter().chain(unanswered);
            let _ = seeds.send(found.filter_map(|a| Address::new(a.to_string()).ok()).collect()).await;
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One `--join` entry's addresses: those whose peer id is known (given, or
/// learnt by dialing), and those that did not answer.
async fn identify_seed(entry: &str, dialer: &Dialer, own: &[Multiaddr]) -> (Vec<Multiaddr>, Vec<Multiaddr>) {
    let addrs: Vec<Multiaddr> = if entry.starts_with('/') {
        match entry.parse::<Multiaddr>() {
            Ok(addr) => vec![addr],
            Err(error) => {
                warn!(join = %entry, %error, "not a multiaddr; ignored");
                Vec::new()
            }
        }
    } else {
        match tokio::net::lookup_host(entry).await {
            Ok(addrs) => addrs.map(quic_multiaddr).collect(),
            Err(error) => {
                warn!(join = %entry, %error, "cannot resolve; will retry");
                Vec::new()
            }
        }
    };
    let (mut known, mut bare_ones) = (Vec::new(), Vec::new());
    for addr in addrs.into_iter().filter(|a| !own.contains(a)) {
        match split_peer(&addr) {
            (_, Some(_)) => known.push(addr),
            (bare, None) => match timeout(Duration::from_secs(3), dialer.peer_at(bare.clone())).await {
                Ok(Ok(peer)) => known.push(bare.with_p2p(peer).unwrap_or_else(|a| a)),
                outcome => {
                    debug!(seed = %bare, ?outcome, "seed did not answer");
                    bare_ones.push(bare);
                }
            },
        }
    }
    (known, bare_ones)
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
    membership: Membership,
    saver: CatalogSaver,
    reconciler: Reconciler,
    events: WorkloadEvents,
    transport: Transport,
    clock: Clock,
    settings: Settings,
    started: std::time::Instant,
    data_dir: String,
    leaving_since: Option<tokio::time::Instant>,
    seeds: Vec<Address>,
    next_join: Option<tokio::time::Instant>,
    join_backoff: Duration,
    /// The last generation seen of each member, to notice restarts.
    generations: BTreeMap<NodeId, u64>,
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
            let wake = self.membership.poll_timeout().map_or(far, |at| self.clock.deadline(at));
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
                    self.saver.save(&self.membership);
                }
                () = tokio::time::sleep_until(wake) => self.membership.handle_timeout(self.clock.now()),
                () = tokio::time::sleep_until(self.reconciler.due()) => {
                    self.reconciler.step(&mut self.membership, self.clock.now());
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
            self.saver.note(&self.membership);
            if !unsaved && self.saver.due().is_some() {
                self.reconciler.poke();
            }
            self.events.observe(&mut self.membership, self.clock.now());
            if self.done_leaving() {
                break;
            }
        }
        info!("left; stopping");
        // Peers already know this node left and take its replicas over.
        let stop_within = LEAVE_TIMEOUT.saturating_sub(self.leaving_since.map_or(Duration::ZERO, |at| at.elapsed()));
        tokio::join!(self.reconciler.finish(stop_within), self.saver.finish(&self.membership, Duration::from_secs(5)));
        self.transport.shutdown(Duration::from_secs(1)).await;
    }

    /// Joins through the seeds, and again with backoff while no other
    /// member has answered (the protocol itself retries only every
    /// `reconnect_interval`).
    fn join_seeds(&mut self) {
        if self.leaving_since.is_some() || self.seeds.is_empty() || self.membership.live_members() > 1 {
            self.next_join = None;
            return;
        }
        if self.next_join.is_some() {
            debug!("no member answered yet; joining again");
        }
        self.membership.join(self.clock.now(), self.seeds.clone());
        self.next_join = Some(tokio::time::Instant::now() + self.join_backoff);
        self.join_backoff = (self.join_backoff * 2).min(JOIN_BACKOFF_MAX);
    }

    fn leave(&mut self) {
        if self.leaving_since.is_none() {
            self.leaving_since = Some(tokio::time::Instant::now());
            self.membership.leave(self.clock.now());
            self.reconciler.leave();
        }
    }

    /// Leaving is done once the leave has been gossiped, nobody is left to
    /// tell, or the time bound has passed.
    fn done_leaving(&self) -> bool {
        let Some(since) = self.leaving_since else { return false };
        self.membership.pending_broadcasts() == 0
            || self.membership.live_members() == 0
            || since.elapsed() > LEAVE_TIMEOUT
    }

    fn on_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Message { from, bytes } => self.membership.handle_message(self.clock.now(), &from, &bytes),
            TransportEvent::Discovered { addr } => {
                let loopback = addr.as_str().starts_with("/ip4/127.") || addr.as_str().starts_with("/ip6/::1/");
                if !loopback && !self.is_live_peer(&addr) && self.leaving_since.is_none() {
                    info!(%addr, "mDNS found a peer; joining it");
                    self.membership.join(self.clock.now(), [addr]);
                }
            }
        }
    }

    /// Whether a live member already has the peer id in `addr`.
    fn is_live_peer(&self, addr: &Address) -> bool {
        let peer = |a: &str| a.parse::<Multiaddr>().ok().and_then(|m| split_peer(&m).1);
        let Some(wanted) = peer(addr.as_str()) else { return false };
        self.membership
            .members()
            .any(|m| m.state.is_live() && m.meta.primary_addr().and_then(|a| peer(a.as_str())) == Some(wanted))
    }

    fn drain(&mut self) {
        while let Some(transmit) = self.membership.poll_transmit() {
            self.transport.send(&transmit.addr, &transmit.payload);
        }
        while let Some(event) = self.membership.poll_event() {
            self.reconciler.poke();
            self.log_event(event);
            if let Event::MemberUp { id } = event {
                self.note_restart(id);
            }
        }
    }

    /// A member that came back with a higher generation is a new process:
    /// connections to its old one must go (see `Transport::peer_restarted`).
    fn note_restart(&mut self, id: NodeId) {
        let Some(member) = self.membership.member(id) else { return };
        let previous = self.generations.insert(id, member.generation);
        if previous.is_some_and(|g| g < member.generation) {
            let addr = member.meta.primary_addr().and_then(|a| a.as_str().parse::<Multiaddr>().ok());
            if let Some(peer) = addr.and_then(|a| split_peer(&a).1) {
                self.transport.peer_restarted(peer);
            }
        }
    }

    fn log_event(&self, event: Event) {
        let describe = |id| self.membership.member(id).map(|m| (m.meta.name.clone(), m.generation)).unwrap_or_default();
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
            Event::SelfRefuted { incarnation } => warn!(incarnation, "this node was suspected and refuted it"),
        }
    }

    fn on_api(&mut self, request: ApiRequest) {
        match request {
            ApiRequest::Members(reply) => {
                let _ = reply.send(self.membership.members().map(MemberView::of).collect());
            }
            ApiRequest::SelfInfo(reply) => {
                let _ = reply.send(self.self_view());
            }
            ApiRequest::Health(reply) => {
                let status = if self.leaving_since.is_some() { "leaving" } else { "ok" };
                let _ = reply.send(HealthView {
                    status: status.into(),
                    live_members: self.membership.live_members(),
                    local_health: self.membership.local_health(),
                    datagrams_dropped: DropReason::ALL.into_iter().map(drops::dropped).sum(),
                });
            }
            ApiRequest::Metrics(reply) => {
                let _ = reply.send(metrics::render(&self.membership, &self.transport.counters()));
            }
            ApiRequest::Workloads(reply) => {
                let _ = reply.send(workloads::list(&mut self.membership, self.clock.now()));
            }
            ApiRequest::Workload(name, reply) => {
                let detail = workloads::detail(&mut self.membership, self.clock.now(), &name);
                let _ = reply.send(detail.map(|d| WorkloadDetail { events: self.events.recent(&name), ..d }));
            }
            ApiRequest::Submit(spec, reply) => {
                let name = spec.name.clone();
                let outcome = workloads::submit(&mut self.membership, self.clock.now(), *spec);
                if outcome.is_ok() {
                    self.reconciler.poke();
                    info!(workload = %name, "workload submitted");
                }
                let _ = reply.send(outcome);
            }
            ApiRequest::Delete(name, reply) => {
                let deleted = self.membership.delete_workload(self.clock.now(), &name).is_some();
                if deleted {
                    self.reconciler.poke();
                    info!(workload = %name, "workload deleted");
                }
                let _ = reply.send(deleted);
            }
            ApiRequest::Leave(reply) => {
                info!("leave requested through the API");
                self.leave();
                let _ = reply.send(());
            }
        }
    }

    fn self_view(&self) -> SelfView {
        let id = self.membership.id();
        let member = self.membership.member(id).map(MemberView::of).unwrap_or_else(|| MemberView {
            id: String::new(),
            name: self.settings.name.clone(),
            state: State::Alive,
            addr: String::new(),
            capacity: self.settings.capacity,
            labels: BTreeMap::new(),
            generation: self.membership.generation(),
            incarnation: self.membership.incarnation(),
        });
        let mut members = BTreeMap::new();
        for m in self.membership.members() {
            *members.entry(metrics::state_name(m.state).to_string()).or_insert(0) += 1;
        }
        SelfView {
            member,
            peer_id: self.transport.local_peer().to_string(),
            cluster_id: format!("{:016x}", self.membership.config().cluster_id),
            profile: self.settings.profile.name().into(),
            members,
            local_health: self.membership.local_health(),
            uptime_secs: self.started.elapsed().as_secs(),
            data_dir: self.data_dir.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// A reply slot for an API request.
pub type Reply<T> = oneshot::Sender<T>;
