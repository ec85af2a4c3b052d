"""The precision setting reaches the providers' options; the float16 twins; the crop graph cuts the
CPU's crops bit for bit and the tracker tracks the same with it. GPU-only checks skip here and run in
scripts/gpu_check.sh on a GPU."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from stark_ros.core.geometry import crop_batch, plan_crop
from stark_ros.datasets import load_simple_sequence
from stark_ros.export.float16 import float16_model
from stark_ros.runtime import RuntimeOptions, StarkRuntime, default_model_dir
from stark_ros.runtime.crops import SHIPPED, CropSession, build_crop_graph
from stark_ros.runtime.session import (
    CPU,
    CUDA,
    PRECISIONS,
    TENSORRT,
    ModelLoadError,
    provider_list,
    provider_options,
)
from stark_ros.tracking import model_metadata as md

HAS_CUDA = CUDA in ort.get_available_providers()
NEEDS_GPU = pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA device (run "
                                                    "scripts/gpu_check.sh on a GPU machine)")
CPU_ONLY = dict(providers=(CPU,), intra_op_threads=1)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# The float16 twin against float32 on real crops: boxes normalised to the crop, logits.
FP16_BOX_TOLERANCE = 0.02
FP16_LOGIT_TOLERANCE = 0.05
TRACK_FRAMES = 12


@pytest.fixture(scope="module")
def crossing(shared):
    return load_simple_sequence(shared / "data" / "sot" / "otb_crossing")


@pytest.mark.parametrize("precision, tf32, trt_fp16", [("fp32", "0", "0"), ("tf32", "1", "0"), ("fp16", "0", "1")])
def test_each_precision_sets_the_provider_options(precision, tf32, trt_fp16):
    options = RuntimeOptions(precision=precision)
    assert provider_options(CUDA, options) == {"use_tf32": tf32}
    assert provider_options(TENSORRT, options)["trt_fp16_enable"] == trt_fp16
    assert provider_options(CPU, options) == {}


def test_exact_float32_leaves_tensorrt_out_and_unknown_settings_are_refused():
    # TensorRT allows TF32 in its engines and ONNX Runtime cannot forbid it: fp32 never asks for it.
    for precision in PRECISIONS:
        chosen = [name for name, _ in provider_list(RuntimeOptions(precision=precision))]
        assert (TENSORRT in chosen) == (precision != "fp32" and TENSORRT in ort.get_available_providers())
        assert chosen[-1] == CPU
    with pytest.raises(ValueError, match="precision"):
        RuntimeOptions(precision="fp64")
    with pytest.raises(ValueError, match="crops"):
        RuntimeOptions(crops="gpu")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_real_sessions_carry_the_setting(precision):
    rt = StarkRuntime(default_model_dir(), RuntimeOptions(precision=precision, warmup=False))
    for graph in (rt.engine.template, rt.engine.track_graph):
        options = graph.session.get_provider_options()
        assert set(options) == set(graph.providers)
        if CUDA in options:
            assert options[CUDA]["use_tf32"] == ("1" if precision == "tf32" else "0")
        # The CPU computes float32 whatever is asked: the float16 twin is for CUDA only.
        assert graph.float16 == (precision == "fp16" and graph.providers[0] == CUDA)


@NEEDS_GPU
@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_sessions_carry_the_setting(precision):
    rt = StarkRuntime(default_model_dir(), RuntimeOptions(providers=(CUDA, CPU), precision=precision))
    assert rt.engine.track_graph.providers[0] == CUDA
    assert rt.engine.track_graph.provider_options[CUDA]["use_tf32"] == ("1" if precision == "tf32" else "0")
    assert rt.engine.track_graph.float16 == (precision == "fp16")
    assert rt.engine.crop_session is not None and rt.engine.crop_session.device == "cuda"


def test_nodes_by_provider_counts_what_ran(crossing):
    rt = StarkRuntime(default_model_dir(), RuntimeOptions(**CPU_ONLY, warmup=False))
    feeds = _track_feeds(rt, crossing.frame(1), crossing.boxes[0])
    every = rt.engine.track_graph.nodes_by_provider(feeds)
    heavy = rt.engine.track_graph.nodes_by_provider(feeds, ("Conv", "MatMul", "Gemm"))
    assert set(every) == set(heavy) == {CPU}
    assert 0 < heavy[CPU] < every[CPU]


def test_fp16_on_the_cpu_tracks_exactly_as_fp32(crossing):
    boxes = {}
    for precision in ("fp32", "fp16"):
        rt = StarkRuntime(default_model_dir(), RuntimeOptions(precision=precision, **CPU_ONLY))
        tid = rt.add_target(crossing.frame(0), crossing.boxes[0])
        boxes[precision] = [rt.update(crossing.frame(i), [tid])[0].box for i in range(1, TRACK_FRAMES)]
    np.testing.assert_array_equal(boxes["fp32"], boxes["fp16"])


def _track_feeds(rt, frame, box):
    s = rt.settings
    template = plan_crop(frame.shape, box, s.template_factor, s.template_size)
    (token,) = rt.engine.encode_templates(*crop_batch(frame, [template], s.mean, s.std))
    search = plan_crop(frame.shape, box, s.search_factor, s.search_size)
    return rt.engine.track_feeds([[token]] * (1 + s.num_dynamic_templates),
                                 *crop_batch(frame, [search], s.mean, s.std))


def test_the_float16_twin_keeps_float32_io_and_tracks_close(crossing):
    model_dir = default_model_dir()
    rt = StarkRuntime(model_dir, RuntimeOptions(**CPU_ONLY, warmup=False))
    fp32 = onnx.load(str(model_dir / md.TRACK_FILE))
    fp16 = float16_model(fp32)
    onnx.checker.check_model(fp16)
    assert [(i.name, i.type.tensor_type.elem_type) for i in fp16.graph.input] == \
        [(i.name, i.type.tensor_type.elem_type) for i in fp32.graph.input]
    assert {o.type.tensor_type.elem_type for o in fp16.graph.output} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    assert not any(t.data_type == onnx.TensorProto.FLOAT for t in fp16.graph.initializer)
    feeds = _track_feeds(rt, crossing.frame(5), crossing.boxes[5])
    want = rt.engine.track_graph.session.run(None, feeds)
    got = ort.InferenceSession(fp16.SerializeToString(), providers=[CPU]).run(None, feeds)
    np.testing.assert_allclose(got[0], want[0], atol=FP16_BOX_TOLERANCE, rtol=0)
    np.testing.assert_allclose(got[1], want[1], atol=FP16_LOGIT_TOLERANCE, rtol=0)


def test_a_missing_float16_graph_is_named_with_the_command_that_writes_it(tmp_path):
    from stark_ros.runtime.session import float16_model_bytes

    with pytest.raises(ModelLoadError, match=r"python -m stark_ros\.export\.float16"):
        float16_model_bytes(tmp_path / md.TRACK_FILE)   # nothing to convert


def test_the_shipped_crop_graph_is_the_one_the_builder_makes():
    assert SHIPPED.read_bytes() == build_crop_graph().SerializeToString(), \
        "stark_ros/runtime/crop.onnx is stale: python -m stark_ros.runtime.crops"


def test_the_crop_graph_cuts_the_cpus_crops_bit_for_bit():
    session = CropSession([(CPU, {})], None, ort.SessionOptions())
    rng = np.random.default_rng(7)
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(16, 500, 2))
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        size = int(rng.choice([16, 32, 64]))
        plans = []
        for _ in range(int(rng.integers(1, 6))):
            w, h = rng.uniform(1, 1.2 * width), rng.uniform(1, 1.2 * height)
            box = (rng.uniform(-w + 1, width - 1), rng.uniform(-h + 1, height - 1), w, h)
            plans.append(plan_crop(frame.shape, box, float(rng.choice([0.5, 2.0, 5.0])), size))
        # One square of exactly twice the output (OpenCV's area filter) and one outside the frame.
        plans.append(plan_crop(frame.shape, (5.0, 5.0, size, size), 2.0, size))
        plans.append(plan_crop(frame.shape, (width + 10.0, 0.0, 8.0, 8.0), 2.0, size))
        want = crop_batch(frame, plans, MEAN, STD)
        got = session.run(frame, plans, MEAN, STD)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_the_tracker_tracks_the_same_with_the_crop_graph(crossing):
    results = {}
    for crops in ("host", "graph"):
        rt = StarkRuntime(default_model_dir(), RuntimeOptions(crops=crops, **CPU_ONLY))
        assert (rt.engine.crop_session is None) == (crops == "host")
        ids = [rt.add_target(crossing.frame(0), crossing.boxes[0] + [dx, 0, 0, 0]) for dx in (0.0, 30.0, -60.0)]
        results[crops] = [[r.box for r in rt.update(crossing.frame(i), ids)] for i in range(1, TRACK_FRAMES)]
    np.testing.assert_array_equal(results["host"], results["graph"])
