"""Plans of runs: one resumable, parallel runner, and the demo, sweep and cures built on it."""
