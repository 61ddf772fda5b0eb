"""The benchmark scripts still import: they sit outside the package, so nothing else would notice a renamed helper."""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def test_every_benchmark_script_imports():
    names = sorted(path.stem for path in BENCHMARKS.glob("*.py"))
    assert "restore_benchmark" in names
    # One process for all of them: TensorFlow is imported once.
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=BENCHMARKS, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_scaling_report_records_placeholders_not_this_machines_paths():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from scaling_benchmark import recorded_command
    finally:
        sys.path.remove(str(BENCHMARKS))
    command = recorded_command(["--work", "/tmp/w", "--refit", "--compare-run", "/tmp/a/runs/quick",
                                "--compare-run=/tmp/b", "--compare-note", "on /tmp", "--max-others", "0.3"])
    assert command == ("python benchmarks/scaling_benchmark.py --work WORK --compare-run RUN1 --compare-run RUN2 "
                       "--max-others 0.3")
