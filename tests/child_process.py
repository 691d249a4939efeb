"""Run a test script in a child Python (e.g. with simulated devices) and read back what it
printed after "FACTS" (JSON) and the arrays it saved to the path it was given."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_child(script, out):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)  # the script sets its own device count
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script, str(out)], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    facts = json.loads(proc.stdout.split("FACTS", 1)[1])
    with np.load(out) as f:
        return facts, {k: f[k] for k in f.files}
