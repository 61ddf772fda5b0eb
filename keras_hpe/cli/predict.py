"""`keras-hpe predict`: joints and part maps for full-size depth images (NYU PNG or .npy).

Each image is read (NYU PNG: depth mm = (G << 8) | B; or an (480, 640) .npy in mm),
its hand centre found as the centre of mass of the depth (`crop.center_of_mass_uvd`)
unless given, cropped (`crop.crop_depth`) and run through the `HandPoseEstimator`.
OUT gets `joints.json`, `joints.csv` (one row per file and joint) and
`overlays/<name>.png` (the depth with the predicted skeleton, and the part map).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_hpe.outputs import atomic_path, check_output_folder, folder_lock, output_folder, write_text
from keras_hpe.data.camera import (
    MAX_HAND_DEPTH_MM,
    MAX_IMAGE_DEPTH_MM,
    MIN_HAND_DEPTH_MM,
    NYU_CAMERA,
    Camera,
)
from keras_hpe.data.crop import CUBE_MM, center_of_mass_uvd, crop_depth, crop_window, uvd_to_crop
from keras_hpe.data.show import draw_skeleton, labels_rgb
from keras_hpe.data.skeleton import JOINT_NAMES
from keras_hpe.errors import UserError

if TYPE_CHECKING:
    from keras_hpe.pipeline import EstimatorInfo, HandPoseEstimator

IMAGE_SUFFIXES = (".png", ".npy")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `predict` sub-command."""
    parser = subparsers.add_parser(
        "predict",
        help="estimate hand joints on depth images (NYU PNG or .npy), write joints and overlays",
        description=(
            "Run segmentation + regression on full-size depth images (640x480 NYU PNG, depth = (G<<8)|B, "
            "or .npy (480, 640) in mm). The hand centre is the depth's centre of mass unless --centers gives it. "
            "Writes OUT/joints.json, OUT/joints.csv (14 joints per file, xyz mm and uvd) and "
            "OUT/overlays/<name>.png. The crop size comes from the models."
        ),
    )
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="depth images, .png (NYU) or .npy (mm)")
    parser.add_argument(
        "--reg", type=Path, required=True,
        help="regression model (.keras) of any variant: direct, cascade (reg_cascade.keras: its second model and "
        "cube come from the .json beside it), semi or full",
    )
    parser.add_argument(
        "--seg", type=Path, default=None,
        help="segmentation model (.keras) (default: the one named in the .json beside --reg; none for a "
        "direct-regression model)",
    )
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)")
    parser.add_argument(
        "--centers", type=Path, default=None,
        help="crop centres instead of the centre of mass: CSV with columns file,u,v,d or JSON "
        "{file: [u, v, d]}; file is the name or the path as given (default: centre of mass)",
    )
    parser.add_argument(
        "--cube-mm", type=float, default=CUBE_MM,
        help=f"side of the crop cube the models were trained with, mm (default: {CUBE_MM:g})",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per network call (default: 32)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keras_hpe.pipeline import load_estimator

    check_output_folder(args.out, "--out")
    centers = read_centers(args.centers) if args.centers is not None else None
    estimator = load_estimator(args.reg, args.seg, cube_mm=args.cube_mm)
    frames = predict_images(estimator, args.inputs, args.out, centers, args.batch_size)
    print(f"{len(frames)} image(s): joints in {args.out / 'joints.json'} and {args.out / 'joints.csv'}, "
          f"overlays in {args.out / 'overlays'}")
    return 0


def read_depth_image(path: Path, camera: Camera = NYU_CAMERA) -> np.ndarray:
    """Read a full-size depth image (camera.height, camera.width) float32 mm, checking its values."""
    from keras_hpe.data.nyu import read_depth_png

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: unsupported depth image type {path.suffix!r}; expected {' or '.join(IMAGE_SUFFIXES)}")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if suffix == ".png":
        return read_depth_png(path)
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as error:
        raise UserError(f"{path}: cannot read .npy (empty, truncated or damaged): {str(error).splitlines()[0]}") from None
    if not isinstance(depth, np.ndarray):  # an .npz archive
        depth.close()
        raise UserError(f"{path}: expected a .npy array of depth in mm, got an .npz archive")
    expected = (camera.height, camera.width)
    numeric = np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)
    if depth.shape != expected or not numeric:
        raise UserError(f"{path}: expected a {expected} array of depth in mm, got {depth.dtype} {depth.shape}")
    # Checked before the cast to float32, which would turn a huge value into inf.
    if not np.all(np.isfinite(depth)):
        raise UserError(f"{path}: depth has NaN or infinite values (expected mm >= 0, 0 = no data)")
    if np.any(depth < 0):
        raise UserError(f"{path}: depth has negative values (expected mm >= 0, 0 = no data)")
    if np.any(depth > MAX_IMAGE_DEPTH_MM):
        raise UserError(
            f"{path}: depth values up to {depth.max():.6g}, above {MAX_IMAGE_DEPTH_MM:.0f} mm, the 16-bit limit of "
            "every depth camera: expected depth in mm"
        )
    return depth.astype(np.float32)


def read_centers(path: Path) -> dict[str, np.ndarray]:
    """Read crop centres: CSV (columns file,u,v,d) or JSON {file: [u, v, d]} -> {file: (3,) uvd}."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"centres file {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("expected an object {file: [u, v, d]}")
            names, values = list(raw), [raw[name] for name in raw]
        else:
            table = pd.read_csv(path)
            missing = {"file", "u", "v", "d"} - set(table.columns)
            if missing:
                raise ValueError(f"missing column(s) {sorted(missing)}; expected file,u,v,d")
            names, values = table["file"].astype(str).tolist(), table[["u", "v", "d"]].to_numpy()
        centers = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError, pd.errors.ParserError) as error:
        raise UserError(f"centres file {path}: {str(error).splitlines()[0]}") from None
    if centers.shape != (len(names), 3) or not np.all(np.isfinite(centers)):
        raise UserError(f"centres file {path}: each centre must be 3 finite numbers u, v, d (d in mm)")
    for name, centre in zip(names, centers):
        _check_hand_depth(centre[2], f"centres file {path}: the centre of {name!r}")
    return dict(zip(names, centers))


def _check_hand_depth(depth_mm: float, what: str) -> None:
    if not MIN_HAND_DEPTH_MM <= depth_mm <= MAX_HAND_DEPTH_MM:
        raise UserError(
            f"{what} is {depth_mm:.6g} mm deep, outside any depth camera's range "
            f"({MIN_HAND_DEPTH_MM:g} mm to {MAX_HAND_DEPTH_MM / 1000:g} m)"
        )


def predict_images(
    estimator: HandPoseEstimator,
    paths: list[Path],
    out: Path,
    centers: dict[str, np.ndarray] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> list[dict]:
    """Estimate joints on depth images; write OUT/joints.json, joints.csv, overlays/; return the frames' records.

    Every input is read and checked (its depth, its centre, some depth in the
    cube) before anything is written, so a bad input leaves OUT as it was.
    """
    from tqdm import tqdm

    paths = [Path(p) for p in paths]
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    stems = [p.stem for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise UserError(f"inputs share the file name(s) {duplicates}: their overlays would collide")
    out = check_output_folder(out, "--out")
    info = estimator.info
    # A transient bar (leave=False): if an input is bad, its error is the one line left on the terminal.
    with tqdm(paths, desc="check inputs", unit="image", leave=False, disable=not progress) as bar:
        sources = [_checked_centre(path, centers, info) for path in bar]
    frames: list[dict] = []
    with output_folder(out, "--out"), folder_lock(out, "prediction folder"), \
            tqdm(total=len(paths), desc="predict", unit="image", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            # Read again rather than kept from the check: holding every full image would grow with the inputs.
            images = [read_depth_image(path, info.camera) for path in batch]
            centres = [centre for centre, _ in sources[start : start + batch_size]]
            crops = [crop_depth(image, centre, info.size, info.cube_mm, info.camera)
                     for image, centre in zip(images, centres)]
            result = estimator.predict(np.stack(crops), np.stack(centres).astype(np.float32))
            for k, path in enumerate(batch):
                overlay = out / "overlays" / f"{path.stem}.png"
                parts = result["parts"][k] if "parts" in result else None
                draw_overlay(overlay, images[k], crops[k], parts, result["joints_uvd"][k], centres[k], info)
                frames.append({
                    "file": str(path),
                    "center_uvd": centres[k].tolist(),
                    "center_source": sources[start + k][1],
                    "joints_xyz_mm": result["joints_xyz"][k].astype(float).round(3).tolist(),
                    "joints_uvd": result["joints_uvd"][k].astype(float).round(3).tolist(),
                    "overlay": str(overlay.relative_to(out)),
                })
                bar.update()
        _write_joints(out, frames, info)
    return frames


def _checked_centre(path: Path, centers: dict[str, np.ndarray] | None, info: EstimatorInfo) -> tuple[np.ndarray, str]:
    """Read `path` and check it can be predicted: its crop centre and where it came from (UserError if not)."""
    depth = read_depth_image(path, info.camera)
    centre, source = _centre_of(path, depth, centers, info)
    if not np.any(crop_depth(depth, centre, info.size, info.cube_mm, info.camera) > 0):
        raise UserError(
            f"{path}: no depth inside the {info.cube_mm:g} mm cube around the centre {centre.round(1).tolist()}"
        )
    return centre, source


def draw_overlay(
    path: Path,
    depth_mm: np.ndarray,
    crop_mm: np.ndarray,
    parts: np.ndarray | None,
    joints_uvd: np.ndarray,
    center_uvd: np.ndarray,
    info: EstimatorInfo,
) -> Path:
    """Picture of one prediction: the depth around the hand with the skeleton, and the crop's parts (or depth)."""
    import matplotlib
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), layout="constrained")
    image_ax, crop_ax = figure.subplots(1, 2)
    depth_cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="black")  # near is bright, no data black
    # Grey levels span the cube's depth range, so the hand's relief shows, not the room's.
    near, far = center_uvd[2] - 0.5 * info.cube_mm, center_uvd[2] + 0.5 * info.cube_mm
    image_ax.imshow(np.ma.masked_equal(depth_mm, 0), cmap=depth_cmap, vmin=near, vmax=far, interpolation="nearest")
    draw_skeleton(image_ax, joints_uvd)
    # Zoom on the hand: the crop window with a margin of half its size.
    u0, v0, u1, v1 = crop_window(center_uvd, 1.5 * info.cube_mm, info.camera)
    image_ax.set_xlim(u0, u1)
    image_ax.set_ylim(v1, v0)
    image_ax.set_title(Path(path).stem, fontsize=9)
    if parts is not None:
        crop_ax.imshow(labels_rgb(parts, crop_mm), interpolation="nearest")
        crop_ax.set_title("predicted parts", fontsize=9)
    else:
        crop_ax.imshow(np.ma.masked_equal(crop_mm, 0), cmap=depth_cmap, vmin=near, vmax=far, interpolation="nearest")
        crop_ax.set_title("crop", fontsize=9)
    draw_skeleton(crop_ax, uvd_to_crop(joints_uvd, center_uvd, info.size, info.cube_mm, info.camera))
    crop_ax.set_xlim(-0.5, info.size - 0.5)
    crop_ax.set_ylim(info.size - 0.5, -0.5)
    for ax in (image_ax, crop_ax):
        ax.set_axis_off()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    return Path(path)


def _centre_of(
    path: Path, depth_mm: np.ndarray, centers: dict[str, np.ndarray] | None, info: EstimatorInfo
) -> tuple[np.ndarray, str]:
    if centers is not None:
        for key in (str(path), path.name):
            if key in centers:
                return centers[key], "given"
        raise UserError(f"{path}: no centre for this file in the centres file (keys are file names or paths)")
    if not np.any(depth_mm > 0):
        raise UserError(f"{path}: empty depth image (no pixel > 0 mm)")
    centre = center_of_mass_uvd(depth_mm, info.camera, cube_mm=info.cube_mm)
    _check_hand_depth(centre[2], f"{path}: the hand centre (the depth's centre of mass)")
    return centre, "center_of_mass"


def _write_joints(out: Path, frames: list[dict], info: EstimatorInfo) -> None:
    import pandas as pd

    summary = {
        "joint_names": list(JOINT_NAMES),
        "units": {"joints_xyz_mm": "camera frame, mm, y up", "joints_uvd": "pixel u, pixel v, depth mm"},
        "crop_size": info.size,
        "cube_mm": info.cube_mm,
        "segmentation_model": info.segmentation_model,
        "regression_model": info.regression_model,
        "cascade": info.cascade,
        "frames": frames,
    }
    write_text(out / "joints.json", json.dumps(summary, indent=1) + "\n")
    xyz = np.asarray([f["joints_xyz_mm"] for f in frames]).reshape(-1, 3)
    uvd = np.asarray([f["joints_uvd"] for f in frames]).reshape(-1, 3)
    table = pd.DataFrame({
        "file": np.repeat([f["file"] for f in frames], len(JOINT_NAMES)),
        "joint": np.tile(JOINT_NAMES, len(frames)),
        "x_mm": xyz[:, 0], "y_mm": xyz[:, 1], "z_mm": xyz[:, 2],
        "u_px": uvd[:, 0], "v_px": uvd[:, 1], "d_mm": uvd[:, 2],
    })
    write_text(out / "joints.csv", table.to_csv(index=False))
