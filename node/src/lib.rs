//! The Shoal agent: drives the pure `shoal-protocol` state machine with the
//! real clock and the network (sealed UDP datagrams, short-lived TCP streams,
//! mDNS), and serves a local HTTP API.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; the cross-crate
//! tests use the library too, to play a hostile peer.

pub mod agent;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod crypto;
pub mod driver;
pub mod events;
pub mod keys;
pub mod metrics;
pub mod persist;
pub mod reconcile;
pub mod spec;
pub mod store;
pub mod tls;
pub mod transport;
pub mod ui;
pub mod view;
pub mod workloads;
