//! The `silt` command-line tool. Not built yet: the single-broker issue fills it in (see CLI.md).

fn main() {
    eprintln!("error: the silt CLI is not implemented yet (unimplemented)");
    std::process::exit(2);
}
