"""``python -m stark_ros.bench runtime`` runs end to end through the library's public API and reports
its figures against ONNX Runtime's own MatMul peak (no timing assertions: speed is the benchmark's
to measure, not the tests' to judge)."""

import json
import math

from stark_ros.bench import runtime as bench_runtime

# The two engines on the same crop: the export's parity tolerance.
BOX_TOLERANCE = 1e-4


def test_runtime_benchmark_reports_both_engines_against_the_matmul_peak(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # LITE is the only variant cheap enough for a test; two frames, one round.
    assert bench_runtime.main(["--variants", "LITE", "--frames", "2", "--rounds", "1", "--threads", "1",
                               "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    (result,) = figures["results"]
    assert math.isfinite(result["peak_gflops"]) and result["peak_gflops"] > 0
    assert result["variant"] == "LITE" and result["max_box_diff"] < BOX_TOLERANCE
    for key in ("torch_net_ms", "ort_net_ms", "torch_tracker_ms", "ort_tracker_ms"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert sorted(result["targets_ms"]) == [str(n) for n in bench_runtime.TARGET_COUNTS]
    table = capsys.readouterr().out
    assert "ONNX Runtime's own float32 MatMul" in table and "LITE" in table
