"""Hand joints for a stream of full-size depth frames: the batch job behind `keras-hpe predict`.

Frames are NYU PNGs (depth mm = (G << 8) | B) or (480, 640) .npy arrays in mm,
named by files, folders (every *.png and *.npy directly inside, sorted by
name) and list files (one file or folder a line, `read_frame_list`). Each
batch of frames is read, cropped around its hand centre (the depth's centre
of mass, `crop.center_of_mass_uvd`, unless a centres file gives it), run
through the `HandPoseEstimator` and written before the next is read, so
memory does not grow with the number of frames. OUT gets, a line per frame
in input order:

- `joints.txt`: the community's NYU text format, 14 joints x `u v d` (pixels,
  mm), as published predictions are shared and `keras-hpe evaluate-joints`
  reads them; a skipped frame's line is 42 `nan`, so line i is frame i;
- `frames.jsonl`: a JSON object a line: the file, its crop centre and where
  that came from, the joints in xyz mm and uvd, its overlay (or null); for a
  skipped frame, the file and the error;

and `overlays/<line>_<name>.png` (the depth with the skeleton, and the part
map) for a few frames spread evenly over the run.

A frame that cannot be read or shows no hand is recorded and skipped: a
damaged frame among 10,000 does not cost the others. What the command line
gets wrong (a missing file, a folder without frames, a frame without a given
centre) is refused before any work.

After each batch, its lines are appended and `state.json` (written
atomically) records the frames done and the files' lengths. Run again after a
kill, the same command cuts the files back to the last recorded batch and
goes on from there, ending with the files of an uninterrupted run; other
frames, models, centres or overlays into the same folder are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

import keras_hpe
from keras_hpe.data.camera import (
    MAX_HAND_DEPTH_MM,
    MAX_IMAGE_DEPTH_MM,
    MIN_HAND_DEPTH_MM,
    NYU_CAMERA,
    Camera,
)
from keras_hpe.data.crop import center_of_mass_uvd, crop_depth, crop_window, uvd_to_crop
from keras_hpe.data.show import draw_skeleton, labels_rgb
from keras_hpe.data.skeleton import NUM_JOINTS
from keras_hpe.errors import UserError
from keras_hpe.faults import crash_point
from keras_hpe.outputs import (
    atomic_path,
    check_output_folder,
    folder_lock,
    output_folder,
    remove_temporaries,
    write_text,
)

if TYPE_CHECKING:
    from keras_hpe.pipeline import EstimatorInfo, HandPoseEstimator

FRAME_SUFFIXES = (".png", ".npy")
JOINTS_NAME = "joints.txt"
FRAMES_NAME = "frames.jsonl"
STATE_NAME = "state.json"
OVERLAY_DIR = "overlays"
STATE_FORMAT = "keras_hpe.predict/1"
DEFAULT_BATCH = 64
DEFAULT_OVERLAYS = 20


@dataclass(frozen=True)
class PredictionRun:
    """What a finished prediction run wrote to `out`: frames in all, skipped (the first one's error), overlays."""

    out: Path
    frames: int
    skipped: int
    first_skipped: str | None
    overlays: int


def list_frames(inputs: Sequence[Path], lists: Sequence[Path] = ()) -> list[Path]:
    """The depth frames that `inputs` (files, folders), then the `lists` name, in order; UserError if one is wrong."""
    named = [(Path(path), "") for path in inputs]
    named += [entry for path in lists for entry in read_frame_list(path)]
    frames = [frame for path, where in named for frame in _frames_of(path, where)]
    if not frames:
        raise UserError("no depth frames given: name files or folders, or a --list FILE")
    return frames


def read_frame_list(path: Path) -> list[tuple[Path, str]]:
    """A list file's entries (one file or folder a line; blank lines and `#` comments skipped), each with
    the place it was read ("LIST line N: ") for errors. Relative entries are relative to the list's folder,
    so a list means the same frames from wherever the command runs."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"frame list {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read frame list {path}: {error}") from None
    entries = [(path.parent / line.strip(), f"{path} line {number}: ")
               for number, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise UserError(f"frame list {path} names no frames")
    return entries


def _frames_of(path: Path, where: str) -> list[Path]:
    if path.is_dir():
        # Not hidden files: an interrupted copy's or atomic_path's temporaries.
        frames = sorted(p for p in path.iterdir()
                        if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file())
        if not frames:
            raise UserError(f"{where}folder {path} holds no depth frames ({', '.join(FRAME_SUFFIXES)})")
        return frames
    _check_frame_path(path, where)
    return [path]


def _check_frame_path(path: Path, where: str = "") -> None:
    """UserError unless `path` is a file of a depth frame type; `where` ("LIST line N: ") starts the message."""
    if path.suffix.lower() not in FRAME_SUFFIXES:
        raise UserError(
            f"{where}{path}: unsupported depth image type {path.suffix!r}; expected {' or '.join(FRAME_SUFFIXES)}"
        )
    if not path.is_file():
        raise UserError(f"{where}{path}: no such file")


def read_depth_image(path: Path, camera: Camera = NYU_CAMERA) -> np.ndarray:
    """Read a full-size depth image (camera.height, camera.width) float32 mm, checking its values."""
    from keras_hpe.data.nyu import read_depth_png

    path = Path(path)
    _check_frame_path(path)
    if path.suffix.lower() == ".png":
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


def _given_centre(path: Path, centers: dict[str, np.ndarray]) -> np.ndarray:
    """The centre the centres file gives `path`, by its path as named or by its file name (UserError if none)."""
    for key in (str(path), path.name):
        if key in centers:
            return centers[key]
    raise UserError(f"{path}: no centre for this file in the centres file (keys are file names or paths)")


def read_frame(
    path: Path, centers: dict[str, np.ndarray] | None, info: EstimatorInfo
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Read one frame for the estimator: (depth_mm, crop_mm, center_uvd, where the centre came from); UserError
    if it cannot be read or has no depth in the cube around its centre."""
    depth = read_depth_image(path, info.camera)
    if centers is not None:
        centre, source = _given_centre(path, centers), "given"
    elif not np.any(depth > 0):
        raise UserError(f"{path}: empty depth image (no pixel > 0 mm)")
    else:
        centre, source = center_of_mass_uvd(depth, info.camera, cube_mm=info.cube_mm), "center_of_mass"
        _check_hand_depth(centre[2], f"{path}: the hand centre (the depth's centre of mass)")
    crop = crop_depth(depth, centre, info.size, info.cube_mm, info.camera)
    if not np.any(crop > 0):
        raise UserError(
            f"{path}: no depth inside the {info.cube_mm:g} mm cube around the centre {centre.round(1).tolist()}"
        )
    return depth, crop, centre, source


def check_settings(batch: int, overlays: int | None) -> None:
    """UserError unless `batch` >= 1 and `overlays` (None = every frame) >= 0."""
    if batch < 1:
        raise UserError(f"--batch must be >= 1, got {batch}")
    if overlays is not None and overlays < 0:
        raise UserError(f"--overlays must be >= 0 or 'all', got {overlays}")


def predict_frames(
    estimator: HandPoseEstimator,
    frames: Sequence[Path],
    out: Path,
    *,
    centers: dict[str, np.ndarray] | None = None,
    batch: int = DEFAULT_BATCH,
    overlays: int | None = DEFAULT_OVERLAYS,
    progress: bool = True,
) -> PredictionRun:
    """Estimate joints on `frames`, batch by batch, into `out` (see the module docstring); resume an interrupted run.

    `overlays` frames spread evenly over the run get an overlay picture (None: every frame). `batch` is
    left out of the run's identity: a run resumed with another batch size goes on, with joints equal to
    float32 rounding (the same batch size gives the same bytes).
    """
    from tqdm import tqdm

    check_settings(batch, overlays)
    frames = [Path(path) for path in frames]
    if not frames:
        raise UserError("no depth frames to predict")
    out = check_output_folder(out, "--out")
    if centers is not None:
        for path in frames:  # a frame without its centre is the command line's mistake: refused before any work
            _given_centre(path, centers)
    identity = _identity(estimator, frames, centers, overlays)
    drawn = _overlay_frames(len(frames), overlays)
    with output_folder(out, "--out"), folder_lock(out, "prediction folder"):
        state = _resume(out, identity)
        remove_temporaries(out / OVERLAY_DIR)
        # A transient bar (leave=False): the summary or the error is what stays on the terminal.
        with open(out / JOINTS_NAME, "ab") as joints, open(out / FRAMES_NAME, "ab") as records, \
                tqdm(total=len(frames), initial=state["frames_done"], desc="predict", unit="frame", leave=False,
                     disable=not progress) as bar:
            for frame_batch in _read_ahead(frames, state["frames_done"], batch, centers, drawn, estimator.info):
                start = frame_batch.first
                chunk = _estimate_batch(estimator, frame_batch, drawn, out)
                joints.write("".join(_joints_line(record) for record in chunk).encode())
                records.write("".join(json.dumps(record) + "\n" for record in chunk).encode())
                # Flushed before the state counts them: a kill now loses nothing the state records.
                joints.flush()
                records.flush()
                crash_point("predict.batch", out)
                errors = [record["error"] for record in chunk if "error" in record]
                state["first_skipped"] = state["first_skipped"] or (errors[0] if errors else None)
                state["skipped"] += len(errors)
                state["overlays"] += sum(record.get("overlay") is not None for record in chunk)
                state["frames_done"] = start + len(chunk)
                state["bytes"] = {JOINTS_NAME: joints.tell(), FRAMES_NAME: records.tell()}
                write_text(out / STATE_NAME, json.dumps(state, indent=1) + "\n")
                bar.update(len(chunk))
                if state["skipped"]:
                    bar.set_postfix(skipped=state["skipped"])
    return PredictionRun(out, len(frames), state["skipped"], state["first_skipped"], state["overlays"])


@dataclass
class FrameBatch:
    """A batch of frames as read: their `frames.jsonl` records so far, and per readable frame (by its index in
    the batch) the full image (kept only for an overlay), the crop, the centre and where it came from."""

    paths: list[Path]
    first: int
    records: list[dict]
    read: dict[int, tuple[np.ndarray | None, np.ndarray, np.ndarray, str]]


def _read_ahead(
    frames: list[Path], start: int, batch: int, centers: dict[str, np.ndarray] | None, drawn: set[int],
    info: EstimatorInfo,
) -> Iterator[FrameBatch]:
    """The batches of `frames` from `start` on, each read (PNG, centre of mass, crop) by a thread of its own while
    the caller estimates and writes the one before."""
    with ThreadPoolExecutor(max_workers=1) as reader:
        reads = (reader.submit(_read_batch, frames[first : first + batch], first, centers, drawn, info)
                 for first in range(start, len(frames), batch))
        upcoming = next(reads, None)
        while upcoming is not None:
            current, upcoming = upcoming, next(reads, None)
            yield current.result()


def _read_batch(
    paths: list[Path], first: int, centers: dict[str, np.ndarray] | None, drawn: set[int], info: EstimatorInfo
) -> FrameBatch:
    """Read frames `first`, `first` + 1, ...: a frame that cannot be read gets its error in its record."""
    records: list[dict] = [{"file": str(path)} for path in paths]
    read = {}
    for k, path in enumerate(paths):
        try:
            depth, crop, centre, source = read_frame(path, centers, info)
        except UserError as error:
            records[k]["error"] = str(error)
            continue
        # The full image is kept only for an overlay: the batch holds crops.
        read[k] = (depth if first + k in drawn else None, crop, centre, source)
    return FrameBatch(paths, first, records, read)


def _estimate_batch(estimator: HandPoseEstimator, frames: FrameBatch, drawn: set[int], out: Path) -> list[dict]:
    """The `frames.jsonl` records of a batch read by `_read_batch`: estimate, draw the overlays asked."""
    info = estimator.info
    records, read = frames.records, frames.read
    if not read:
        return records
    crops = np.stack([crop for _, crop, _, _ in read.values()])
    centres = np.stack([centre for _, _, centre, _ in read.values()])
    result = estimator.predict(crops, centres.astype(np.float32), batch_size=len(crops))
    for j, (k, (depth, crop, centre, source)) in enumerate(read.items()):
        overlay = None
        if depth is not None:
            overlay = f"{OVERLAY_DIR}/{frames.first + k + 1:06d}_{frames.paths[k].stem}.png"
            parts = result["parts"][j] if "parts" in result else None
            draw_overlay(out / overlay, depth, crop, parts, result["joints_uvd"][j], centre, info)
        records[k].update({
            "center_uvd": centre.tolist(),
            "center_source": source,
            "joints_xyz_mm": result["joints_xyz"][j].astype(float).round(3).tolist(),
            "joints_uvd": result["joints_uvd"][j].astype(float).round(3).tolist(),
            "overlay": overlay,
        })
    return records


def _joints_line(record: dict) -> str:
    """A frame's line of `joints.txt`: u v d of the 14 joints, or 42 nan for a skipped frame."""
    values = np.ravel(record["joints_uvd"]) if "joints_uvd" in record else np.full(NUM_JOINTS * 3, np.nan)
    return " ".join(f"{value:.3f}" for value in values) + "\n"


def _overlay_frames(frames: int, overlays: int | None) -> set[int]:
    """Indices of the frames that get an overlay: `overlays` of them spread evenly, the first among them."""
    count = frames if overlays is None else min(overlays, frames)
    return {k * frames // count for k in range(count)}


def _identity(
    estimator: HandPoseEstimator, frames: list[Path], centers: dict[str, np.ndarray] | None, overlays: int | None
) -> dict:
    """What the run's results depend on, as `state.json` records it: a resumed run must have the same."""
    # A frame by its absolute path, size and modification time: a frame rewritten in place is another input.
    stats = ((os.path.abspath(path), path.stat()) for path in frames)
    weights = (array.tobytes() for network in estimator.networks for array in network.get_weights())
    identity = {
        "frames": {"count": len(frames),
                   "sha256": _sha256(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode() for name, st in stats)},
        # The weights rather than the .keras files: an archive records when it was saved.
        "models": {"estimator": dataclasses.asdict(estimator.info), "weights_sha256": _sha256(weights)},
        "centers": None if centers is None else _sha256(
            f"{name}\t{centre.tolist()}\n".encode() for name, centre in sorted(centers.items())),
        "overlays": "all" if overlays is None else overlays,
        "version": keras_hpe.__version__,
    }
    return json.loads(json.dumps(identity))  # as it reads back from state.json


def _sha256(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _resume(out: Path, identity: dict) -> dict:
    """The state to go on from: a new one, or `out`'s if it holds this run (its files cut back to the state)."""
    state_path = out / STATE_NAME
    start_over = f"choose another --out, or delete {out} to start over"
    if not state_path.is_file():
        for name in (JOINTS_NAME, FRAMES_NAME):
            if (out / name).exists():
                raise UserError(
                    f"{out / name} exists but {out} holds no {STATE_NAME}: not a predict run's; {start_over}"
                )
        state = {"format": STATE_FORMAT, "identity": identity, "frames_done": 0, "skipped": 0, "first_skipped": None,
                 "overlays": 0, "bytes": {JOINTS_NAME: 0, FRAMES_NAME: 0}}
        # Written before the files it counts: files without a state are never this command's.
        write_text(state_path, json.dumps(state, indent=1) + "\n")
        return state
    try:
        state = json.loads(state_path.read_text())
        if state["format"] != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT} state")
        saved, lengths = state["identity"], state["bytes"]
        counts = [state[key] for key in ("frames_done", "skipped", "overlays")]
        if not isinstance(saved, dict) or sorted(lengths) != sorted((JOINTS_NAME, FRAMES_NAME)) or not all(
                isinstance(n, int) and n >= 0 for n in [*counts, *lengths.values()]):
            raise ValueError("its identity, counts or file lengths are damaged")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"cannot resume from {state_path}: {error}; {start_over}") from None
    if saved != identity:
        different = sorted(key for key in identity if saved.get(key) != identity[key])
        raise UserError(
            f"{out} holds the predictions of another run (different: {', '.join(different)}; see {state_path}); "
            f"rerun with its frames, models, centres and --overlays to resume it, or {start_over}"
        )
    for name, length in lengths.items():
        size = (out / name).stat().st_size if (out / name).exists() else 0
        if size < length:
            raise UserError(f"cannot resume: {out / name} is shorter than {state_path} records; {start_over}")
        if size > length:  # lines of a batch killed before its state was written: it is done again
            os.truncate(out / name, length)
    return state


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
