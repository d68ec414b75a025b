"""XLA's CPU runtime for the compiled training loop, chosen before TensorFlow loads.

A training step is many small operations (per-tensor norms, clipping, the update; for the
recurrent net 28 time steps of 128 x 128 matmuls each way). XLA:CPU's thunk runtime, the
default of this TensorFlow, pays more per operation than its older runtime: with the older
one a reference step took 0.89-0.91 ms against 1.11-1.31 ms, and a recurrent step 4.5-5.9 ms
against 6.5-6.6 ms, with the same metrics.csv bit for bit for the reference run
(measured side by side; see the README's Speed section). A user's own XLA_FLAGS choice wins.
"""

from __future__ import annotations

import os

RUNTIME_FLAG = "--xla_cpu_use_thunk_runtime"
CHOSEN = f"{RUNTIME_FLAG}=false"


def choose_xla_cpu_runtime() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if RUNTIME_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CHOSEN}".strip()
