"""`bench runtime --providers` runs without torch on any provider (the CPU here; CUDA in
scripts/gpu_check.sh) and reports what it measured, the nodes each provider ran, and the box
difference against the CPU."""

import json

from stark_ros.bench.runtime import main


def test_provider_benchmark_on_the_cpu(tmp_path, capsys, shared):
    out = tmp_path / "rows.json"
    assert main(["--providers", "cpu", "--precisions", "fp32", "fp16", "--targets", "1", "2", "--frames", "2",
                 "--rounds", "1", "--threads", "1", "--sequences", "otb_crossing", "--data",
                 str(shared / "data" / "sot"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [r["precision"] for r in rows] == ["fp32", "fp16"]
    for row in rows:
        assert not row["error"]
        assert set(row["net_ms"]) == set(row["tracker_ms"]) == {"1", "2"}
        assert all(v > 0 for v in [*row["net_ms"].values(), *row["tracker_ms"].values()])
        # The CPU against itself, and fp16 on the CPU computes float32: the same boxes.
        assert row["max_box_diff_px"] == {"otb_crossing": 0.0}
        assert row["auc"] == row["cpu_auc"]
        assert set(row["active"]["track"]) == {"CPUExecutionProvider"}
        assert row["active"]["crops"] == {"host (numpy/OpenCV)": 1}
        assert row["active"]["track"]["CPUExecutionProvider"] > 0
    assert "default    cpu       fp32" in printed and "nodes run per provider" in printed
