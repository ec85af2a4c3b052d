"""``python -m stark_ros.bench model`` runs end to end and reports sane figures (no timing assertions:
speed is measured by the benchmark itself, not judged by tests)."""

import json
import math

import pytest
import torch

from stark_ros.bench import model as bench_model


def test_model_benchmark_reports_every_thread_count(tmp_path, capsys):
    out = tmp_path / "bench.json"
    threads_before = torch.get_num_threads()
    # LITE is the only variant cheap enough for a test; one step, one round.
    assert bench_model.main(["--variants", "lite", "--threads", "1", "2", "--steps", "1", "--rounds", "1",
                             "--json", str(out)]) == 0
    assert torch.get_num_threads() == threads_before   # the benchmark leaves the process as it found it
    (result,) = json.loads(out.read_text())
    assert result["variant"] == "LITE"
    assert result["tokens"] == 2 * 8 * 8 + 16 * 16   # two 128 px templates + one 256 px search crop
    for n in ("1", "2"):
        figures = result["threads"][n]
        assert math.isfinite(figures["fps"]) and figures["fps"] > 0
        assert figures["step_s"] == pytest.approx(figures["backbone_s"] + figures["head_s"])
    table = capsys.readouterr().out
    assert "LITE" in table and "2T/1T" in table


@pytest.mark.parametrize("argv", [["--variants", "ST999"], ["--threads", "0"], ["--steps", "0"]])
def test_model_benchmark_refuses_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_model.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
