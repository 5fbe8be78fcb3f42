//! smtpd(8): see the library documentation (`cargo doc -p postern-smtpd`).
fn main() -> std::process::ExitCode {
    postern_common::daemon::main("smtpd", postern_smtpd::validate, postern_smtpd::run)
}
