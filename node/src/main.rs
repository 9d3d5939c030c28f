//! `shoal`: the Shoal agent and its CLI. The agent lands with issue 4; until
//! then this binary only says so.

use std::process::ExitCode;

fn main() -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "shoal {}: the agent is not built yet (see issue 4). The protocol it will run is \
             shoal-protocol; try `cargo test --workspace`.",
            env!("CARGO_PKG_VERSION")
        );
    }
    ExitCode::FAILURE
}
