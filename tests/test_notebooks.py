"""The walkthroughs in notebooks/ run top to bottom and show what they promise.

Each notebook is executed with nbclient in a kernel that runs this very
interpreter (a kernelspec written to a temporary JUPYTER_PATH, so a `python3`
kernelspec pointing at another Python cannot be picked up), with the working
directory and TMPDIR in pytest's temporary folder: the notebooks write only
under `tempfile.mkdtemp()`, never into the repository. The notebooks run on
tiny presets; together they take a few minutes on 2 CPU cores.
"""

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# Per notebook: the least number of pictures it must show, and text its outputs must contain.
EXPECTED = {
    "01_hand_renderer_and_domains.ipynb": (6, ["baseline_mm", "sensor_eval", "hand pixels in the batch"]),
    "02_segmentation_and_restoration.ipynb": (6, ["crf-potts", "rejection rate", "stage 2 (+ restored real)"]),
    "03_regression_and_evaluation.ipynb": (5, ["mean 3D error (mm)", "reg_full.keras", "every joint at the crop centre"]),
    "04_export_and_serving.ipynb": (
        1,
        ["identical part maps: True", "keras_hpe imported there: False", "POST /v1/models/hand_pose:predict"],
    ),
}


@pytest.fixture
def kernel_dir(tmp_path, monkeypatch):
    """A `python3` kernelspec running sys.executable, first on JUPYTER_PATH; temporary files under tmp_path."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (keras_hpe tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    work = tmp_path / "cwd"
    work.mkdir()
    return work


def _outputs(nb) -> list:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def _text(output) -> str:
    if output.output_type == "stream":
        return output.text
    return str(output.get("data", {}).get("text/plain", ""))


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs(name, kernel_dir):
    repo_files_before = sorted(NOTEBOOKS.parent.glob("notebooks/**/*"))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(kernel_dir)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = _outputs(nb)
    assert not [output for output in outputs if output.output_type == "error"]
    min_images, snippets = EXPECTED[name]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= min_images
    text = "\n".join(_text(output) for output in outputs)
    missing = [snippet for snippet in snippets if snippet not in text]
    assert not missing, f"{name}: outputs lack {missing}"
    assert sorted(NOTEBOOKS.parent.glob("notebooks/**/*")) == repo_files_before
