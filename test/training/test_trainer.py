"""The trainer on real shared sequences: it learns, resumes exactly, stage 2 touches only the score
head, and its checkpoints track (DDP: see test_train.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from stark_ros.model import load_checkpoint
from stark_ros.training.config import load_config
from stark_ros.training.trainer import LATEST, Trainer

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
MICRO = CONFIGS / "micro.yaml"
LEARN_STEPS = 40
WINDOW = 5


def micro(tmp_path, *options):
    return load_config(MICRO, [f"work_dir={tmp_path}", "threads=1", "data.num_workers=0", *options])


def params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_micro_training_learns(tmp_path):
    history = Trainer(micro(tmp_path, "epochs=100")).train(max_steps=LEARN_STEPS, progress=False)
    loss = [h["loss"] for h in history]
    iou = [h["iou"] for h in history]
    assert np.mean(loss[-WINDOW:]) < 0.8 * np.mean(loss[:WINDOW]), loss
    assert np.mean(iou[-WINDOW:]) > np.mean(iou[:WINDOW]) + 0.15, iou


def test_interrupt_and_resume_equals_one_run(tmp_path):
    straight = Trainer(micro(tmp_path / "a"))
    straight.train(max_steps=6, progress=False)
    first = Trainer(micro(tmp_path / "b"))
    first.train(max_steps=3, progress=False)
    resumed = Trainer(micro(tmp_path / "b"))  # a new process would do exactly this
    assert resumed.step_in_epoch == 3
    resumed.train(max_steps=3, progress=False)
    a, b = params(straight.model), params(resumed.model)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_stage_two_changes_only_the_score_head(tmp_path):
    stage1 = Trainer(micro(tmp_path / "s1"))
    stage1.train(max_steps=2, progress=False)
    ckpt = Path(stage1.work_dir) / LATEST
    stage2 = Trainer(micro(tmp_path / "s2", "stage=2", f"load_from={ckpt}", "data.negative_prob=0.5"))
    before = params(stage2.model)
    history = stage2.train(max_steps=3, progress=False)
    assert "bce" in history[0]
    after = params(stage2.model)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed and all(k.startswith("score_head.") for k in changed), changed


def test_stage_two_with_the_transformer_keeps_the_box_branch_frozen(tmp_path):
    stage1 = Trainer(micro(tmp_path / "s1"))
    stage1.train(max_steps=2, progress=False)
    ckpt = Path(stage1.work_dir) / LATEST
    stage2 = Trainer(micro(tmp_path / "s2", "stage=2", f"load_from={ckpt}", "data.negative_prob=0.5",
                           "stage2_modules=[transformer]"))
    before = params(stage2.model)
    history = stage2.train(max_steps=3, progress=False)
    assert "bce" in history[0] and "giou" in history[0]
    after = params(stage2.model)
    changed = {k.split(".", 1)[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"score_head", "transformer"}, changed


@pytest.mark.parametrize("module", ["box_head", "no_such_module"])
def test_stage_two_refuses_modules_it_must_not_train(tmp_path, module):
    with pytest.raises(ValueError, match="stage2_modules"):
        Trainer(micro(tmp_path, "stage=2", f"stage2_modules=[{module}]"))


def test_checkpoints_load_export_and_track(tmp_path, shared):
    from stark_ros.datasets import load_simple_sequence
    from stark_ros.export import export_checkpoint
    from stark_ros.runtime import RuntimeOptions, StarkRuntime

    trainer = Trainer(micro(tmp_path))
    trainer.train(max_steps=1, progress=False)
    path = Path(trainer.work_dir) / LATEST
    _, cfg = load_checkpoint(path)
    assert cfg.tracker.search_size == 128 and cfg.enc_layers == 1
    export_checkpoint(path, tmp_path / "onnx")
    rt = StarkRuntime(tmp_path / "onnx", RuntimeOptions(providers=("CPUExecutionProvider",), warmup=False))
    seq = load_simple_sequence(shared / "data" / "sot" / "otb_crossing")
    rt.add_target(seq.frame(0), seq.boxes[0])
    for i in range(1, 4):
        (r,) = rt.update(seq.frame(i))
        assert np.all(np.isfinite(r.box)) and 0.0 <= r.score <= 1.0


# DDP (two processes, gloo): test_train.py::test_ddp_two_processes_match_each_other_and_one_process_with_the_same_batch
# runs it through training/dist_train.sh (torchrun). mp.spawn children cannot import this module here
# (pytest's importlib mode, PYTHONSAFEPATH), so it is not repeated in this file.


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(MICRO, ["optim.learning_rate=1"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")
    cfg = load_config(MICRO, ["optim.lr=5e-5", "data.sources=[{kind: simple, root: data/sot}]"])
    assert cfg.optim.lr == 5e-5 and cfg.data.sources[0].root == "data/sot"
