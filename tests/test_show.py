import numpy as np
import pytest
from PIL import Image

from keras_hpe.data.nyu import load_nyu, write_nyu_like
from keras_hpe.data.show import montage
from keras_hpe.data.skeleton import PART_COLORS
from keras_hpe.errors import UserError


def _colors(path):
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return rgb, {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0)}


def test_montage_with_labels_shows_parts_and_joints(synth_dir, tmp_path):
    out = montage(synth_dir, tmp_path / "pics" / "synth.png", n=4)
    assert out == tmp_path / "pics" / "synth.png"
    assert [p.name for p in out.parent.iterdir()] == ["synth.png"]  # nothing temporary left
    rgb, colors = _colors(out)
    # Part colours appear exactly (nearest-neighbour drawing), as do the red joints.
    assert len(set(PART_COLORS[1:]) & colors) >= 8
    assert (255, 0, 0) in colors
    wide, _ = _colors(montage(synth_dir, tmp_path / "one.png", n=1))
    assert wide.shape[1] > wide.shape[0]  # depth panel and parts panel side by side


def test_montage_without_labels(tmp_path):
    write_nyu_like(tmp_path / "nyu", "test", 3, seed=1)
    load_nyu(tmp_path / "nyu", "test", tmp_path / "data", size=32, progress=False)
    _, colors = _colors(montage(tmp_path / "data", tmp_path / "nyu.png", n=16))
    assert not set(PART_COLORS[2:]) & colors
    assert (255, 0, 0) in colors


def test_montage_bad_input(synth_dir, tmp_path):
    with pytest.raises(UserError, match="> 0"):
        montage(synth_dir, tmp_path / "x.png", n=0)
    with pytest.raises(UserError, match="does not exist"):
        montage(tmp_path / "missing", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
