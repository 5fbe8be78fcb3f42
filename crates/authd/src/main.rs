//! authd(8): see the library documentation (`cargo doc -p postern-authd`).
fn main() -> std::process::ExitCode {
    postern_common::daemon::main("authd", postern_authd::validate, postern_authd::run)
}
