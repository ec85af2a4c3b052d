"""Bags: write a shared sequence, read it back, replay it through the live node, and score it the
same as the offline run of the runtime on the same frames. Bad bags give clear errors."""

import numpy as np
import pytest

from stark_ros.bag import BagError, read_bag, write_sequence_bag
from stark_ros.datasets import load_simple_sequence

pytest.importorskip("rclpy", reason="replay needs rclpy (run the tests through `make test`)")

SEQ = "otb_crossing"


@pytest.fixture(scope="module")
def short_seq(shared, tmp_path_factory):
    """The first 30 frames of a shared sequence, in the simple layout (a bag per test stays small)."""
    import shutil

    src = shared / "data" / "sot" / SEQ
    dst = tmp_path_factory.mktemp("seq") / SEQ
    (dst / "img").mkdir(parents=True)
    for p in sorted((src / "img").glob("*.jpg"))[:30]:
        shutil.copy(p, dst / "img" / p.name)
    lines = (src / "groundtruth.txt").read_text().splitlines()[:30]
    (dst / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    return dst


@pytest.mark.parametrize("compressed, storage", [(False, "mcap"), (True, "sqlite3")])
def test_write_and_read_back(short_seq, tmp_path, compressed, storage):
    bag = write_sequence_bag(short_seq, tmp_path / "bag", compressed=compressed, storage=storage)
    contents = read_bag(bag)
    seq = load_simple_sequence(short_seq)
    assert len(contents.frames) == len(seq) and len(contents.targets) == 1
    assert contents.image_type.endswith("CompressedImage" if compressed else "Image")
    gt = np.array([contents.ground_truth[k] for k in sorted(contents.ground_truth)])
    np.testing.assert_allclose(gt, seq.boxes, atol=1e-9)


def test_replay_equals_offline_runtime(short_seq, tmp_path, untrained_lite_model):
    from stark_ros.bag.replay import replay
    from stark_ros.evaluation.metrics import sequence_metrics
    from stark_ros.runtime import RuntimeOptions, StarkRuntime

    bag = write_sequence_bag(short_seq, tmp_path / "bag", rate_hz=5.0)
    result = replay(bag, tmp_path / "out", model=untrained_lite_model, rate=1.0,
                    extra_params={"intra_op_threads": 1, "queue_size": 30})
    assert (tmp_path / "out" / "tracks_bag").is_dir() and (tmp_path / "out" / "replay.json").is_file()
    for report in ("report.md", "report.json", "success.png", "precision.png"):
        assert (tmp_path / "out" / report).is_file(), report
    assert any(e["type"] == 0 for e in result.events)   # INITIALIZED
    seq = load_simple_sequence(short_seq)
    rt = StarkRuntime(untrained_lite_model, RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=1))
    rt.add_target(seq.frame(0), seq.boxes[0], "target")
    offline = [seq.boxes[0]] + [rt.update(seq.frame(i))[0].box for i in range(1, len(seq))]
    from stark_ros.core.stamps import stamp_ns

    frame_index = {stamp_ns(m.header.stamp): i for i, (_, m) in enumerate(read_bag(bag).frames)}
    tracked = sorted(result.tracks)
    assert len(tracked) >= len(seq) - 3 and result.dropped <= 3, (len(tracked), result.dropped)
    idx = [frame_index[s] for s in tracked]
    # Every frame the node tracked has the offline runtime's box; a frame it dropped is just absent.
    for s, i in zip(tracked, idx, strict=True):
        np.testing.assert_allclose(result.tracks[s], offline[i], atol=1e-3)
    offline_m = sequence_metrics(np.array([offline[i] for i in idx]), seq.boxes[idx]).as_dict()
    assert result.metrics["success_auc"] == pytest.approx(offline_m["success_auc"], abs=1e-6)
    assert result.latency_ms["p50"] > 0


def test_bad_bags(short_seq, tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        read_bag(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not: [a, bag")
    with pytest.raises(BagError, match="not a readable ROS 2 bag"):
        read_bag(broken)
    bag = write_sequence_bag(short_seq, tmp_path / "ok")
    with pytest.raises(BagError, match="no topic '/left/image'"):
        read_bag(bag, image_topic="/left/image")
    with pytest.raises(BagError, match="already exists"):
        write_sequence_bag(short_seq, bag)
    bad_seq = tmp_path / "short_gt"
    (bad_seq / "img").mkdir(parents=True)
    for p in sorted((short_seq / "img").glob("*.jpg"))[:3]:
        (bad_seq / "img" / p.name).write_bytes(p.read_bytes())
    (bad_seq / "groundtruth.txt").write_text("1,2,3,4\n")
    with pytest.raises(ValueError, match="ground-truth boxes for 3 frames"):
        write_sequence_bag(bad_seq, tmp_path / "never")
    assert not (tmp_path / "never").exists() and not (tmp_path / "never.partial").exists()
