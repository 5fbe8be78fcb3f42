//! lmtp-delivery(8): see the library documentation (`cargo doc -p postern-lmtp-delivery`).
fn main() -> std::process::ExitCode {
    postern_common::daemon::main(
        "lmtp-delivery",
        postern_lmtp_delivery::validate,
        postern_lmtp_delivery::run,
    )
}
