//! `shoal-sim`: the deterministic simulator. It drives many
//! `shoal-protocol` instances in virtual time; it lands with issue 3.

/// The protocol crate the simulator drives, re-exported for its users.
pub use shoal_protocol as protocol;
