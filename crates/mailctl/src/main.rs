//! mailctl(8): postern administration. See the library documentation.
fn main() -> std::process::ExitCode {
    postern_mailctl::main()
}
