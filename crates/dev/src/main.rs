//! postern-dev: the `make run` supervisor. See the library documentation.
fn main() -> std::process::ExitCode {
    postern_dev::main()
}
