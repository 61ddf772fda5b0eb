"""`keras-hpe data ...`, run in-process through the real entry point."""

import numpy as np
import pytest

from keras_hpe.cli.main import main
from keras_hpe.data.dataset import load_arrays, read_manifest
from keras_hpe.data.nyu import write_nyu_like


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-hpe: error:") and needle in err, err
    assert "\n" not in err and "Traceback" not in err


def test_synth_writes_a_data_set_and_summary(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--n", "5", "--out", str(out), "--seed", "3", "--size", "32"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "synth: 5 frames" in summary and str(out) in summary
    manifest = read_manifest(out)
    assert (manifest.count, manifest.size, manifest.seed, manifest.domain) == (5, 32, 3, "synth")
    assert "labels" in manifest.fields


def test_sensor_with_eval_labels_and_config(tmp_path, capsys):
    config = tmp_path / "sensor.json"
    config.write_text('{"baseline_mm": 60.0}')
    out = tmp_path / "sensor"
    args = ["data", "sensor", "--n", "4", "--out", str(out), "--size", "32", "--eval-labels",
            "--sensor-config", str(config)]
    assert main(args) == 0
    assert "sensor: 4 frames" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest.domain == "sensor" and "labels" in manifest.fields
    assert manifest.params["sensor"]["baseline_mm"] == 60.0 and manifest.params["eval_labels"] is True


def test_nyu_and_show(tmp_path, capsys):
    write_nyu_like(tmp_path / "nyu", "train", 3, seed=0)
    out = tmp_path / "nyu_data"
    assert main(["data", "nyu", "--root", str(tmp_path / "nyu"), "--split", "train", "--out", str(out),
                 "--limit", "2", "--size", "32"]) == 0
    assert "nyu: 2 frames" in capsys.readouterr().out
    assert load_arrays(out)["depth_mm"].shape == (2, 32, 32)
    png = tmp_path / "nyu.png"
    assert main(["data", "show", str(out), "--out", str(png), "--n", "2"]) == 0
    assert png.stat().st_size > 1000 and str(png) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["data", "synth", "--n", "0", "--out", "{tmp}/a"], "--n must be > 0"),
        (["data", "synth", "--n", "4", "--out", "{tmp}/a", "--size", "50"], "--size must be one of"),
        (["data", "sensor", "--n", "-3", "--out", "{tmp}/a"], "--n must be > 0"),
        (["data", "sensor", "--n", "4", "--out", "{tmp}/a", "--size", "32", "--sensor-config", "{tmp}/bad.json"],
         "not valid JSON"),
        (["data", "sensor", "--n", "4", "--out", "{tmp}/a", "--sensor-config", "{tmp}/none.json"], "none.json"),
        (["data", "nyu", "--root", "{tmp}/missing", "--out", "{tmp}/a"], "missing"),
        (["data", "nyu", "--root", "{tmp}", "--out", "{tmp}/a", "--size", "7"], "--size must be one of"),
        (["data", "show", "{tmp}/missing", "--out", "{tmp}/x.png"], "does not exist"),
        (["data", "show", "{tmp}", "--out", "{tmp}/x.png"], "no manifest.json"),
    ],
)
def test_bad_input_returns_2_with_one_line(tmp_path, capsys, args, needle):
    (tmp_path / "bad.json").write_text("{oops")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "a").exists() and not (tmp_path / "x.png").exists()


def test_rerun_with_other_parameters_is_refused(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--n", "3", "--out", str(out), "--size", "32"]) == 0
    first = load_arrays(out)["depth_mm"]
    capsys.readouterr()
    assert main(["data", "synth", "--n", "3", "--out", str(out), "--size", "32", "--seed", "1"]) == 2
    _one_line_error(capsys, "other parameters")
    np.testing.assert_array_equal(load_arrays(out)["depth_mm"], first)
