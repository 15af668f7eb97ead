//! The `paxsim` command line: the built-in scenarios. See [`paxsim::cli`].

fn main() -> std::process::ExitCode {
    paxsim::cli::main("paxsim", &[])
}
