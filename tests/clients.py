"""Clients of the exports for the tests: each runs in a fresh interpreter where keras_hpe is not importable.

`-I` ignores PYTHONPATH and the current folder, `-S` skips the .pth files
(keras_hpe is installed editable through one), and only the site-packages
folders are put back on the path, so a client sees the runtimes but not
keras_hpe. A client's code reads `inputs` (a dict of NumPy arrays) and the
model path `sys.argv[3]`, and saves its outputs to `sys.argv[4]` (.npz).
"""

import os
import site
import subprocess
import sys
from pathlib import Path

import numpy as np

PREAMBLE = """
import sys
sys.path[:0] = sys.argv[1].split(":")
try:
    import keras_hpe
except ImportError:
    pass
else:
    sys.exit("keras_hpe must not be importable in the client")
import numpy as np
inputs = dict(np.load(sys.argv[2]))
"""


def run_client(code: str, inputs: dict[str, np.ndarray], model: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    """Run `PREAMBLE + code` on `inputs` and `model` in `tmp_path` (its working folder); return its outputs."""
    np.savez(tmp_path / "inputs.npz", **inputs)
    subprocess.run(
        [sys.executable, "-I", "-S", "-c", PREAMBLE + code, ":".join(site.getsitepackages()),
         tmp_path / "inputs.npz", model, tmp_path / "outputs.npz"],
        cwd=tmp_path, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    with np.load(tmp_path / "outputs.npz") as outputs:
        return dict(outputs)
