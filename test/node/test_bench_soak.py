"""The soak benchmark's per-window table, from recorded publish/arrival times and samples (no ROS)."""

import math

from stark_ros.bench.soak import windows

NS = 1_000_000_000
MS = 1_000_000


def test_windows_bucket_by_publish_time_and_take_the_last_sample():
    published = {f"k{i}": i * NS // 2 for i in range(8)}            # 2 frames/s for 4 s
    arrived = {f"k{i}": i * NS // 2 + (10 + i) * MS for i in range(8) if i != 5}
    samples = [{"t_ns": 1 * NS, "rss_mb": 100.0, "frames_dropped": "0"},
               {"t_ns": 3 * NS, "rss_mb": 110.0, "frames_dropped": "1", "frames_skipped_by_reason": "degenerate=1"}]
    rows = windows({"published_ns": published, "arrived_ns": arrived, "samples": samples}, window_s=2.0)
    assert [r["published"] for r in rows] == [4, 4]
    assert [r["tracked"] for r in rows] == [4, 3]
    assert rows[0]["rss_mb"] == 100.0 and rows[1]["rss_mb"] == 110.0
    assert rows[1]["dropped"] == 1 and rows[1]["skipped"] == "degenerate=1"
    assert math.isclose(rows[0]["p50_ms"], 11.5)


def test_no_frames_no_rows():
    assert windows({"published_ns": {}, "arrived_ns": {}, "samples": []}, 1.0) == []
