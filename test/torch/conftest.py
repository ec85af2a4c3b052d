"""Fixtures for the PyTorch tests: official-layout checkpoints built from the reference weights."""

import importlib.util

import pytest
import torch

VARIANTS = ("S50", "ST50", "ST101")


@pytest.fixture(scope="session")
def stark_weights(stark_reference):
    """The reference fixtures' weight builder (a plain script beside the data, loaded by path)."""
    spec = importlib.util.spec_from_file_location("stark_weights", stark_reference / "stark_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def official_checkpoint(stark_weights, tmp_path_factory):
    """variant -> path of an official-layout ``*.pth.tar`` holding the deterministic weights."""
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
