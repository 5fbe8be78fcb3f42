//! queue-manager(8): see the library documentation (`cargo doc -p postern-queue-manager`).
fn main() -> std::process::ExitCode {
    postern_common::daemon::main(
        "queue-manager",
        postern_queue_manager::validate,
        postern_queue_manager::run,
    )
}
