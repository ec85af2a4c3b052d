"""One loader for official, mmtracking and our own checkpoints; clear errors for everything else."""

import pickle

import numpy as np
import pytest
import torch

from stark_ros.model import (
    CheckpointError,
    load_checkpoint,
    ours_to_mmtracking,
    ours_to_official,
    save_checkpoint,
)
from stark_ros.model.checkpoint import detect_layout


def outputs(model, ref):
    with torch.no_grad():
        t, d, s = (model.forward_backbone(torch.from_numpy(ref[f"{crop}_img"]),
                                          torch.from_numpy(ref[f"{crop}_mask"][None]))
                   for crop in ("template", "dtemplate", "search"))
        out = model.forward_head([t, d], s)
    return out["pred_boxes"].numpy(), out["pred_logits"].numpy()


@pytest.fixture(scope="module")
def st50(official_checkpoint):
    return load_checkpoint(official_checkpoint("ST50"))


def test_mmtracking_layout_round_trip(st50, stark_reference, tmp_path):
    model, _ = st50
    mm_state = ours_to_mmtracking(model.state_dict())
    assert "head.query_embedding.weight" in mm_state
    assert "neck.convs.0.conv.weight" in mm_state
    assert "head.transformer.encoder.layers.0.attentions.0.attn.in_proj_weight" in mm_state
    assert "head.transformer.decoder.layers.5.attentions.1.attn.out_proj.bias" in mm_state
    assert "head.transformer.decoder.post_norm.weight" in mm_state
    assert "head.bbox_head.tl_corner_pred.0.conv.weight" in mm_state
    assert "head.bbox_head.br_corner_pred.4.weight" in mm_state
    assert "head.cls_head.layers.2.weight" in mm_state
    path = tmp_path / "stark_st2_r50_50e_lasot.pth"
    torch.save({"state_dict": mm_state, "meta": {"epoch": 50}}, path)
    loaded, cfg = load_checkpoint(path)
    assert cfg.variant == "ST50"
    ref = np.load(stark_reference / "model_io_ST50.npz")
    for a, b in zip(outputs(model, ref), outputs(loaded, ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_own_checkpoint_is_self_describing(st50, stark_reference, tmp_path):
    model, cfg = st50
    path = save_checkpoint(tmp_path / "ours.pth", model, epoch=3)
    loaded, loaded_cfg = load_checkpoint(path)
    assert loaded_cfg == cfg
    ref = np.load(stark_reference / "model_io_ST50.npz")
    for a, b in zip(outputs(model, ref), outputs(loaded, ref), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError, match="holds a ST50 model, not S50"):
        load_checkpoint(path, variant="S50")


def test_released_s50_net_type_loads(official_checkpoint):
    _, cfg = load_checkpoint(official_checkpoint("S50", net_type="LittleBoy_clean_corner"))
    assert cfg.variant == "S50" and not cfg.score_head


def test_s50_weights_as_st50_name_the_missing_score_head(official_checkpoint):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(official_checkpoint("S50"), variant="ST50")
    assert "missing keys (6)" in str(err.value)
    assert "score_head.layers.0.weight" in str(err.value)


def test_mis_shaped_and_unexpected_keys_are_listed(st50, tmp_path):
    model, _ = st50
    state = ours_to_official(model.state_dict())
    state["bottleneck.weight"] = torch.zeros(8, 1024, 1, 1)
    state["extra.thing"] = torch.zeros(1)
    path = tmp_path / "bad.pth.tar"
    torch.save({"net": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "mis-shaped keys (1): bottleneck.weight: file (8, 1024, 1, 1) vs model (256, 1024, 1, 1)" in msg
    assert "unexpected keys (1): extra.thing" in msg


class NotAWeight:
    """Unpickling this would need code: the loader must refuse it."""


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"net": {"x": torch.zeros(1)}, "payload": NotAWeight()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps([1, 2, 3])])
def test_garbage_files_are_refused(content, tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_file_and_unknown_layout(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        detect_layout({"weights": {}})
