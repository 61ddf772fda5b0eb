"""`keras-hpe reproduce --plan`: the cost model's prediction of every stage, the disk check, and its formulas."""

import collections
import json
import shutil
from dataclasses import replace

import pytest

from conftest import assert_one_line_error
from keras_hpe import costs, stage_bytes
from keras_hpe.cli import main as cli_main
from keras_hpe.presets import get_preset
from keras_hpe.reproduce import build_stages, get_plan


def plan_command(tmp_path, preset: str, *extra: str) -> list[str]:
    return ["reproduce", "--preset", preset, "--out", str(tmp_path / "run"), "--reports", str(tmp_path / "reports"),
            "--saved-models", str(tmp_path / "saved"), "--plan", *extra]


@pytest.mark.parametrize("preset", ["tiny", "quick", "paper"])
def test_plan_prints_every_stage_and_writes_nothing(preset, tmp_path, capsys):
    code = cli_main.main(plan_command(tmp_path, preset))
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert list(tmp_path.iterdir()) == []  # no --out, no reports, no export folder
    lines = out.splitlines()
    prediction = json.loads(lines[-1])
    names = [stage.name for stage in build_stages(get_plan(preset))]
    assert [stage["name"] for stage in prediction["stages"]] == names
    for name in names:  # a table row per stage, with a time, a memory and a disk figure
        row = next(line for line in lines if line.split()[0] == name)
        assert "?" not in row.split()
    stages = prediction["stages"]
    # Seconds are rounded to 0.1: the tiny plan's smallest stages round to 0.
    assert all(stage["seconds"] >= 0 and stage["memory_bytes"] > 0 and stage["disk_bytes"] > 0 for stage in stages)
    assert prediction["total"]["seconds"] > 0
    assert prediction["total"]["seconds"] == pytest.approx(sum(stage["seconds"] for stage in stages), abs=1)  # rounded
    assert any(line.startswith("total ") for line in lines)
    assert f"needed on the filesystem of {tmp_path / 'run'}" in out


def test_the_paper_plan_costs_more_than_the_quick_plan_and_gpus_shorten_only_training(tmp_path, capsys):
    predictions = {}
    for preset, extra in (("quick", ()), ("paper", ()), ("paper", ("--gpu-speedup", "1e6"))):
        assert cli_main.main(plan_command(tmp_path, preset, *extra)) == 0
        predictions[(preset, extra)] = json.loads(capsys.readouterr().out.splitlines()[-1])
    quick, paper = predictions[("quick", ())], predictions[("paper", ())]
    assert paper["total"]["seconds"] > 10 * quick["total"]["seconds"]
    assert paper["total"]["disk_bytes"] > 5 * quick["total"]["disk_bytes"]
    # Without a GPU on this machine the assumed GPU speed-up changes nothing.
    assert predictions[("paper", ("--gpu-speedup", "1e6"))]["stages"] == paper["stages"]


def test_a_run_that_does_not_fit_on_the_disk_is_refused_in_one_line_and_nothing_is_written(
        tmp_path, capsys, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    code = cli_main.main(plan_command(tmp_path, "quick"))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    line = assert_one_line_error(err, "1.0 MB free")
    assert "the quick plan needs" in line and str(tmp_path / "run") in line
    assert list(tmp_path.iterdir()) == []


def test_the_gpu_speedup_must_be_positive(tmp_path, capsys):
    assert cli_main.main(plan_command(tmp_path, "tiny", "--gpu-speedup", "0")) == 2
    assert_one_line_error(capsys.readouterr().err, "GPU speed-up > 0")


def test_the_shards_bytes_are_computed_exactly(synth_dir):
    from keras_hpe.data.dataset import FIELDS, read_manifest

    manifest = read_manifest(synth_dir)
    written = sum(path.stat().st_size for path in synth_dir.glob("shard-*.npz"))
    assert stage_bytes.dataset_bytes([shard["count"] for shard in manifest.shards], manifest.size, FIELDS) == written


def test_training_divides_by_the_gpus_a_batch_can_use_and_restoration_by_the_workers():
    plan = replace(get_plan("paper"), restore_workers=32)
    sizes = costs.RunSizes.of_plan(plan, get_preset("paper"), patches_total=1e6, patches_unique=5e5,
                                   accepted_frames=1e4, weights={"segmentation": 1, "regression": 1, "direct": 1})
    eight = costs.Machine(cores=32, gpus=8, gpu_speedup=10)
    assert costs.speedup("seg_synth", sizes, eight) == 10  # a batch of 1 frame runs on one GPU
    assert costs.speedup("reg_full", sizes, eight) == 80  # batches of 64 are split over all 8
    assert costs.speedup("synth", sizes, eight) == costs.speedup("dictionary", sizes, eight) == 1
    assert costs.speedup("restore", sizes, costs.Machine(cores=32)) == 16  # 32 workers over the reference's 2
    assert costs.speedup("restore", sizes, costs.Machine(cores=8)) == 4  # as many workers as cores
