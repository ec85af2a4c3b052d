"""Shared test fixtures: the location of ``../shared`` (with a clear message when it is missing),
official-layout checkpoints built from the reference weights, and ONNX exports of them.

torch is imported lazily, inside the fixtures that need it, so the numpy-only groups run without it.
"""

import importlib.util
import os
from pathlib import Path

import pytest

from stark_ros.datasets import MissingSharedDataError, shared_dir
from stark_ros.datasets.base import SHARED_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
# Tests import the installed package; point it (and every subprocess) at the repository's shared/.
if (REPO_ROOT.parent / "shared").is_dir():
    os.environ.setdefault(SHARED_ENV, str(REPO_ROOT.parent / "shared"))

# Unique per test session, so parallel runs (and other ROS 2 users of the machine) never meet.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture(scope="session")
def shared():
    try:
        return shared_dir()
    except MissingSharedDataError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def stark_reference(shared):
    return shared / "stark_reference"


@pytest.fixture(scope="session")
def stark_weights(stark_reference):
    """The reference fixtures' weight builder (a plain script beside the data, loaded by path)."""
    spec = importlib.util.spec_from_file_location("stark_weights", stark_reference / "stark_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def official_checkpoint(stark_weights, tmp_path_factory):
    """make(variant, **extra) -> path of an official-layout ``*.pth.tar`` with the reference weights."""
    import torch

    cache = {}

    def make(variant: str, **extra):
        key = (variant, tuple(sorted(extra.items())))
        if key not in cache:
            state = {k: torch.from_numpy(v) for k, v in stark_weights.official_state_dict(variant).items()}
            path = tmp_path_factory.mktemp(f"official_{variant}") / f"STARK{variant}_ep0050.pth.tar"
            torch.save({"net": state, **extra}, path)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def exported_model(official_checkpoint, tmp_path_factory):
    """make(variant) -> folder with template.onnx + track.onnx exported from the reference weights."""
    from stark_ros.export import export_checkpoint

    cache = {}

    def make(variant: str):
        if variant not in cache:
            out = tmp_path_factory.mktemp(f"onnx_{variant}")
            export_checkpoint(official_checkpoint(variant), out)
            cache[variant] = out
        return cache[variant]

    return make


# Seed of the untrained STARK-Lite used where any weights do (node plumbing, batching, latency).
UNTRAINED_LITE_SEED = 0


@pytest.fixture(scope="session")
def untrained_lite_model(tmp_path_factory):
    """A fast STARK-Lite export with random (seeded) weights: boxes are meaningless, the plumbing
    is real. Tests that need a model that actually tracks use the default model instead."""
    import torch

    from stark_ros.export import export_model
    from stark_ros.model import build_model, get_preset

    torch.manual_seed(UNTRAINED_LITE_SEED)
    out = tmp_path_factory.mktemp("onnx_untrained_lite")
    export_model(build_model(get_preset("LITE")), out, source_sha256="untrained-lite-seed-0")
    return out
