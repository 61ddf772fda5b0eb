"""Figures 5, 7 and 9 from a tiny simulated-real evaluation set: PNG size, content, bad input."""

import numpy as np
import pytest
from PIL import Image

from keras_hpe.data.dataset import load_frames, read_manifest
from keras_hpe.data.show import NOT_HAND_RGB, labels_rgb
from keras_hpe.data.skeleton import PART_COLORS
from keras_hpe.errors import UserError
from keras_hpe.reports.figures import (
    CAPTION_PX,
    _rejection_text,
    plot_pose_montage,
    plot_restoration_failures,
    plot_segmentation_examples,
    sample_frames,
)
from keras_hpe.restoration.quality import gate_restorations


@pytest.fixture(scope="module")
def frames(sensor_eval_dir):
    manifest = read_manifest(sensor_eval_dir)
    return load_frames(sensor_eval_dir, np.arange(7), manifest.fields), manifest


def _rgb(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _saturated(rgb):
    """Pixels clearly coloured (not grey): only drawn parts or bones can be."""
    return (rgb.max(axis=-1) - rgb.min(axis=-1)) > 80


def test_segmentation_examples_size_colours_and_not_run(frames, tmp_path):
    data, _ = frames
    gt = data["labels"][:3]
    noisy = np.where(gt > 0, (gt + 1) % 21, 0).astype(np.uint8)
    out = plot_segmentation_examples(tmp_path / "figs" / "fig5.png", data["depth_mm"][:3], synthetic_only=noisy,
                                     restored=gt, fine_tuned=None, ground_truth=gt, panel_px=64)
    assert [p.name for p in out.parent.iterdir()] == ["fig5.png"]  # written atomically, nothing left over
    rgb = _rgb(out)
    assert rgb.shape == (3 * 64 + CAPTION_PX, 5 * 64, 3)
    colors = {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0)}
    present = {PART_COLORS[p] for p in np.unique(gt) if p > 0}
    assert present <= colors  # part colours drawn exactly
    # The fine-tuned column ("not run") has no part colour; the ground-truth column has.
    column = lambda k: rgb[CAPTION_PX:, k * 64 + 4 : (k + 1) * 64 - 4]  # noqa: E731
    assert not _saturated(column(3)).any()
    assert _saturated(column(4)).sum() > 20


def test_pose_montage_size_and_skeletons(frames, tmp_path):
    data, manifest = frames
    rng = np.random.default_rng(0)
    pred = data["joints_uvd"] + rng.normal(0, 2, data["joints_uvd"].shape)
    common = dict(cube_mm=manifest.cube_mm, camera=manifest.camera_model, columns=3, panel_px=64)
    out = plot_pose_montage(tmp_path / "fig9.png", data["depth_mm"], pred, data["center_uvd"],
                            gt_uvd=data["joints_uvd"], **common)
    rgb = _rgb(out)
    assert rgb.shape == (3 * 64 + CAPTION_PX, 3 * 64, 3)  # 7 frames in 3 columns -> 3 rows
    # Depth is grey: coloured pixels are the predicted bones, inside every frame's panel.
    panels = [rgb[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64] for r in range(3) for c in range(3)][:7]
    assert all(_saturated(panel).sum() > 10 for panel in panels)
    # Joints projected far outside the crop leave the panels free of bones.
    away = pred.copy()
    away[..., 0] += 1000.0
    empty = _rgb(plot_pose_montage(tmp_path / "away.png", data["depth_mm"], away, data["center_uvd"], **common))
    assert _saturated(empty[: 3 * 64]).sum() < 0.1 * _saturated(rgb[: 3 * 64]).sum()


def test_restoration_failures_show_maps_and_reasons(frames, tmp_path):
    data, manifest = frames
    raw = data["labels"][:3]
    restored = np.where(np.isin(raw, (4, 8)), 1, raw).astype(np.uint8)  # thumb and index tips become palm
    geometry = dict(cube_mm=manifest.cube_mm, camera=manifest.camera_model)
    gate = gate_restorations(raw, restored, data["depth_mm"][:3], data["center_uvd"][:3], data["joints_xyz"][:3],
                             **geometry)
    out = plot_restoration_failures(tmp_path / "fig7.png", data["depth_mm"][:3], raw, restored, data["joints_xyz"][:3],
                                    data["center_uvd"][:3], gate, frame_ids=np.array([4, 9, 11]), panel_px=128,
                                    **geometry)
    rgb = _rgb(out)
    assert rgb.shape == (3 * 128 + CAPTION_PX, 5 * 128, 3)  # the reasons take two panels' width
    column = lambda k: rgb[CAPTION_PX:, k * 128 + 4 : (k + 1) * 128 - 4]  # noqa: E731
    colours = lambda k: {tuple(c) for c in np.unique(column(k).reshape(-1, 3), axis=0)}  # noqa: E731
    # The tips' few pixels lie under the markers of their barycenters; every other part is drawn.
    assert {PART_COLORS[p] for p in np.unique(raw) if p not in (0, 4, 8)} <= colours(1)
    assert not {PART_COLORS[4], PART_COLORS[8]} & colours(2)
    assert all(_saturated(column(0)[r * 128 : (r + 1) * 128]).sum() > 10 for r in range(3))  # annotated skeletons
    text = rgb[CAPTION_PX:, 3 * 128:]
    assert all((text[r * 128 : (r + 1) * 128] < 100).all(axis=-1).sum() > 50 for r in range(3))  # words in each row
    reasons = _rejection_text(gate, 0, 4, gate.moved_away(0))
    assert reasons.startswith(f"frame #4: quality {gate.raw_quality_mm[0]:.1f} mm raw,")
    # The tips' parts vanished: named as removed, not as joints whose barycenters moved.
    assert "thumb distal" in reasons and "index distal" in reasons and "thumb tip +" not in reasons


def test_sample_frames_is_seeded_and_distinct():
    first = sample_frames(100, 24, seed=3)
    assert len(set(first)) == 24 and np.all(np.diff(first) > 0)
    assert np.array_equal(first, sample_frames(100, 24, seed=3))
    assert not np.array_equal(first, sample_frames(100, 24, seed=4))
    assert np.array_equal(sample_frames(5, 24), np.arange(5))


def test_bad_inputs_raise_user_errors(frames, tmp_path):
    data, _ = frames
    depth, gt = data["depth_mm"][:2], data["labels"][:2]
    with pytest.raises(UserError, match="restored label maps: expected shape"):
        plot_segmentation_examples(tmp_path / "a.png", depth, synthetic_only=gt, restored=gt[:1],
                                   fine_tuned=gt, ground_truth=gt)
    with pytest.raises(UserError, match="part ids 0..20"):
        plot_segmentation_examples(tmp_path / "a.png", depth, synthetic_only=gt + 30, restored=gt,
                                   fine_tuned=gt, ground_truth=gt)
    with pytest.raises(UserError, match=r"predicted joints: expected shape \(2, 14, 3\)"):
        plot_pose_montage(tmp_path / "b.png", depth, data["joints_uvd"][:3], data["center_uvd"][:2])
    with pytest.raises(UserError, match="depth crops"):
        plot_pose_montage(tmp_path / "b.png", depth[0], data["joints_uvd"][:1], data["center_uvd"][:1])
    assert not any(tmp_path.iterdir())


def test_not_hand_is_grey_apart_from_no_depth_and_the_parts(frames, tmp_path):
    labels = np.array([[0, 0, 1, 20]], np.uint8)
    rgb = labels_rgb(labels, np.array([[0.0, 500.0, 500.0, 500.0]]))
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == NOT_HAND_RGB.tolist()
    assert rgb[0, 2].tolist() == list(PART_COLORS[1]) and rgb[0, 3].tolist() == list(PART_COLORS[20])
    assert tuple(NOT_HAND_RGB) not in PART_COLORS
    # Fig. 5 draws the arm (label 0 with depth) of the real frames in that grey.
    data, _ = frames
    arm = (data["labels"][:3] == 0) & (data["depth_mm"][:3] > 0)
    assert arm.any()
    out = plot_segmentation_examples(tmp_path / "fig5.png", data["depth_mm"][:3], synthetic_only=None, restored=None,
                                     fine_tuned=None, ground_truth=data["labels"][:3], panel_px=64)
    ground_truth = _rgb(out)[CAPTION_PX:, 4 * 64:]
    assert np.all(ground_truth == NOT_HAND_RGB, axis=-1).sum() > 10
