//! `roomcast`: thin entry point. Everything lives in the library; only `cli` decides exit codes.
fn main() -> std::process::ExitCode {
    roomcast::cli::main()
}
