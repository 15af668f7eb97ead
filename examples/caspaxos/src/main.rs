//! `caspaxos`: paxsim's whole command line, with the CASPaxos scenario
//! registered next to the built-in ones. Try
//! `caspaxos campaign --scenario caspaxos --bug ignore-accepted`.

fn main() -> std::process::ExitCode {
    paxsim::cli::main("caspaxos", &[&caspaxos_example::CasPaxos])
}
