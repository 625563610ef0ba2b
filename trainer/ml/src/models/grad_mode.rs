//! Whether this thread is running a training step, for the fused kernels that can trade
//! memory for time: inside [`training_step`], DIN's target attention
//! ([`super::layers::activation_unit`]) keeps each block's activations from the forward pass for the
//! backward pass instead of recomputing them; everywhere else (validation, test scoring, the
//! detached priors of S2F, marked with [`inference`]) it keeps nothing. Values and gradients
//! are the same either way, bit for bit: only the work and the memory differ.

use std::cell::Cell;

thread_local! {
    static TRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a training step's forward and backward passes) with kernels keeping their
/// activations for the backward pass.
pub fn training_step<R>(f: impl FnOnce() -> R) -> R {
    with(true, f)
}

/// Runs `f` (a forward pass nothing is differentiated through, even inside a training step)
/// with kernels keeping nothing.
pub fn inference<R>(f: impl FnOnce() -> R) -> R {
    with(false, f)
}

/// Whether a kernel run now should keep its activations for a backward pass.
pub(super) fn keeps_activations() -> bool {
    TRAINING.with(Cell::get)
}

fn with<R>(training: bool, f: impl FnOnce() -> R) -> R {
    /// Restores the previous mode however `f` ends.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            TRAINING.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(TRAINING.with(|t| t.replace(training)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_nest_and_are_restored() {
        assert!(!keeps_activations());
        training_step(|| {
            assert!(keeps_activations());
            inference(|| assert!(!keeps_activations()));
            assert!(keeps_activations());
        });
        assert!(!keeps_activations());
        let unwound = std::panic::catch_unwind(|| training_step(|| panic!("a failed step")));
        assert!(unwound.is_err());
        assert!(!keeps_activations(), "a panic left training mode on");
    }
}
