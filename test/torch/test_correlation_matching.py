"""Correlation matching (``ModelConfig.matching``, the default model's form): what it feeds the
transformer, its export to ONNX, and the runtime on that export against the PyTorch tracker."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from stark_ros.datasets import load_simple_sequence
from stark_ros.export import export_model
from stark_ros.model import ReferenceTracker, build_model, get_preset
from stark_ros.model.config import MATCHING_CORRELATION
from stark_ros.runtime import RuntimeOptions, StarkRuntime
from stark_ros.tracking import model_metadata as md

TOLERANCE = 1e-4
BOX_TOLERANCE_PX = 0.01
SEED = 3
SEQUENCE = "vot2014_car"
FRAMES = 6


def correlation_model():
    torch.manual_seed(SEED)
    return build_model(get_preset("LITE", matching=MATCHING_CORRELATION)).eval()


def test_initial_similarities_are_the_backbone_features_cosines():
    """The bottleneck starts with orthonormal columns, so before training the transformer reads the
    cosine similarities of the ImageNet features themselves (the untrained matcher's)."""
    model = correlation_model()
    backbone_feat = torch.randn(1, model.backbone.out_channels, 4, 4)
    tokens = model.tokens_from_features(backbone_feat, torch.zeros(1, 4, 4))["feat"][:, 0]
    raw = backbone_feat.flatten(2)[0].T
    torch.testing.assert_close(F.normalize(tokens, dim=-1) @ F.normalize(tokens, dim=-1).T,
                               F.normalize(raw, dim=-1) @ F.normalize(raw, dim=-1).T, atol=1e-5, rtol=0)


def test_template_padding_gives_zero_similarity():
    model = correlation_model()
    t = model.tokens_from_features(torch.randn(1, model.backbone.out_channels, 8, 8), torch.zeros(1, 8, 8))
    s = model.tokens_from_features(torch.randn(1, model.backbone.out_channels, 16, 16), torch.zeros(1, 16, 16))
    padded = dict(t, mask=torch.ones_like(t["mask"]))
    corr = model._correlation([t, padded], s)
    assert corr.shape == (256, 1, 2 * 64)
    assert corr[..., 64:].abs().max() == 0 and corr[..., :64].abs().max() > 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = correlation_model()
    folder = tmp_path_factory.mktemp("corr")
    export_model(model, folder, source_sha256="correlation-test", score_source="appearance")
    return model, folder


def test_export_matches_pytorch_and_reads_no_template_positions(exported):
    import onnxruntime as ort

    model, folder = exported
    proto = onnx.load(str(folder / md.TRACK_FILE))
    inputs = {i.name for i in proto.graph.input}
    # Content alone is compared: the graph has no position inputs for the templates.
    assert not inputs & {md.token_input_names(p)[2] for p in md.TEMPLATE_INPUT_PREFIXES}
    torch.manual_seed(SEED + 1)
    t_img, s_img = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 256, 256)
    t_mask, s_mask = torch.zeros(1, 128, 128), torch.zeros(1, 256, 256)
    s_mask[:, :, 200:] = 1.0
    with torch.no_grad():
        template = model.forward_backbone(t_img, t_mask)
        expected = model.forward_head([template, template], model.forward_backbone(s_img, s_mask))
    sessions = [ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"])
                for f in (md.TEMPLATE_FILE, md.TRACK_FILE)]
    feat, mask, _ = sessions[0].run(None, {md.IN_IMAGE: t_img.numpy(), md.IN_MASK: t_mask.numpy()})
    feeds = {md.IN_SEARCH_IMAGE: s_img.numpy(), md.IN_SEARCH_MASK: s_mask.numpy()}
    for prefix in md.TEMPLATE_INPUT_PREFIXES[:2]:
        feeds.update(zip(md.token_input_names(prefix)[:2], (feat, mask), strict=True))
    boxes = sessions[1].run(None, feeds)[0]
    np.testing.assert_allclose(boxes, expected["pred_boxes"][:, 0].numpy(), atol=TOLERANCE, rtol=0)


def test_runtime_tracks_like_the_pytorch_tracker(exported, shared):
    """The policy on both engines, on a real sequence: the same boxes frame after frame."""
    model, folder = exported
    seq = load_simple_sequence(shared / "data" / "sot" / SEQUENCE)
    runtime = StarkRuntime(folder, RuntimeOptions(providers=("CPUExecutionProvider",), warmup=False))
    # The export says score_source: appearance; the checkpoint's config does not know it.
    reference = ReferenceTracker(model, runtime.lost_settings, score_source=runtime.settings.score_source)
    assert reference.settings == runtime.settings
    first = seq.frame(0)
    for policy in (runtime, reference):
        policy.add_target(first, seq.boxes[0], target_id="t")
    for i in range(1, FRAMES):
        frame = seq.frame(i)
        (ort_result,), (torch_result,) = runtime.update(frame), reference.update(frame)
        np.testing.assert_allclose(ort_result.box, torch_result.box, atol=BOX_TOLERANCE_PX, rtol=0)
        assert ort_result.state is torch_result.state
