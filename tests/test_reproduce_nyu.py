"""`keras-hpe reproduce --nyu-root` with the tiny plan on NYU files written by `write_nyu_like`."""

import contextlib
import io
import json

import pytest

from keras_hpe.cli import main as cli_main
from keras_hpe.data.nyu import write_nyu_like
from keras_hpe.stages import NYU_NO_LABELS

NYU_TEST_FRAMES = 20  # the tiny plan uses the first 16


@pytest.fixture(scope="module")
def nyu_run(tmp_path_factory):
    """The tiny plan on a fake NYU folder, through the command line."""
    root = tmp_path_factory.mktemp("reproduce_nyu")
    write_nyu_like(root / "nyu", "train", 32, seed=0)
    write_nyu_like(root / "nyu", "test", NYU_TEST_FRAMES, seed=1)
    paths = {"root": root, "nyu": root / "nyu", "out": root / "run", "reports": root / "reports",
             "saved": root / "saved"}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli_main.main(["reproduce", "--preset", "tiny", "--out", str(paths["out"]), "--reports",
                              str(paths["reports"]), "--saved-models", str(paths["saved"]), "--nyu-root",
                              str(paths["nyu"]), "--no-progress"])
    assert code == 0
    return paths


def test_tables_and_figures_nyu_cannot_give_say_why(nyu_run):
    summary = json.loads((nyu_run["reports"] / "summary.json").read_text())
    assert summary["not_run"] == {name: NYU_NO_LABELS for name in ("table2", "table3", "fig5", "fig6")}
    readme = (nyu_run["reports"] / "README.md").read_text()
    for heading in ("### Table 2: restoration", "### Table 3: semi/weakly-supervised", "### Fig. 5: segmentation",
                    "### Fig. 6: accuracy per hand part"):
        section = readme.split(heading)[1].split("\n#")[0]
        assert section.strip().splitlines()[-1] == f"*Not run: {NYU_NO_LABELS}.*"
    for figure in ("fig7_restoration_failures", "fig8_success_curves", "fig9_pose_montage"):
        assert f"{figure}.png)" in readme
