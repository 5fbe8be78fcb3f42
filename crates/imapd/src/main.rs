//! imapd(8): see the library documentation (`cargo doc -p postern-imapd`).
fn main() -> std::process::ExitCode {
    postern_common::daemon::main("imapd", postern_imapd::validate, postern_imapd::run)
}
