//! Ctrl-C (SIGINT): the first one asks the running load or generation to stop at its next
//! weight piece or token, so what was generated so far is printed and the process exits with
//! status 130 (128 + SIGINT, as a shell reports a job the signal ended); a second one, for a
//! step that does not come back soon (a long prefill, a GPU pipeline build), ends the process
//! at once with the same status.

use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status of a run that Ctrl-C ended.
pub const EXIT_INTERRUPTED: i32 = 130;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Install the handler. Failing to install it (another handler is set) leaves the default
/// behaviour, which kills the process: still an end, so it is reported, not fatal.
pub fn install() {
    let installed = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED);
        }
    });
    if let Err(e) = installed {
        eprintln!("[Ctrl-C will end the process at once: {e}]");
    }
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
