#pragma once
// Ctrl-C (SIGINT) and SIGTERM during a writing command. The handler only records the
// signal (a third one ends the process at once, temporaries and all); long work polls it
// at safe points (every Progress::advance) and unwinds with Interrupted.
// Unwinding runs the destructors that remove temporaries (H5Output, DumpWriter), and main()
// reports what was kept and exits 128 + signal (130 for SIGINT, 143 for SIGTERM).
#include <string>

namespace moba {

// Installs the SIGINT/SIGTERM handlers. Called once by main(); library code never does.
void install_interrupt_handlers();

// The signal received since installation (SIGINT or SIGTERM), or 0.
int pending_interrupt();

// Throws Interrupted (core/errors.h) when a signal is pending.
void throw_if_interrupted();

// Removes files named "<name>.tmp-<pid>-<n>" beside `path` whose process <pid> no longer
// runs: temporaries that a killed run (kill -9, power loss) could not remove. Best effort.
void remove_stale_temporaries(const std::string& path);

}  // namespace moba
