//! `shoal-fuzz-afl TARGET`: runs the named target of `shoal-fuzz` under
//! AFL++ (persistent mode, input on stdin). Outside AFL it runs the target
//! once on stdin, which is how a crash file is replayed:
//! `shoal-fuzz-afl wire_decode < crash`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = shoal_fuzz::target(&name) else {
        let names: Vec<&str> = shoal_fuzz::TARGETS.iter().map(|target| target.name).collect();
        eprintln!("usage: shoal-fuzz-afl TARGET < input, with TARGET one of {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
