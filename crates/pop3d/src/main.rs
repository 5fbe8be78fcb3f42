//! pop3d(8): see the library documentation (`cargo doc -p postern-pop3d`).
fn main() -> std::process::ExitCode {
    postern_common::daemon::main("pop3d", postern_pop3d::validate, postern_pop3d::run)
}
