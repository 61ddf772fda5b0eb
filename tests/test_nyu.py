import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_hpe.data.camera import uvd_to_xyz
from keras_hpe.data.crop import CUBE_MM, crop_depth
from keras_hpe.data.dataset import load_arrays
from keras_hpe.data.nyu import (
    NYU_PALM_INDEX,
    depth_png_name,
    load_nyu,
    read_depth_png,
    write_nyu_like,
)
from keras_hpe.data.skeleton import NYU_EVAL_JOINT_INDICES
from keras_hpe.errors import UserError

SIZE = 32
N = 6


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    write_nyu_like(root, "test", N, seed=0)
    return root


def test_fake_files_follow_the_nyu_format(nyu_root):
    split_dir = nyu_root / "test"
    mat = scipy.io.loadmat(split_dir / "joint_data.mat")
    assert mat["joint_uvd"].shape == (3, N, 36, 3) and mat["joint_xyz"].shape == (3, N, 36, 3)
    assert mat["joint_names"].size == 36
    with Image.open(split_dir / "depth_1_0000001.png") as image:
        assert image.mode == "RGB" and image.size == (640, 480)
        rgb = np.asarray(image)
    depth = read_depth_png(split_dir / "depth_1_0000001.png")
    np.testing.assert_array_equal(depth, rgb[..., 1].astype(np.int64) * 256 + rgb[..., 2])
    assert depth.max() == 1500 and 300 < depth.min() < 1000  # a wall behind a near hand
    np.testing.assert_allclose(uvd_to_xyz(mat["joint_uvd"][0]), mat["joint_xyz"][0], atol=1e-6)


def test_load_nyu_writes_the_data_set_format(nyu_root, tmp_path):
    manifest = load_nyu(nyu_root, "test", tmp_path / "out", size=SIZE, progress=False)
    assert manifest.domain == "nyu" and manifest.count == N and manifest.params["split"] == "test"
    assert "labels" not in manifest.fields
    arrays = load_arrays(tmp_path / "out")
    mat = scipy.io.loadmat(nyu_root / "test" / "joint_data.mat")
    eval_joints = list(NYU_EVAL_JOINT_INDICES)
    np.testing.assert_allclose(arrays["joints_xyz"], mat["joint_xyz"][0][:, eval_joints], atol=1e-3)
    np.testing.assert_allclose(arrays["joints_uvd"], mat["joint_uvd"][0][:, eval_joints], atol=1e-3)
    # The centre comes from the depth, near the annotated palm but not equal to it.
    palm_xyz = mat["joint_xyz"][0][:, NYU_PALM_INDEX]
    offsets = np.linalg.norm(uvd_to_xyz(arrays["center_uvd"]) - palm_xyz, axis=-1)
    assert np.all(offsets < 60) and np.all(offsets > 0.1), offsets
    # The crop is the cube around that centre: the hand is in it and the wall is cut away.
    depth = arrays["depth_mm"]
    assert np.all((depth > 0).mean(axis=(1, 2)) > 0.02)
    assert np.all(np.abs(depth - arrays["center_uvd"][:, 2, None, None])[depth > 0] <= CUBE_MM / 2)
    full = read_depth_png(nyu_root / "test" / depth_png_name(2))
    np.testing.assert_array_equal(depth[2], crop_depth(full, arrays["center_uvd"][2].astype(np.float64), SIZE))


def test_limit_and_rerun(nyu_root, tmp_path):
    manifest = load_nyu(nyu_root, "test", tmp_path / "out", size=SIZE, limit=2, progress=False)
    assert manifest.count == 2
    assert load_nyu(nyu_root, "test", tmp_path / "out", size=SIZE, limit=2, progress=False) == manifest
    with pytest.raises(UserError, match="out"):
        load_nyu(nyu_root, "test", tmp_path / "out", size=SIZE, limit=3, progress=False)


def _copy_split(source, target, n=N):
    target.mkdir(parents=True)
    for name in [depth_png_name(i) for i in range(n)] + ["joint_data.mat"]:
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_missing_files_are_user_errors(nyu_root, tmp_path):
    with pytest.raises(UserError, match="train"):
        load_nyu(nyu_root, "train", tmp_path / "out", size=SIZE, progress=False)
    with pytest.raises(UserError, match="split"):
        load_nyu(nyu_root, "valid", tmp_path / "out", size=SIZE, progress=False)
    split_dir = _copy_split(nyu_root / "test", tmp_path / "a" / "test")
    (split_dir / depth_png_name(3)).unlink()
    with pytest.raises(UserError, match=depth_png_name(3)):
        load_nyu(tmp_path / "a", "test", tmp_path / "out_a", size=SIZE, progress=False)
    (split_dir / "joint_data.mat").unlink()
    with pytest.raises(UserError, match="joint_data.mat"):
        load_nyu(tmp_path / "a", "test", tmp_path / "out_b", size=SIZE, progress=False)


def test_bad_mat_and_png_are_user_errors(nyu_root, tmp_path):
    split_dir = _copy_split(nyu_root / "test", tmp_path / "b" / "test")
    mat = {k: v for k, v in scipy.io.loadmat(split_dir / "joint_data.mat").items() if not k.startswith("__")}
    scipy.io.savemat(split_dir / "joint_data.mat", {"joint_uvd": mat["joint_uvd"]})
    with pytest.raises(UserError, match="joint_data.mat.*joint_xyz"):
        load_nyu(tmp_path / "b", "test", tmp_path / "out", size=SIZE, progress=False)
    scipy.io.savemat(split_dir / "joint_data.mat", {**mat, "joint_uvd": mat["joint_uvd"][:, :, :14]})
    with pytest.raises(UserError, match="joint_uvd has shape"):
        load_nyu(tmp_path / "b", "test", tmp_path / "out", size=SIZE, progress=False)
    scipy.io.savemat(split_dir / "joint_data.mat", mat)
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(split_dir / depth_png_name(1))
    with pytest.raises(UserError, match=f"{depth_png_name(1)}.*640x480"):
        load_nyu(tmp_path / "b", "test", tmp_path / "out", size=SIZE, progress=False)
    Image.fromarray(np.zeros((480, 640), np.uint16)).save(split_dir / depth_png_name(1))
    with pytest.raises(UserError, match=f"{depth_png_name(1)}.*RGB"):
        load_nyu(tmp_path / "b", "test", tmp_path / "out", size=SIZE, progress=False)
    (split_dir / depth_png_name(1)).write_bytes(b"not a png")
    with pytest.raises(UserError, match=depth_png_name(1)):
        load_nyu(tmp_path / "b", "test", tmp_path / "out", size=SIZE, progress=False)
