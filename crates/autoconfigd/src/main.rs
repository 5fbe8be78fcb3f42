//! autoconfigd(8): see the library documentation (`cargo doc -p postern-autoconfigd`).
fn main() -> std::process::ExitCode {
    postern_common::daemon::main(
        "autoconfigd",
        postern_autoconfigd::validate,
        postern_autoconfigd::run,
    )
}
