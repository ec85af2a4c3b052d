"""The trainer end to end on the tiny config and the shared training sequences (CPU): it learns,
stage 2 touches only the score head, resuming is exact, DDP (gloo, two processes) equals one
process with the same total batch, and its checkpoints go through the exporter and the runtime."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stark_ros.model import load_checkpoint
from stark_ros.training.config import load_config
from stark_ros.training.objective import evaluate_pairs
from stark_ros.training.trainer import FINAL, LATEST, Trainer

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "training" / "configs" / "tiny.yaml"
LEARN_STEPS = 30
EVAL_PAIRS = 24
# Small runs for the exactness tests: 4 optimiser steps of 8 samples per epoch, 2 epochs.
SMALL = ["data.samples_per_epoch=32", "epochs=2"]


def tiny(tmp_path, *options):
    return load_config(TINY, [f"work_dir={tmp_path}", *options])


def states_equal(a: dict, b: dict) -> list[str]:
    """Names of the entries that differ."""
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    cfg = tiny(work, "epochs=1", f"data.samples_per_epoch={LEARN_STEPS * 8}")
    trainer = Trainer(cfg, progress=False)
    trainer.dataset.set_epoch(0)
    before = evaluate_pairs(trainer.model, trainer.dataset, range(EVAL_PAIRS))
    history = trainer.train()
    trainer.dataset.set_epoch(0)
    after = evaluate_pairs(trainer.model, trainer.dataset, range(EVAL_PAIRS))
    return trainer, history, before, after


def test_tiny_training_lowers_the_loss_and_raises_iou_on_its_training_pairs(tiny_run):
    trainer, history, before, after = tiny_run
    assert len(history) == LEARN_STEPS
    losses = [h["loss"] for h in history]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert after["iou"] > before["iou"] + 0.2, (before, after)
    assert (trainer.work_dir / FINAL).is_file() and (trainer.work_dir / "tensorboard").is_dir()


def test_checkpoint_is_self_describing_and_loads_weights_only(tiny_run):
    trainer = tiny_run[0]
    model, config = load_checkpoint(trainer.work_dir / FINAL)
    assert config == trainer.model.config
    assert (config.enc_layers, config.tracker.search_size) == (1, 128)
    assert not states_equal(model.state_dict(), trainer.model.state_dict())
    raw = torch.load(trainer.work_dir / FINAL, map_location="cpu", weights_only=True)
    assert raw["train_config"]["name"] == "tiny" and raw["epoch"] == 1


def test_stage2_changes_only_the_score_head(tiny_run, tmp_path):
    stage1 = tiny_run[0].work_dir / FINAL
    cfg = tiny(tmp_path, "name=tiny_st2", "stage=2", f"load_from={stage1}", "data.samples_per_epoch=24",
               "epochs=1", "data.negative_prob=0.5")
    trainer = Trainer(cfg, progress=False)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert not states_equal(start, load_checkpoint(stage1)[0].state_dict())
    history = trainer.train()
    assert all("bce" in h for h in history)
    changed = states_equal(start, trainer.model.state_dict())
    assert changed, "stage 2 trained nothing"
    assert all(k.startswith("score_head.") for k in changed), [k for k in changed if "score_head" not in k]
    # Every score-head parameter moved; the box branch (BatchNorm statistics included) did not.
    assert {k for k in start if k.startswith("score_head.")} == set(changed)


def test_stage2_refuses_a_model_without_score_head(tmp_path):
    with pytest.raises(ValueError, match="has none"):
        Trainer(tiny(tmp_path, "model=S50", "model_overrides={}", "stage=2", "pretrained_backbone=''"),
                progress=False)


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    # Dropout stays on (RNG state is part of the checkpoint) and one data worker process runs.
    options = [*SMALL, "data.num_workers=1"]
    whole = Trainer(tiny(tmp_path / "a", *options), progress=False)
    whole.train()
    first = Trainer(tiny(tmp_path / "b", *options), progress=False)
    first.train(max_steps=5)  # stops inside the second epoch
    saved = torch.load(first.work_dir / LATEST, map_location="cpu", weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 1)
    del first
    resumed = Trainer(tiny(tmp_path / "b", *options), progress=False)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1)
    resumed.train()
    assert resumed.global_step == whole.global_step == 8
    assert states_equal(whole.model.state_dict(), resumed.model.state_dict()) == []
    a, b = whole.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)
    # A checkpoint of another kind of run is never silently continued.
    with pytest.raises(ValueError, match="belongs to a run with stage=1"):
        Trainer(tiny(tmp_path / "b", *options, "stage=2"), progress=False)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_sigterm_saves_and_a_restart_resumes_exactly(tmp_path):
    options = [f"work_dir={tmp_path / 'killed'}", *SMALL, "save_every_steps=1"]
    proc = subprocess.Popen([sys.executable, str(REPO / "training" / "train.py"), str(TINY), "--no-progress",
                             "--cfg-options", *options], env=_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latest = tmp_path / "killed" / "tiny" / LATEST
    deadline = time.monotonic() + 120
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "saving a checkpoint" in out
    saved = torch.load(latest, map_location="cpu", weights_only=True)
    assert 1 <= saved["global_step"] < 8, "the run was meant to stop early"
    resumed = Trainer(load_config(TINY, options), progress=False)
    resumed.train()
    whole = Trainer(tiny(tmp_path / "whole", *SMALL), progress=False)
    whole.train()
    assert states_equal(whole.model.state_dict(), resumed.model.state_dict()) == []


def test_ddp_two_processes_match_each_other_and_one_process_with_the_same_batch(tmp_path):
    # Dropout off (it draws differently per process); per-process batch 2, 2 steps of 4 samples.
    common = ["data.samples_per_epoch=8", "epochs=1", "batch_size=2", "model_overrides.dropout=0.0",
              "data.num_workers=0"]
    port = str(29500 + os.getpid() % 1000)
    run = subprocess.run(["bash", str(REPO / "training" / "dist_train.sh"), str(TINY), "2", "--no-progress",
                          "--cfg-options", f"work_dir={tmp_path / 'ddp'}", *common],
                         env={**_env(), "PORT": port, "PYTHON": sys.executable}, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp" / "tiny" / FINAL, map_location="cpu", weights_only=True)
    sums = ddp["replica_checksums"]
    assert sums.shape[0] == 2 and torch.equal(sums[0], sums[1]), "the two ranks hold different parameters"
    single = Trainer(tiny(tmp_path / "one", *common, "accumulate=2"), progress=False)
    start = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.train()
    assert single.global_step == 2
    names = [n for n, _ in single.model.named_parameters()]
    trained = [n for n in names if not torch.equal(start[n], ddp["model"][n])]
    assert trained, "DDP training changed nothing"
    for n in names:
        torch.testing.assert_close(ddp["model"][n], single.model.state_dict()[n], atol=1e-5, rtol=1e-4)


def test_dist_train_refuses_bad_arguments():
    run = subprocess.run(["bash", str(REPO / "training" / "dist_train.sh"), str(TINY), "two"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "GPUS" in run.stderr
