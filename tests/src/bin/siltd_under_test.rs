//! The `siltd` broker, built as a binary of this package so the fault tests can start it as a
//! child process (`CARGO_BIN_EXE_siltd-under-test`).

fn main() -> std::process::ExitCode {
    siltd::main()
}
