//! Why a simulation could not start.

/// Why a simulation could not start. Nothing ran.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario asks for zero nodes or more than the simulator supports.
    #[error("a scenario needs between 1 and {max} nodes, not {got}")]
    Nodes {
        /// Asked for.
        got: usize,
        /// Supported.
        max: usize,
    },
    /// The protocol refused its config or a node's identity.
    #[error("protocol: {0}")]
    Protocol(#[from] shoal_protocol::Error),
    /// The scenario injects a bug, but this build lacks the `bug-injection`
    /// feature.
    #[error("scenario injects bug `{0}`: rebuild with `--features bug-injection`")]
    BugInjectionUnavailable(&'static str),
    /// `--impl foca` in a build without the `compare` feature.
    #[error("comparing with foca needs the `compare` feature: rebuild with `--features compare`")]
    CompareUnavailable,
    /// The scenario starts formed (`bootstrap.mode = "formed"`), which the
    /// implementation cannot do.
    #[error("`{0}` cannot start a mesh formed (bootstrap mode `formed`): use `staggered` or `one-seed`")]
    FormedUnavailable(&'static str),
    /// A fault names a node that does not exist.
    #[error("fault `{fault}` names node {node}, but there are only {nodes}")]
    NoSuchNode {
        /// The fault.
        fault: &'static str,
        /// The index.
        node: usize,
        /// How many nodes.
        nodes: usize,
    },
    /// The scenario's `[network.sites]` table is malformed.
    #[error("scenario: {0}")]
    Sites(#[from] crate::net::SitesError),
}
