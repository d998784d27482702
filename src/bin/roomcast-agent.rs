//! `roomcast-agent`: the binary the boot environment puts on every PC (`docs/BOOT.md`).
fn main() -> std::process::ExitCode {
    roomcast_agent::cli::main()
}
