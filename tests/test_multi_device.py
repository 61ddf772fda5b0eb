"""Training placed by `--strategy` and `--precision`: mirrored over two logical CPUs as on one device, the run log."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from keras_hpe.errors import UserError
from keras_hpe.models.segmentation import SegmentationConfig, build_segmentation_model
from keras_hpe.presets import SegTrainingConfig
from keras_hpe.training import devices
from keras_hpe.training.devices import Placement, choose_placement, make_strategy, resolve_precision
from keras_hpe.training.fit import training_copy
from keras_hpe.training.seg import train_segmentation

# Bounds on the largest weight difference between a mirrored training and one device's, on the same global batch
# (tests/two_cpus.py: SGD, so that a wrongly scaled gradient would show), each about 5-10x what was measured:
# - segmentation, 6 steps: 1.0e-7, summation order (a mean loss per replica, which Keras's "mean_with_sample_weight"
#   gave before the weights were normalised over the global batch, made it 3.7e-3);
# - regression, 2 steps: direct 2.5e-6, full 2.0e-4, batch-norm statistics 3.1e-5 and 1.5e-3. Batch norm couples
#   the frames, so splitting the batch changes the rounding of every activation, and max pooling turns near-ties
#   into different gradients (in float64 the direct network's mirrored gradient is one device's to 1e-14).
#   Unsynchronised batch norm gives 1.3e-2 (direct) and 4.5e-3 (full).
BOUNDS = {
    "seg": {"trainable": 1e-6, "statistics": 0.0},
    "direct": {"trainable": 2.5e-5, "statistics": 3e-4},
    "full": {"trainable": 1e-3, "statistics": 1e-2},
}


@pytest.fixture(scope="module")
def two_cpus(synth_dir, sensor_dir, tmp_path_factory):
    """tests/two_cpus.py's measurements, in a process of its own (two logical CPUs)."""
    script = Path(__file__).with_name("two_cpus.py")
    done = subprocess.run([sys.executable, str(script), str(synth_dir), str(sensor_dir),
                           str(tmp_path_factory.mktemp("two_cpus"))], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("network", ["seg", "direct", "full"])
def test_mirrored_training_ends_where_one_device_does(two_cpus, network):
    measured = two_cpus[network]
    assert measured["change"] > BOUNDS[network]["trainable"]  # training moved the weights further than that
    for kind, bound in BOUNDS[network].items():
        assert measured[kind] <= bound, (network, kind, measured)


def test_a_killed_mirrored_run_resumes_exactly_and_the_log_records_the_devices(two_cpus):
    assert two_cpus["seg"]["resumed_exactly"]
    # A checkpoint holds weights only: killed on one device, the run resumes mirrored and ends where that one does.
    assert two_cpus["seg"]["resumed_elsewhere"] <= BOUNDS["seg"]["trainable"]
    run = two_cpus["seg"]["run"]
    assert run["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert (run["strategy"], run["replicas"], run["precision"]) == ("MirroredStrategy", 2, "float32")
    assert [device.rsplit("/", 1)[-1] for device in run["replica_devices"]] == ["device:CPU:0", "device:CPU:1"]


@pytest.mark.parametrize("precision, network, gpus, cpu_bfloat16, policy", [
    ("float32", "segmentation", 2, True, "float32"),
    ("auto", "segmentation", 0, True, "mixed_bfloat16"),  # measured 1.32x float32 (presets.SegTrainingConfig)
    ("auto", "segmentation", 0, False, "float32"),
    ("auto", "regression", 0, True, "float32"),  # not measured on CPU
    ("mixed", "regression", 0, False, "mixed_bfloat16"),
    ("auto", "regression", 1, False, "mixed_float16"),
    ("mixed", "segmentation", 4, True, "mixed_float16"),
])
def test_precision_resolves_by_network_and_devices(monkeypatch, precision, network, gpus, cpu_bfloat16, policy):
    monkeypatch.setattr(devices, "_gpus", lambda: [f"/device:GPU:{i}" for i in range(gpus)])
    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: cpu_bfloat16)
    assert resolve_precision(precision, network) == policy


def test_auto_strategy_mirrors_over_two_gpus_or_more(monkeypatch):
    default = tf.distribute.get_strategy()
    monkeypatch.setattr(devices, "_gpus", lambda: ["/device:GPU:0"])
    assert make_strategy("auto") is default and make_strategy("default") is default
    made = []
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda: made.append("mirrored") or "mirrored")
    monkeypatch.setattr(devices, "_gpus", lambda: ["/device:GPU:0", "/device:GPU:1"])
    assert make_strategy("auto") == "mirrored" and make_strategy("mirrored") == "mirrored" and len(made) == 2


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="strategy must be one of auto, mirrored, default, got 'tpu'"):
        choose_placement("tpu", "auto", "segmentation")
    with pytest.raises(UserError, match="precision must be one of auto, float32, mixed, got 'float16'"):
        choose_placement("default", "float16", "segmentation")
    with pytest.raises(UserError, match="seg precision must be one of auto, float32, mixed"):
        SegTrainingConfig(precision="mixed_bfloat16")


def test_the_training_copy_computes_in_the_policy_and_keeps_float32_outputs():
    keras.utils.set_random_seed(0)
    model = build_segmentation_model(SegmentationConfig(size=16, filters=(4, 4, 4), hidden_units=(4,)))
    copy = training_copy(model, Placement(tf.distribute.get_strategy(), "mixed_float16"))
    policies = {layer.name: layer.dtype_policy.name for layer in copy.layers if layer.weights}
    assert policies.pop("parts") == "float32" and set(policies.values()) == {"mixed_float16"}
    assert all(weight.dtype == "float32" for weight in copy.weights)
    assert all(a.tolist() == b.tolist() for a, b in zip(copy.get_weights(), model.get_weights()))
    copy.compile(optimizer="sgd", loss="mse")
    assert isinstance(copy.optimizer, keras.optimizers.LossScaleOptimizer)  # float16 gradients need loss scaling


def test_float16_training_on_a_gpu_policy_saves_a_float32_model(synth_dir, tmp_path, monkeypatch):
    """What `--precision auto` does on a GPU, run on this CPU: mixed_float16 with loss scaling."""
    monkeypatch.setattr(devices, "_gpus", lambda: ["/device:GPU:0"])
    config = SegTrainingConfig(model=SegmentationConfig(filters=(4, 8, 8), kernel_sizes=(3, 3, 3),
                                                        dilation_rates=(1, 2, 2), hidden_units=(8,)),
                               batch_size=16, epochs=1)
    result = train_segmentation(synth_dir, tmp_path, config, strategy="default", progress=False)
    assert result.metrics["run"]["precision"] == "mixed_float16" and result.metrics["run"]["strategy"] == "default"
    assert result.metrics["history"]["loss"][0] > 0
    model = keras.saving.load_model(result.model_path)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
