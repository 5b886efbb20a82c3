//! `siltd`: see the library (`siltd::main`).

fn main() -> std::process::ExitCode {
    siltd::main()
}
