"""Our STARK equals the official network on the reference inputs: every intermediate and output
within 1e-4 (DEVELOPERS standard; in practice bit-identical)."""

import numpy as np
import pytest
import torch

from stark_ros.core.geometry import normalize_patch
from stark_ros.model import load_checkpoint
from stark_ros.tracking.settings import IMAGENET_MEAN, IMAGENET_STD

TOLERANCE = 1e-4


def run_reference_inputs(model, ref, with_dynamic_template: bool):
    def tokens(img_key, mask_key):
        return model.forward_backbone(torch.from_numpy(ref[img_key]), torch.from_numpy(ref[mask_key][None]))

    with torch.no_grad():
        template = tokens("template_img", "template_mask")
        search = tokens("search_img", "search_mask")
        templates = [template] + ([tokens("dtemplate_img", "dtemplate_mask")] if with_dynamic_template else [])
        return template, search, model.forward_head(templates, search)


@pytest.mark.parametrize("variant", ["S50", "ST50", "ST101"])
def test_network_matches_official(variant, official_checkpoint, stark_reference):
    model, cfg = load_checkpoint(official_checkpoint(variant))
    assert cfg.variant == variant  # inferred from the weights alone
    ref = np.load(stark_reference / f"model_io_{variant}.npz")
    template, search, out = run_reference_inputs(model, ref, cfg.score_head)
    for name, ours, theirs in [
        ("template_feat", template["feat"], ref["template_feat"]),
        ("template_pos", template["pos"], ref["template_pos"]),
        ("template_feat_mask", template["mask"], ref["template_feat_mask"]),
        ("search_feat", search["feat"], ref["search_feat"]),
        ("search_pos", search["pos"], ref["search_pos"]),
        ("search_feat_mask", search["mask"], ref["search_feat_mask"]),
        ("pred_boxes", out["pred_boxes"], ref["pred_boxes"]),
    ]:
        ours = ours.numpy()
        assert ours.shape == theirs.shape, name
        np.testing.assert_allclose(ours, theirs.astype(np.float32), atol=TOLERANCE, rtol=0, err_msg=name)
    if cfg.score_head:
        np.testing.assert_allclose(out["pred_logits"].numpy(), ref["pred_logits"], atol=TOLERANCE, rtol=0)
    else:
        assert out["pred_logits"] is None


@pytest.mark.parametrize("prefix", ["template", "dtemplate", "search"])
def test_normalisation_matches_reference_inputs(prefix, stark_reference):
    ref = np.load(stark_reference / "model_io_ST50.npz")
    ours = normalize_patch(ref[f"{prefix}_patch"], IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(ours, ref[f"{prefix}_img"], atol=1e-6, rtol=0)
