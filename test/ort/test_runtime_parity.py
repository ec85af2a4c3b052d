"""The ONNX Runtime tracker reproduces the official tracker like the PyTorch one does (teacher
forcing, boxes within 0.01 px, scores within 1e-4), and batches targets without changing them."""

import numpy as np
import pytest

from stark_ros.datasets import load_simple_sequence
from stark_ros.runtime import RuntimeOptions, StarkRuntime
from stark_ros.tracking.lost import NEVER_LOST

FRAMES = 22  # two dynamic-template updates at the reference interval (see test_reference_tracker)
REFERENCE_UPDATE_INTERVAL = 10
BOX_TOLERANCE_PX = 0.01
SCORE_TOLERANCE = 1e-4


@pytest.mark.parametrize("variant", ["ST50", "S50"])
@pytest.mark.parametrize("sequence", ["otb_crossing", "vot_bag"])
def test_runtime_matches_official_tracker(variant, sequence, exported_model, shared, stark_reference):
    # The official tracker has no lost logic: never declare a target lost here.
    rt = StarkRuntime(exported_model(variant), RuntimeOptions(providers=("CPUExecutionProvider",)),
                      NEVER_LOST, update_interval=REFERENCE_UPDATE_INTERVAL)
    seq = load_simple_sequence(shared / "data" / "sot" / sequence)
    expected = np.genfromtxt(stark_reference / f"track_{variant}_{sequence}.txt", delimiter=",")
    tid = rt.add_target(seq.frame(0), seq.boxes[0])
    for i in range(1, FRAMES):
        rt.set_box(tid, seq.boxes[i - 1])
        (result,) = rt.update(seq.frame(i))
        np.testing.assert_allclose(result.box, expected[i, :4], atol=BOX_TOLERANCE_PX, rtol=0, err_msg=f"frame {i}")
        if variant == "S50":
            assert np.isnan(result.score)
        else:
            assert abs(result.score - expected[i, 4]) <= SCORE_TOLERANCE, f"frame {i}"


def test_batched_targets_equal_single_targets(exported_model, shared):
    seq = load_simple_sequence(shared / "data" / "sot" / "otb_crossing")
    opts = RuntimeOptions(providers=("CPUExecutionProvider",), warmup=False)
    boxes = [seq.boxes[0], seq.boxes[0] + np.array([40.0, 10.0, 5.0, 0.0]), np.array([10.0, 10.0, 30.0, 30.0])]
    batched = StarkRuntime(exported_model("ST50"), opts)
    for k, box in enumerate(boxes):
        batched.add_target(seq.frame(0), box, target_id=f"t{k}")
    together = [batched.update(seq.frame(i)) for i in range(1, 4)]
    for k, box in enumerate(boxes):
        alone = StarkRuntime(exported_model("ST50"), opts)
        alone.add_target(seq.frame(0), box, target_id=f"t{k}")
        for i in range(1, 4):
            (single,) = alone.update(seq.frame(i))
            mine = together[i - 1][k]
            assert mine.target_id == f"t{k}"
            np.testing.assert_allclose(mine.box, single.box, atol=1e-3)
            assert abs(mine.score - single.score) < 1e-5
