"""Data sets on disk: `.npz` shards plus a `manifest.json`, read by NumPy or tf.data.

A data set is a folder with `shard-00000.npz`, `shard-00001.npz`, ... and a
`manifest.json` (see docs/architecture.md, "Data set on disk"). Shards are
written atomically and the manifest last, so a folder without `manifest.json`
is an unfinished data set. While it is being written, the folder holds
`pending.json` with the generation parameters, so a run with other parameters
cannot silently mix its shards with the old ones, and the same run resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping

import numpy as np

import keras_hpe
from keras_hpe.checks import is_finite, is_int, require, shown
from keras_hpe.outputs import LOCK_NAME, atomic_path, folder_lock, write_text
from keras_hpe.data.camera import NYU_CAMERA, Camera
from keras_hpe.data.crop import CUBE_MM
from keras_hpe.data.skeleton import NUM_JOINTS, NUM_LABELS
from keras_hpe.errors import UserError
from keras_hpe.faults import crash_point

if TYPE_CHECKING:
    from keras_hpe.beam import BeamRunner

FORMAT = "keras_hpe.dataset/1"
FIELDS = ("depth_mm", "labels", "joints_uvd", "joints_xyz", "center_uvd")
FIELD_DTYPES = {
    "depth_mm": np.dtype(np.float32),
    "labels": np.dtype(np.uint8),
    "joints_uvd": np.dtype(np.float32),
    "joints_xyz": np.dtype(np.float32),
    "center_uvd": np.dtype(np.float32),
}
DOMAINS = ("synth", "sensor", "nyu")
MANIFEST_NAME = "manifest.json"
PENDING_NAME = "pending.json"


def field_shape(name: str, size: int) -> tuple[int, ...]:
    """Per-frame shape of field `name` for crops of `size` x `size`."""
    shapes = {
        "depth_mm": (size, size),
        "labels": (size, size),
        "joints_uvd": (NUM_JOINTS, 3),
        "joints_xyz": (NUM_JOINTS, 3),
        "center_uvd": (3,),
    }
    if name not in shapes:
        raise UserError(f"unknown data set field {name!r}; known: {', '.join(FIELDS)}")
    return shapes[name]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def check_shard_arrays(
    arrays: Mapping[str, np.ndarray],
    size: int,
    *,
    where: str,
    count: int | None = None,
    error: type[Exception] = UserError,
) -> int:
    """Check a shard's arrays {field: frames first} for crops of `size`; return its frame count.

    The one definition of a valid shard: `DatasetWriter.write_shard` refuses
    to write what the readers refuse to read. `count` is the frame count
    expected (the manifest's); `where` starts the message; `error` is its type.
    """
    lengths = [array.shape[0] if array.ndim else 0 for array in arrays.values()]
    frames = lengths[0] if lengths else 0
    if count is not None and frames != count:
        raise error(f"{where} holds {frames} frames, its manifest says {count}")
    for name, array in arrays.items():
        expected = (frames,) + field_shape(name, size)
        if array.shape != expected or array.dtype != FIELD_DTYPES[name]:
            raise error(
                f"{where}: field {name!r} is {array.dtype}{array.shape}, expected {FIELD_DTYPES[name]}{expected}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise error(f"{where}: field {name!r} has NaN or infinite values")
    if arrays and not frames:
        raise error(f"{where} is empty")
    if "depth_mm" in arrays and np.any(arrays["depth_mm"] < 0):
        raise error(f"{where}: depth_mm has negative values")
    if "labels" in arrays and np.any(arrays["labels"] >= NUM_LABELS):
        raise error(f"{where}: labels must be part ids 0..{NUM_LABELS - 1}")
    return frames


@dataclass
class Manifest:
    """What a data set folder holds: enough for a later stage to check its input."""

    format: str
    domain: str
    count: int
    size: int
    cube_mm: float
    seed: int
    camera: dict
    fields: list[str]
    version: str
    shards: list[dict] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = MANIFEST_NAME) -> "Manifest":
        """Check every value of a manifest (UserError naming `source` and the key) and build it."""
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise UserError(f"{source}: unknown format {shown(found)}, expected {FORMAT!r}")
        names = set(cls.__dataclass_fields__)
        missing = names - set(values)
        if missing:
            raise UserError(f"{source} lacks the key(s) {', '.join(sorted(missing))}")
        require(values["domain"] in DOMAINS, source, "domain", f"one of {', '.join(DOMAINS)}", values["domain"])
        for key in ("count", "size"):
            require(is_int(values[key]) and values[key] >= 1, source, key, "an integer >= 1", values[key])
        cube_mm = values["cube_mm"]
        require(is_finite(cube_mm) and cube_mm > 0, source, "cube_mm", "a number > 0 (mm)", cube_mm)
        require(is_int(values["seed"]), source, "seed", "an integer", values["seed"])
        require(isinstance(values["version"], str), source, "version", "a string", values["version"])
        require(isinstance(values["params"], dict), source, "params", "an object", values["params"])
        _check_camera(values["camera"], source)
        _check_field_names(values["fields"], source)
        _check_shard_list(values["shards"], values["count"], source)
        return cls(**{name: values[name] for name in names})

    @property
    def camera_model(self) -> Camera:
        return Camera.from_dict(self.camera)


class DatasetWriter:
    """Write a data set folder shard by shard, atomically, resumable; use it as a context manager.

    Entering locks the folder (`outputs.folder_lock`: a second writer of the
    same folder gets a `UserError` at once, and temporaries of a killed
    writer are removed) and claims it: a folder left by an interrupted run
    with the same parameters resumes (`has_shard` tells which shards are
    done); a folder holding anything else raises `UserError`.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        domain: str,
        size: int,
        seed: int,
        fields: Iterable[str],
        cube_mm: float = CUBE_MM,
        camera: Camera = NYU_CAMERA,
        params: dict | None = None,
    ) -> None:
        self.out = Path(out)
        self.fields = list(fields)
        if domain not in DOMAINS:
            raise UserError(f"unknown data set domain {domain!r}; known: {', '.join(DOMAINS)}")
        for name in self.fields:
            field_shape(name, 1)
        if "depth_mm" not in self.fields:
            raise UserError("a data set needs the field 'depth_mm'")
        if len(set(self.fields)) != len(self.fields):
            raise UserError(f"repeated data set fields: {self.fields}")
        if int(size) <= 0:
            raise UserError(f"crop size must be > 0, got {size}")
        self.identity = _json_normal({
            "format": FORMAT, "domain": domain, "size": int(size), "cube_mm": float(cube_mm),
            "seed": int(seed), "camera": camera.to_dict(), "fields": self.fields, "params": params or {},
        })
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> "DatasetWriter":
        with contextlib.ExitStack() as stack:
            stack.enter_context(folder_lock(self.out, "data set folder"))
            self._claim_folder()
            self._exit = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        self._exit.close()

    def _claim_folder(self) -> None:
        manifest_path, pending_path = self.out / MANIFEST_NAME, self.out / PENDING_NAME
        if manifest_path.exists():
            previous = _identity_of(read_manifest(self.out).to_dict())
            source = manifest_path
        elif pending_path.exists():
            try:
                previous = json.loads(pending_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise UserError(f"{pending_path} is not valid JSON: {error}") from None
            if not isinstance(previous, dict):
                raise UserError(f"{pending_path} is not a JSON object ({type(previous).__name__}); delete {self.out}")
            source = pending_path
        elif any(path.name != LOCK_NAME for path in self.out.iterdir()):
            raise UserError(f"{self.out} is not empty and is not a data set; choose another output folder")
        else:
            write_text(pending_path, json.dumps(self.identity, indent=2))
            return
        if previous != self.identity:
            changed = sorted(k for k in self.identity if previous.get(k) != self.identity[k])
            raise UserError(
                f"{self.out} holds a data set made with other parameters (different: {', '.join(changed)}; "
                f"see {source.name}); delete it or choose another output folder"
            )

    @property
    def finished(self) -> bool:
        """True when the folder already holds the finished data set (same parameters)."""
        return (self.out / MANIFEST_NAME).exists()

    def has_shard(self, index: int) -> bool:
        return (self.out / shard_name(index)).exists()

    def write_shard(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        """Check `arrays` (one per field, all with the same frame count) and write shard `index`.

        Bad arrays raise ValueError: they come from a generator, so they are a bug.
        """
        if set(arrays) != set(self.fields):
            raise ValueError(f"shard {index}: fields {sorted(arrays)} != data set fields {sorted(self.fields)}")
        arrays = {name: np.asarray(a) for name, a in arrays.items()}
        check_shard_arrays(arrays, self.identity["size"], where=f"shard {index}", error=ValueError)
        with atomic_path(self.out / shard_name(index)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        crash_point("dataset.shard", self.out)

    def finish(self) -> Manifest:
        """Write `manifest.json` (last) for the shards 0..k-1 on disk and return it."""
        shards = []
        while self.has_shard(len(shards)):
            path = self.out / shard_name(len(shards))
            shards.append({"file": path.name, "count": _shard_count(path)})
        stray = sorted(p.name for p in self.out.glob("shard-*.npz") if p.name not in {s["file"] for s in shards})
        if not shards or stray:
            raise UserError(f"{self.out}: shards are not numbered 0..k-1 (found {stray or 'none'})")
        identity = self.identity
        manifest = Manifest(
            format=FORMAT, domain=identity["domain"], count=sum(s["count"] for s in shards),
            size=identity["size"], cube_mm=identity["cube_mm"], seed=identity["seed"],
            camera=identity["camera"], fields=identity["fields"], version=keras_hpe.__version__,
            shards=shards, params=identity["params"],
        )
        write_text(self.out / MANIFEST_NAME, json.dumps(manifest.to_dict(), indent=2) + "\n")
        (self.out / PENDING_NAME).unlink(missing_ok=True)
        return manifest


@dataclass(frozen=True)
class ShardRenderer:
    """Shard `index` of a generated data set: `make_shard(np.random.default_rng([seed, index]), counts[index])`.

    A pure function of (seed, index): rendered in this process, in spawned worker processes or in a Beam
    pipeline (`keras_hpe.beam`), a shard is the same. `make_shard` must pickle: a module-level function,
    or a `functools.partial` of one.
    """

    make_shard: Callable[[np.random.Generator, int], dict]
    seed: int
    counts: tuple[int, ...]

    def setup(self) -> None:
        """Nothing to open (`keras_hpe.beam.StagedWork` calls it once per worker)."""

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        return self.make_shard(np.random.default_rng([self.seed, index]), self.counts[index])


def generate_dataset(
    out: str | Path,
    n: int,
    *,
    make_shard: Callable[[np.random.Generator, int], dict],
    domain: str,
    size: int,
    seed: int,
    fields: Iterable[str],
    shard_size: int = 1024,
    params: dict | None = None,
    cube_mm: float = CUBE_MM,
    progress: bool = True,
    workers: int = 1,
    runner: BeamRunner | None = None,
) -> Manifest:
    """Write `n` frames made by `make_shard(rng, count)` to `out`, resuming an interrupted run.

    Shard i holds frames [i * shard_size, ...) and is made from
    `np.random.default_rng([seed, i])` (`ShardRenderer`), so the data do not
    depend on where a run was interrupted, nor on where the shards were
    rendered: in this process, in `workers` spawned processes, or on the
    Beam `runner` (`keras_hpe.beam`; its workers are its own). This process
    writes every shard. A finished data set with the same parameters is
    returned as it is.
    """
    from tqdm.auto import tqdm

    if int(n) <= 0:
        raise UserError(f"number of frames must be > 0, got {n}")
    if int(shard_size) <= 0:
        raise UserError(f"shard size must be > 0, got {shard_size}")
    if int(workers) < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    n, shard_size = int(n), int(shard_size)
    params = {**(params or {}), "n": n, "shard_size": shard_size}
    with DatasetWriter(out, domain=domain, size=size, seed=seed, fields=fields, cube_mm=cube_mm,
                       params=params) as writer:
        if writer.finished:
            return read_manifest(writer.out)
        counts = shard_counts(n, shard_size)
        missing = [index for index in range(len(counts)) if not writer.has_shard(index)]
        done = n - sum(counts[index] for index in missing)
        render = ShardRenderer(make_shard, int(seed), counts)
        with tqdm(total=n, initial=done, unit="frame", desc=f"{domain} data", disable=not progress) as bar, \
                _rendered(render, missing, int(workers), runner, writer.out) as shards:
            for index, arrays in shards:
                writer.write_shard(index, arrays)
                bar.update(counts[index])
        return writer.finish()


def shard_counts(frames: int, shard_size: int) -> tuple[int, ...]:
    """Frames of each shard of a data set of `frames` frames: `shard_size` each, the last one what is left."""
    return tuple(min(shard_size, frames - start) for start in range(0, frames, shard_size))


@contextlib.contextmanager
def _rendered(
    render: ShardRenderer, missing: list[int], workers: int, runner: BeamRunner | None, out: Path
) -> Iterator[Iterator[tuple[int, dict[str, np.ndarray]]]]:
    """(index, arrays) of the `missing` shards, in order, rendered here, in worker processes or on Beam."""
    if runner is not None:
        from keras_hpe.beam import BeamJob

        with BeamJob(runner, out / "beam-staging") as job:
            yield job.run(render, missing)
    elif workers > 1 and len(missing) > 1:
        # spawn, not fork: the parent may hold TensorFlow's threads, which fork does not survive.
        with multiprocessing.get_context("spawn").Pool(min(workers, len(missing))) as pool:
            yield zip(missing, pool.imap(render, missing))
    else:
        yield ((index, render(index)) for index in missing)


def read_manifest(path: str | Path) -> Manifest:
    """Read and check `path/manifest.json` (`Manifest.from_dict`), and that its shard files are there."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"data set folder {path} does not exist")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.exists():
        raise UserError(f"{path} is not a finished data set: no {MANIFEST_NAME}")
    try:
        values = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{manifest_path} is not valid JSON: {error}") from None
    manifest = Manifest.from_dict(values, str(manifest_path))
    missing = [shard["file"] for shard in manifest.shards if not (path / shard["file"]).is_file()]
    if missing:
        raise UserError(f"{manifest_path} lists shard(s) that are not in {path}: {', '.join(missing)}")
    return manifest


def load_arrays(path: str | Path, fields: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Load the data set at `path` into memory: {field: all frames concatenated}."""
    path = Path(path)
    manifest = read_manifest(path)
    fields = _check_fields(manifest, path, fields)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fields}
    for shard in manifest.shards:
        arrays = _load_checked_shard(path / shard["file"], fields, manifest.size, shard["count"])
        for name in fields:
            parts[name].append(arrays[name])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def load_frames(path: str | Path, indices: Iterable[int], fields: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Load only the frames `indices` (in that order), reading only the shards that hold them."""
    path = Path(path)
    manifest = read_manifest(path)
    fields = _check_fields(manifest, path, fields)
    indices = np.asarray(list(indices), dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= manifest.count):
        raise UserError(f"frame indices must be in 0..{manifest.count - 1} for data set {path}")
    starts = np.cumsum([0] + [shard["count"] for shard in manifest.shards])
    shard_of = np.searchsorted(starts, indices, side="right") - 1
    out = {name: np.zeros((indices.size,) + field_shape(name, manifest.size), FIELD_DTYPES[name]) for name in fields}
    for shard in np.unique(shard_of):
        arrays = _load_checked_shard(path / manifest.shards[shard]["file"], fields, manifest.size,
                                     manifest.shards[shard]["count"])
        rows = shard_of == shard
        for name in fields:
            out[name][rows] = arrays[name][indices[rows] - starts[shard]]
    return out


def make_tf_dataset(
    path: str | Path,
    fields: Iterable[str] | None = None,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    passes: int = 1,
):
    """A `tf.data.Dataset` of per-frame dicts {field: tensor}, unbatched, streamed shard by shard.

    The frames of the data set, `passes` times over. With `shuffle`, pass p
    visits the shards in a random order and the frames of each shard in a
    random order, drawn from `default_rng([seed, epoch, p])`: every iteration
    of the returned data set gives the same frames, a function of (`seed`,
    `epoch`) alone, so a training builds one data set per epoch and a resumed
    run sees the epochs an uninterrupted one does.
    """
    import tensorflow as tf

    if shuffle and (seed < 0 or epoch < 0):
        raise UserError(f"the shuffle's seed and epoch must be >= 0, got {seed} and {epoch}")
    if passes < 1:
        raise UserError(f"passes over a data set must be >= 1, got {passes}")
    path = Path(path)
    manifest = read_manifest(path)
    fields = _check_fields(manifest, path, fields)
    _check_shards_once(path, manifest)
    files = [path / shard["file"] for shard in manifest.shards]

    def shards():
        for pass_index in range(passes):
            rng = np.random.default_rng([seed, epoch, pass_index])
            order = rng.permutation(len(files)) if shuffle else range(len(files))
            for index in order:
                arrays = _load_shard(files[index], fields)
                if shuffle:
                    frames = rng.permutation(len(arrays[fields[0]]))
                    arrays = {name: a[frames] for name, a in arrays.items()}
                yield arrays

    signature = {
        name: tf.TensorSpec((None,) + field_shape(name, manifest.size), tf.as_dtype(FIELD_DTYPES[name]))
        for name in fields
    }
    dataset = tf.data.Dataset.from_generator(shards, output_signature=signature).unbatch()
    return dataset.apply(tf.data.experimental.assert_cardinality(manifest.count * passes))


def _check_fields(manifest: Manifest, path: Path, fields: Iterable[str] | None) -> list[str]:
    fields = list(manifest.fields if fields is None else fields)
    missing = [name for name in fields if name not in manifest.fields]
    if missing:
        raise UserError(
            f"data set {path} ({manifest.domain}) has no field(s) {', '.join(missing)}; "
            f"it has {', '.join(manifest.fields)}"
        )
    return fields


def _load_shard(path: Path, fields: list[str]) -> dict[str, np.ndarray]:
    """The arrays `fields` of the shard at `path`, as they are (UserError if it is no .npz holding them).

    `make_tf_dataset` reads every epoch with it, after `_check_shards_once`.
    """
    _check_archive(path)
    try:
        with np.load(path) as shard:
            missing = [name for name in fields if name not in shard.files]
            if missing:
                raise UserError(f"shard {path} lacks the field(s) {', '.join(missing)}")
            return {name: shard[name] for name in fields}
    except _ARCHIVE_ERRORS as error:
        raise UserError(f"cannot read shard {path}: {error}") from None


def _load_checked_shard(path: Path, fields: list[str], size: int, count: int) -> dict[str, np.ndarray]:
    """`_load_shard`, then `check_shard_arrays` against the manifest's crop size and frame count."""
    arrays = _load_shard(path, fields)
    check_shard_arrays(arrays, size, where=f"shard {path}", count=count)
    return arrays


# Shards `_check_shards_once` found good in this process, by what would change if the file or its
# manifest did: a tf.data set rebuilt every epoch does not read and check them again.
_CHECKED_SHARDS: set[tuple] = set()


def _check_shards_once(path: Path, manifest: Manifest) -> None:
    """Check every shard of the data set at `path` before a tf.data generator reads it.

    A UserError raised inside the generator would reach the user as a
    TensorFlow error with a traceback, so bad shards are found here.
    """
    for shard in manifest.shards:
        file = path / shard["file"]
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, manifest.size, shard["count"],
               tuple(manifest.fields))
        if key not in _CHECKED_SHARDS:
            _load_checked_shard(file, manifest.fields, manifest.size, shard["count"])
            _CHECKED_SHARDS.add(key)


def _shard_count(path: Path) -> int:
    """Frame count of a shard from the header of its depth array, without reading the data."""
    _check_archive(path)
    try:
        with zipfile.ZipFile(path) as archive, archive.open("depth_mm.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape = read_header(f)[0]
    except KeyError:
        raise UserError(f"shard {path} lacks the field depth_mm") from None
    except _ARCHIVE_ERRORS as error:
        raise UserError(f"cannot read shard {path}: {error}") from None
    if len(shape) < 1:
        raise UserError(f"shard {path}: depth_mm has no frame axis (shape {shape})")
    return int(shape[0])


# What zipfile and NumPy raise for a damaged archive or array.
_ARCHIVE_ERRORS = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)


def _check_archive(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"shard {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise UserError(f"shard {path} is not a .npz archive ({path.stat().st_size} bytes): truncated or damaged")


def _check_camera(camera, source: str) -> None:
    names = [f.name for f in dataclasses.fields(Camera)]
    if not isinstance(camera, dict) or sorted(camera) != sorted(names):
        raise UserError(f"{source}: 'camera' must be an object with the keys {', '.join(names)}, got {shown(camera)}")
    for name in names:
        value, key = camera[name], f"camera.{name}"
        if isinstance(getattr(NYU_CAMERA, name), int):
            require(is_int(value) and value >= 1, source, key, "an integer >= 1 (pixels)", value)
        elif name in ("fx", "fy"):
            require(is_finite(value) and value > 0, source, key, "a number > 0 (pixels)", value)
        else:
            require(is_finite(value), source, key, "a finite number (pixels)", value)


def _check_field_names(names, source: str) -> None:
    require(isinstance(names, list) and all(isinstance(name, str) for name in names), source, "fields",
             "a list of field names", names)
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise UserError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    require("depth_mm" in names and len(set(names)) == len(names), source, "fields",
             "distinct field names including depth_mm", names)


def _check_shard_list(shards, count: int, source: str) -> None:
    require(isinstance(shards, list) and len(shards) > 0, source, "shards", "a non-empty list", shards)
    for index, shard in enumerate(shards):
        key = f"shards[{index}]"
        require(isinstance(shard, dict) and {"file", "count"} <= set(shard), source, key,
                 "an object with the keys file and count", shard)
        require(shard["file"] == shard_name(index), source, f"{key}.file", repr(shard_name(index)), shard["file"])
        require(is_int(shard["count"]) and shard["count"] >= 1, source, f"{key}.count", "an integer >= 1",
                 shard["count"])
    total = sum(shard["count"] for shard in shards)
    if total != count:
        raise UserError(f"{source}: the shards hold {total} frames in all, but 'count' is {count}")


def _identity_of(manifest: dict) -> dict:
    keys = ("format", "domain", "size", "cube_mm", "seed", "camera", "fields", "params")
    return _json_normal({key: manifest[key] for key in keys})


def _json_normal(values: dict) -> dict:
    """Tuples become lists, as after a JSON round trip, so identities compare equal."""
    return json.loads(json.dumps(values))
