"""`keras-hpe reproduce --nyu-root [--compare]` with the tiny plan on NYU files written by `write_nyu_like`."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import scipy.io

from keras_hpe.cli import main as cli_main
from keras_hpe.data.camera import uvd_to_xyz, xyz_to_uvd
from keras_hpe.data.nyu import write_nyu_like
from keras_hpe.data.skeleton import NYU_EVAL_JOINT_INDICES
from keras_hpe.evaluation.joints import COMMUNITY_NYU_CAMERA
from keras_hpe.reproduce import get_plan
from keras_hpe.stages import NYU_NO_LABELS, NYU_NO_ORACLE
from conftest import assert_one_line_error

NYU_TEST_FRAMES = 20
TEST_FRAMES = get_plan("tiny").real_test_frames  # the first 16 of them
# Published predictions: the ground truth moved by a known offset in mm, so their mean 3D error is its length.
OFFSETS_MM = {"offset_xy5": (3.0, 4.0, 0.0), "offset_z10": (0.0, 0.0, 10.0)}


def write_predictions(nyu_root, folder, frames=TEST_FRAMES):
    """One file per method in the community's format: the test split's first `frames` ground truths plus an offset."""
    folder.mkdir()
    gt_uvd = scipy.io.loadmat(nyu_root / "test" / "joint_data.mat")["joint_uvd"][0][:frames, NYU_EVAL_JOINT_INDICES]
    for name, offset in OFFSETS_MM.items():
        pred_uvd = xyz_to_uvd(uvd_to_xyz(gt_uvd, COMMUNITY_NYU_CAMERA) + offset, COMMUNITY_NYU_CAMERA)
        np.savetxt(folder / f"{name}.txt", pred_uvd.reshape(frames, -1), fmt="%.6f")
    return folder


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    write_nyu_like(root, "train", 32, seed=0)
    write_nyu_like(root, "test", NYU_TEST_FRAMES, seed=1)
    return root


@pytest.fixture(scope="module")
def nyu_run(nyu_root, tmp_path_factory):
    """The tiny plan on the fake NYU folder with two published methods, through the command line."""
    root = tmp_path_factory.mktemp("reproduce_nyu")
    paths = {"out": root / "run", "reports": root / "reports", "saved": root / "saved",
             "compare": write_predictions(nyu_root, root / "published")}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli_main.main(["reproduce", "--preset", "tiny", "--out", str(paths["out"]), "--reports",
                              str(paths["reports"]), "--saved-models", str(paths["saved"]), "--nyu-root",
                              str(nyu_root), "--compare", str(paths["compare"]), "--no-progress"])
    assert code == 0
    return paths


def test_tables_and_figures_nyu_cannot_give_say_why(nyu_run):
    summary = json.loads((nyu_run["reports"] / "summary.json").read_text())
    assert summary["not_run"] == {**{name: NYU_NO_LABELS for name in ("table2", "table3", "fig5", "fig6")},
                                  "table4/oracle": NYU_NO_ORACLE}
    readme = (nyu_run["reports"] / "README.md").read_text()
    table4 = readme.split("### Table 4")[1].split("\n#")[0]
    assert f"*(e) oracle: the true part segmentation (a diagnostic, not part of the method): not run: " \
           f"{NYU_NO_ORACLE}.*" in table4
    for heading in ("### Table 2: restoration", "### Table 3: semi/weakly-supervised", "### Fig. 5: segmentation",
                    "### Fig. 6: accuracy per hand part"):
        section = readme.split(heading)[1].split("\n#")[0]
        assert section.strip().splitlines()[-1] == f"*Not run: {NYU_NO_LABELS}.*"
    for figure in ("fig7_restoration_failures", "fig8_success_curves", "fig9_pose_montage"):
        assert f"{figure}.png)" in readme


def test_published_predictions_are_rows_of_table4_and_curves_of_fig8(nyu_run):
    summary = json.loads((nyu_run["reports"] / "summary.json").read_text())
    for name, offset in OFFSETS_MM.items():
        assert summary["table4"][f"published/{name}"]["mean_3d_mm"] == pytest.approx(np.linalg.norm(offset), abs=1e-3)
    assert not any("published" in key for key in summary["verdicts"])
    readme = (nyu_run["reports"] / "README.md").read_text()
    table4 = readme.split("### Table 4")[1].split("\n#")[0]
    rows = [line for line in table4.splitlines() if line.startswith("| ")][2:]
    assert rows[0].startswith("| offset_xy5 (published predictions, not trained here; no verdict) | ")
    assert rows[1].startswith("| offset_z10 (published") and "| 10.00 |" in rows[1]
    assert rows[2].startswith("| (a) direct regression |")
    assert "published predictions (`reproduce --compare`)" in table4
    curves = pd.read_csv(nyu_run["reports"] / "success_curves.csv", index_col="threshold_mm")
    # Every joint of every frame is exactly 10 mm off: no frame within 9 mm, all within 11 mm.
    assert curves.loc[9.0, "offset_z10 (published)"] == 0 and curves.loc[11.0, "offset_z10 (published)"] == 100
    assert curves.loc[6.0, "offset_xy5 (published)"] == 100


@pytest.mark.parametrize("case", ["frames", "without_nyu"])
def test_bad_compare_exits_2_with_one_line(case, nyu_root, tmp_path, capsys):
    compare = write_predictions(nyu_root, tmp_path / "published", frames=NYU_TEST_FRAMES)
    nyu = ["--nyu-root", str(nyu_root)] if case == "frames" else []
    code = cli_main.main(["reproduce", "--preset", "tiny", "--out", str(tmp_path / "run"), "--no-progress",
                          "--compare", str(compare), *nyu])
    assert code == 2
    err = capsys.readouterr().err
    if case == "frames":
        assert_one_line_error(err, f"{compare / 'offset_xy5.txt'} has {NYU_TEST_FRAMES} lines, but the test split "
                                   f"evaluated has {TEST_FRAMES} frames")
    else:
        assert_one_line_error(err, "--compare needs --nyu-root")
    assert not (tmp_path / "run").exists()


def test_help_describes_compare(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["reproduce", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--compare DIR with --nyu-root: a folder of other methods' published NYU test predictions" in text
