//! The `chaosflow` binary: see [`chaosflow::cli`].

fn main() -> std::process::ExitCode {
    chaosflow::cli::main()
}
