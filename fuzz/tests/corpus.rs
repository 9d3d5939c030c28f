//! The short fuzz run of the test suite: every corpus and regression file
//! through its target, then a few thousand seeded mutations of each corpus.
//! A failure names the file, or the seed and index of the mutant.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use shoal_fuzz::seeds::{self, BODY_KINDS, UPDATE_KINDS};
use shoal_fuzz::{CLUSTER_ID, TARGETS, Target, mutate};
use shoal_protocol::wire;

/// Mutants per target. Enough to walk past the first length checks of every
/// seed; small enough that the debug test run stays within a few seconds.
const MUTANTS_PER_TARGET: usize = 10_000;
const MUTATION_SEED: u64 = 0x5eed_f022;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The files in `fuzz/<kind>/<target>/`, sorted by name (none if the
/// directory does not exist: a target may have no regressions yet).
fn files(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = fs::read_dir(&dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.into_iter().map(|path| (path.clone(), fs::read(&path).expect("corpus file is readable"))).collect()
}

/// Runs `input` through `target`, turning a panic into a message that says
/// how to reproduce it.
fn run(target: Target, input: &[u8], origin: &str) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)))
        .map_err(|_| format!("target {} failed on {origin} ({} bytes: {input:02x?})", target.name, input.len()))
}

#[test]
fn every_corpus_and_regression_file_passes_its_target() {
    for target in TARGETS {
        let corpus = files("corpus", target.name);
        assert!(!corpus.is_empty(), "fuzz/corpus/{} is empty: every target needs seeds", target.name);
        for (path, input) in corpus.iter().chain(&files("regressions", target.name)) {
            run(*target, input, &path.display().to_string()).unwrap_or_else(|failure| panic!("{failure}"));
        }
    }
}

#[test]
fn seeded_mutations_of_the_corpus_pass_every_target() {
    for target in TARGETS {
        let mut inputs: Vec<Vec<u8>> = files("corpus", target.name).into_iter().map(|(_, bytes)| bytes).collect();
        inputs.extend(files("regressions", target.name).into_iter().map(|(_, bytes)| bytes));
        for (index, mutant) in mutate::mutants(&inputs, MUTATION_SEED, MUTANTS_PER_TARGET).enumerate() {
            let origin = format!("mutant {index} of seed {MUTATION_SEED:#x}");
            run(*target, &mutant, &origin).unwrap_or_else(|failure| panic!("{failure}"));
        }
    }
}

/// Mutants that are all refused at the first check test nothing past it:
/// enough of them must still be messages for the round trip and the merges
/// to run.
#[test]
fn enough_mutants_are_still_messages() {
    let inputs: Vec<Vec<u8>> = files("corpus", "wire_decode").into_iter().map(|(_, bytes)| bytes).collect();
    let accepted = mutate::mutants(&inputs, MUTATION_SEED, MUTANTS_PER_TARGET)
        .filter(|mutant| wire::decode(mutant, CLUSTER_ID).is_ok())
        .count();
    assert!(accepted * 50 >= MUTANTS_PER_TARGET, "only {accepted} of {MUTANTS_PER_TARGET} mutants decode");
}

/// A seed that no longer decodes (the wire format changed) only tests the
/// first check that refuses it: regenerate the seeds.
#[test]
fn the_committed_seeds_are_messages_of_this_wire_version_covering_every_kind() {
    let mut body_kinds = BTreeSet::new();
    let mut update_kinds = BTreeSet::new();
    for (path, bytes) in files("corpus", "wire_decode") {
        if !path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("seed-")) {
            continue;
        }
        let message = wire::decode(&bytes, CLUSTER_ID).unwrap_or_else(|error| {
            panic!("{} no longer decodes ({error}): regenerate the seeds (see fuzz/README.md)", path.display())
        });
        body_kinds.insert(seeds::body_kind(&message.body));
        update_kinds.extend(message.updates.iter().map(seeds::update_kind));
    }
    assert_eq!(body_kinds, BTreeSet::from(BODY_KINDS), "the seeds miss a body kind");
    assert_eq!(update_kinds, BTreeSet::from(UPDATE_KINDS), "the seeds miss an update kind");
}

/// Writes the seed corpus (`seeds::seed_corpus`) over `fuzz/corpus/`,
/// replacing the old `seed-*` files and keeping the others (inputs the
/// fuzzer found and `afl-cmin` kept).
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a wire change"]
fn regenerate_seed_corpus() {
    for target in TARGETS {
        for (path, _) in files("corpus", target.name) {
            if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("seed-")) {
                fs::remove_file(&path).expect("old seed removable");
            }
        }
    }
    for seed in seeds::seed_corpus() {
        let dir = fuzz_dir().join("corpus").join(seed.target);
        fs::create_dir_all(&dir).expect("corpus directory creatable");
        fs::write(dir.join(&seed.name), &seed.bytes).expect("seed writable");
    }
}
