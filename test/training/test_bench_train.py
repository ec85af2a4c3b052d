"""``python -m stark_ros.bench train`` as the README gives it, in the set-up environment: it reads the
installed training configs (found through stark_ros.core.locate, not beside the source) and prints
the figures of every path (no timing assertions: a few small rounds, figures only checked for sense)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from stark_ros.bench import train as bench_train
from stark_ros.core import locate
from stark_ros.datasets.base import SHARED_ENV

REPO = Path(__file__).resolve().parents[2]
README_COMMAND = "python -m stark_ros.bench train"
# Few and small rounds: the command's path, not its figures, is under test.
SHORT = ["--rounds", "1", "--plain-steps", "1", "--fast-steps", "1", "--batch", "2"]
RATE = re.compile(r"([\d.]+) pairs/s")


def readme_command() -> list[str]:
    """The README's ``bench train`` line, without its comment."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith(README_COMMAND):
            return line.split("#", 1)[0].split()
    raise AssertionError(f"the README gives no `{README_COMMAND}` line")


def test_every_training_config_is_installed_in_the_share_folder():
    installed = locate.share_dir() / "training" / "configs"
    assert bench_train.installed_config(bench_train.FAST_CONFIG).parent == installed
    sources = sorted((REPO / "training" / "configs").glob("*.yaml"))
    assert sources
    for source in sources:
        assert (installed / source.name).read_text() == source.read_text(), source.name


def test_readme_bench_train_runs_on_the_installed_configs(tmp_path):
    command = readme_command()
    assert command[0] == "python"
    # From a folder outside the repository: nothing may be found beside the working directory.
    run = subprocess.run([sys.executable, *command[1:], *SHORT], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert bench_train.PLAIN_CONFIG in out and bench_train.FAST_CONFIG in out, out
    assert "batch 2" in out and "float32" in out and "bfloat16" in out, out
    rates = [float(r) for r in RATE.findall(out)]
    assert len(rates) == 3 and all(r > 0 for r in rates), out
    assert "ratio fast / plain" in out and "one-time cache cost" in out, out


def test_bench_train_without_the_shared_data_says_so(tmp_path):
    run = subprocess.run([sys.executable, "-m", "stark_ros.bench", "train", *SHORT], cwd=tmp_path,
                         env={**os.environ, SHARED_ENV: str(tmp_path / "nowhere")}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert "error: shared data not found" in run.stderr and "Traceback" not in run.stderr, run.stderr
