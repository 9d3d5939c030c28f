# Sourced by the sweep scripts: makes a work folder ($work, removed on exit)
# holding the shoal-sim binary to measure, $work/shoal-sim. SHOAL_SIM=path
# measures that binary (e.g. a copy of the build before a change); else the
# current release build, built first. Copied out so that another checkout
# sharing the target folder cannot replace it mid-sweep.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${SHOAL_SIM:-}" ]; then
    cp "$SHOAL_SIM" "$work/shoal-sim"
else
    cargo build --release -p shoal-sim --locked >&2
    cp "${CARGO_TARGET_DIR:-target}/release/shoal-sim" "$work/shoal-sim"
fi
