//! Ctrl-C (SIGINT) and SIGTERM (what `timeout` and SLURM send): the first
//! asks the running work to stop cleanly (a sampler finishes its draw and the
//! traces are kept); a second one exits at once with 128 + its number.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Raised by the first signal; arms the immediate exit on the second.
static ARMED: AtomicBool = AtomicBool::new(false);
/// The number of the first signal received (0: none).
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// Installs the handlers (once per process; later calls do nothing new).
pub fn install() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    for sig in [SIGINT, SIGTERM] {
        // Registration order matters: the exit check runs before the flag is set.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, &ARMED);
        let _ = signal_hook::flag::register(sig, &ARMED);
        let _ = signal_hook::flag::register_usize(sig, &RECEIVED, sig as usize);
    }
}

/// The exit code of the signal that asked to stop (130 for SIGINT, 143 for SIGTERM), if one did.
pub fn interrupted() -> Option<u8> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some((128 + sig).min(255) as u8),
    }
}
