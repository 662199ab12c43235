import Foundation
import Synchronization

private let interruptRequested = Atomic<Bool>(false)

/// Ctrl-C during training: the SIGINT handler only sets an atomic flag (no I/O in the handler) and
/// restores the default action, so a second Ctrl-C kills the process at once. The training loop
/// checks `requested` between steps (`Trainer.train(stopWhen:)`), saves a checkpoint and exits 130.
public enum TrainingInterrupt {
    public static func install() {
        interruptRequested.store(false, ordering: .relaxed)
        signal(SIGINT) { _ in
            interruptRequested.store(true, ordering: .relaxed)
            signal(SIGINT, SIG_DFL)
        }
    }

    /// Puts back the default SIGINT action.
    public static func uninstall() { signal(SIGINT, SIG_DFL) }

    public static var requested: Bool { interruptRequested.load(ordering: .relaxed) }

    /// Sets the flag as the handler would (for tests).
    public static func request() { interruptRequested.store(true, ordering: .relaxed) }
    public static func reset() { interruptRequested.store(false, ordering: .relaxed) }
}
