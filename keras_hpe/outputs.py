"""Output paths: claimed before the work, written atomically, locked against a second writer.

Every command writes its results through these helpers, so that

- a problem with an output path (an existing folder where a file goes, a file
  where a folder goes, a parent that is a file, no permission) is found before
  any work, in one line that names the path (`check_output_file`,
  `check_output_folder`);
- a result appears complete or not at all (`atomic_path`, `write_text`), and
  no folder a command did not make is ever replaced or deleted: `atomic_path`
  replaces an existing folder only when the caller recognises it as its own
  kind of artefact;
- an output folder that a failing command created is removed again if it holds
  no file (`output_folder`);
- two processes never write one folder at once (`folder_lock`): the second
  gets an error at once instead of mixing its files with the first's;
- the artefacts of a reproduction record the paths inside its run folder
  relative to it (`recorded_path`), so that the folder can be moved or copied.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from keras_hpe.errors import UserError

LOCK_NAME = ".keras_hpe.lock"  # inside a locked folder while its writer runs
# `scratch_folder`'s temporaries (`atomic_path`'s too): ".<name>.<8 random characters>.tmp" (tempfile.mkdtemp).
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """`path` as a Path, or UserError if a file cannot be written there (checked before any work)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is an existing folder; give the path of a file")
    _check_creatable(path, what)
    return path


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """`path` as a Path, or UserError if it is a file or a folder cannot be made or written there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is not a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: no permission to write in it")
    _check_creatable(path, what)
    return path


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, replace_folder: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds.

    Works for a file or a folder written at the yielded path. An existing file
    at `path` is replaced; an existing folder only if `replace_folder(path)`
    is true (the caller recognises it as an artefact of its own kind), else
    UserError before anything is written. On error the temporary is removed
    and `path` is left as it was.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink() and not (replace_folder is not None and replace_folder(path)):
        raise UserError(f"{path} is an existing folder that this command did not write; refusing to replace it")
    _check_creatable(path, "output")
    with scratch_folder(path) as tmp:
        target = tmp / path.name
        yield target
        if path.is_dir() and not path.is_symlink():
            os.replace(path, tmp / ".replaced")  # out of the way first; removed with tmp below
        os.replace(target, path)


@contextlib.contextmanager
def scratch_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside `path`; remove it after the block, whatever happens.

    Its name marks it as a temporary (`.<name>.<8 characters>.tmp`): inside a
    locked folder, the next `folder_lock` removes one that a killed writer left.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to the file `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def recorded_path(path: str | os.PathLike, run_dir: str | os.PathLike | None) -> str:
    """`path` as an artefact records it: relative to `run_dir` (a reproduction's run folder) when inside it, so that
    the folder can be moved or copied to another machine; as given otherwise (or without `run_dir`)."""
    if run_dir is not None:
        resolved, base = Path(path).resolve(), Path(run_dir).resolve()
        if resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return str(path)


@contextlib.contextmanager
def output_folder(path: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Make the folder `path` (and missing parents) for a command's results and yield it.

    If the block raises, the folders this call made are removed again, as far
    as they hold no file: a failed command leaves no empty folders behind, and
    never deletes a file (a resumable run's state survives).
    """
    path = check_output_folder(path, what)
    created = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        created.append(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make {what} {path}: {error.strerror or error}") from None
    try:
        yield path
    except BaseException:
        for folder in created:  # deepest first
            _remove_empty_tree(folder)
        raise


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (made if missing) while the block runs; yield the folder.

    A second process asking for the same folder gets a UserError at once,
    naming the folder and the process that holds it. The lock is the file
    `LOCK_NAME` inside the folder, locked with `flock` (released by the
    kernel even when its holder is killed) and removed on release. Every
    writer of the folder holds the lock, so `atomic_path` temporaries found
    in it on acquiring are leftovers of a killed writer: they are removed.
    """
    folder = check_output_folder(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot make {what} {folder}: {error.strerror or error}") from None
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(
                f"{what} {folder} is being written by another process (pid {holder}); "
                "wait for it to finish or choose another folder"
            ) from None
        # The previous holder may have removed the file between our open and flock: lock the file now there.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        remove_temporaries(folder)
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def remove_temporaries(folder: str | os.PathLike) -> None:
    """Remove the `atomic_path` temporaries a killed writer left directly in `folder` (if it exists).

    Only for a folder whose writers all hold the lock its caller holds: then no temporary there is in use.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for leftover in folder.iterdir():
        if _TEMPORARY.match(leftover.name) and leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)


def _check_creatable(path: Path, what: str) -> None:
    """UserError unless the nearest existing ancestor of `path` is a folder this process may write."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot write {what} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: no permission to write in {ancestor}")


def _remove_empty_tree(folder: Path) -> None:
    """Remove `folder` and its sub-folders bottom-up where they hold no file; never remove a file."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            _remove_empty_tree(child)
    with contextlib.suppress(OSError):
        folder.rmdir()
