#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
# Long soaks and large simulations are not here: see scripts/ and the README.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
