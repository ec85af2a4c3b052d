"""Export to ONNX, run ONNX Runtime, assert parity with PyTorch and the official network; fail hard."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import stark_ros
from stark_ros.export import OPSET
from stark_ros.tracking import model_metadata as md

TOLERANCE = 1e-4


@pytest.mark.parametrize("variant", ["S50", "ST50", "ST101"])
def test_onnx_matches_official_outputs(variant, exported_model, stark_reference):
    import onnxruntime as ort

    folder = exported_model(variant)
    ref = np.load(stark_reference / f"model_io_{variant}.npz")
    template = ort.InferenceSession(str(folder / md.TEMPLATE_FILE), providers=["CPUExecutionProvider"])
    track = ort.InferenceSession(str(folder / md.TRACK_FILE), providers=["CPUExecutionProvider"])

    def tokens(img, mask):
        return template.run(None, {md.IN_IMAGE: ref[img], md.IN_MASK: ref[mask][None].astype(np.float32)})

    feat, mask, pos = tokens("template_img", "template_mask")
    np.testing.assert_allclose(feat[0], ref["template_feat"][:, 0], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(pos[0], ref["template_pos"][:, 0], atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(mask, ref["template_feat_mask"].astype(np.float32))
    feeds = dict(zip(md.token_input_names("template_"), (feat, mask, pos), strict=True))
    if variant != "S50":
        feeds.update(zip(md.token_input_names("dtemplate_"), tokens("dtemplate_img", "dtemplate_mask"), strict=True))
    feeds[md.IN_SEARCH_IMAGE] = ref["search_img"]
    feeds[md.IN_SEARCH_MASK] = ref["search_mask"][None].astype(np.float32)
    out = track.run(None, feeds)
    np.testing.assert_allclose(out[0], ref["pred_boxes"][0], atol=TOLERANCE, rtol=0)
    if variant != "S50":
        np.testing.assert_allclose(out[1], ref["pred_logits"][0], atol=TOLERANCE, rtol=0)
    else:
        assert len(out) == 1


@pytest.mark.parametrize("variant", ["S50", "ST50"])
def test_graphs_are_tensorrt_friendly_and_self_describing(variant, exported_model):
    for name, graph in ((md.TEMPLATE_FILE, md.GRAPH_TEMPLATE), (md.TRACK_FILE, md.GRAPH_TRACK)):
        proto = onnx.load(str(exported_model(variant) / name))
        onnx.checker.check_model(proto, full_check=True)
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
        inferred = onnx.shape_inference.infer_shapes(proto)
        tensors = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
        assert not [t.name for t in tensors if t.type.tensor_type.elem_type == onnx.TensorProto.BOOL]
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta[md.KEY_GRAPH] == graph and meta[md.KEY_VARIANT] == variant
        assert meta[md.KEY_EXPORTER_VERSION] == stark_ros.__version__
        assert len(meta[md.KEY_SOURCE_SHA256]) == 64
        settings = json.loads(meta[md.KEY_SETTINGS])
        assert settings["search_size"] == 320 and settings["template_factor"] == 2.0
        assert settings["num_dynamic_templates"] == (0 if variant == "S50" else 1)
        batch_dims = [i.type.tensor_type.shape.dim[0].dim_param for i in proto.graph.input]
        assert batch_dims == ["batch"] * len(batch_dims)


def test_export_cli(official_checkpoint, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "stark_ros.export", str(official_checkpoint("S50")), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / md.TEMPLATE_FILE).is_file() and (out / md.TRACK_FILE).is_file()
    bad = subprocess.run([sys.executable, "-m", "stark_ros.export", str(tmp_path / "missing.pth"), "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such checkpoint file" in bad.stderr


def test_export_leaves_the_model_as_it_was(tmp_path):
    """Exporting must not switch the caller's model to training mode (its BatchNorm layers would then
    use, and update, batch statistics, and every later PyTorch result would be wrong) nor change its
    config."""
    import torch

    from stark_ros.export import export_model
    from stark_ros.model import build_model, get_preset

    torch.manual_seed(0)
    model = build_model(get_preset("LITE")).eval()
    crops = (torch.randn(1, 3, 128, 128), torch.zeros(1, 128, 128), torch.randn(1, 3, 256, 256),
             torch.zeros(1, 256, 256))

    def boxes():
        with torch.no_grad():
            template = model.forward_backbone(*crops[:2])
            return model.forward_head([template, template], model.forward_backbone(*crops[2:]))["pred_boxes"]

    before, config = boxes(), model.config
    export_model(model, tmp_path, source_sha256="mode-check", score_source="appearance")
    assert not any(m.training for m in model.modules())
    assert model.config == config       # the score source went into the files, not into the model
    torch.testing.assert_close(boxes(), before, rtol=0, atol=0)
