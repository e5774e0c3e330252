"""Speed and scale benchmarks: figures printed side by side, never asserted."""
