//! The `siltd` broker binary. Not built yet: the single-broker issue fills it in (see CLI.md).

fn main() {
    eprintln!("error: siltd is not implemented yet (unimplemented)");
    std::process::exit(2);
}
