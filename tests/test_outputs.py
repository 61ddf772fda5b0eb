"""keras_hpe.outputs: checked, atomic, locked output paths."""

import multiprocessing
import os

import pytest

from keras_hpe.errors import UserError
from keras_hpe.outputs import (
    LOCK_NAME,
    atomic_path,
    check_output_file,
    check_output_folder,
    folder_lock,
    output_folder,
    write_text,
)


def test_atomic_path_never_replaces_a_folder_it_was_not_allowed_to(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="existing folder"):
        with atomic_path(victim) as tmp:
            tmp.write_text("a picture")
    assert (victim / "keep.txt").read_text() == "x"
    with atomic_path(victim, replace_folder=lambda path: (path / "keep.txt").exists()) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("y")
    assert [p.name for p in victim.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["victim"]  # no temporary left


def test_atomic_write_leaves_the_old_file_on_error(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_output_checks_name_the_problem(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is an existing folder"):
        check_output_file(tmp_path, "--curve")
    with pytest.raises(UserError, match="file.txt is a file, not a folder"):
        check_output_file(a_file / "deeper" / "x.png", "--out")
    with pytest.raises(UserError, match="exists and is not a folder"):
        check_output_folder(a_file, "--out")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_folder(a_file / "sub", "--out")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()


def test_output_folder_removes_what_it_made_if_it_stays_empty(tmp_path):
    with pytest.raises(UserError):
        with output_folder(tmp_path / "a" / "b"):
            (tmp_path / "a" / "b" / "logs").mkdir()
            raise UserError("bad --val")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):
        with output_folder(tmp_path / "c") as out:
            (out / "backup").mkdir()
            (out / "backup" / "state.json").write_text("{}")
            raise KeyboardInterrupt
    assert (tmp_path / "c" / "backup" / "state.json").is_file()  # a resumable run's state stays
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(UserError):
        with output_folder(existing):
            raise UserError("bad")
    assert existing.is_dir()  # not made by this call: kept


def _try_lock(folder, started, release, results):
    try:
        with folder_lock(folder):
            started.set()
            release.wait(10)
            results.put("locked")
    except UserError as error:
        results.put(str(error))


def test_folder_lock_lets_one_process_in_and_cleans_leftover_temporaries(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    leftover = folder / ".shard-00003.npz.a1b2c3d4.tmp"
    leftover.mkdir()
    user_folder = folder / ".not-ours.tmp"
    user_folder.mkdir()
    context = multiprocessing.get_context("spawn")
    started, release, results = context.Event(), context.Event(), context.Queue()
    holder = context.Process(target=_try_lock, args=(folder, started, release, results))
    holder.start()
    assert started.wait(60)
    assert not leftover.exists() and user_folder.exists()
    assert (folder / LOCK_NAME).read_text() == str(holder.pid)
    with pytest.raises(UserError, match=f"being written by another process \\(pid {holder.pid}\\)"):
        with folder_lock(folder):
            pass
    release.set()
    holder.join(60)
    assert results.get(timeout=10) == "locked"
    assert not (folder / LOCK_NAME).exists()
    with folder_lock(folder):  # free again
        assert (folder / LOCK_NAME).read_text() == str(os.getpid())
