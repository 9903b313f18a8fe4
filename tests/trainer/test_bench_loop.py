"""bench/loop.py helpers: the CPU peak-memory measurement and the multi-seed summary."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _loop_quality import quality_table, summarize_seeds  # noqa: E402
from loop import PeakRSS  # noqa: E402


def test_peak_rss_sees_a_freed_allocation():
    with PeakRSS() as m:
        t = torch.ones(16 * 2**20)  # 64 MiB, written (resident), then freed
        del t
    assert 60 < m.mib < 200, m.method
    with PeakRSS() as quiet:
        np.zeros(10)
    assert quiet.mib < 30


def test_seeds_mean_and_sample_std_by_hand():
    runs = [
        [dict(fraction=0.0, corrected=0, mAP=0.9, cam=0.5, crf=0.6),
         dict(fraction=0.2, corrected=10, mAP=0.8, cam=0.6, crf=0.7)],
        [dict(fraction=0.0, corrected=0, mAP=0.7, cam=0.3, crf=0.4),
         dict(fraction=0.2, corrected=10, mAP=0.8, cam=0.8, crf=0.9)],
    ]
    rows = summarize_seeds(runs)
    # two values a, b: mean (a + b) / 2, sample std |a - b| / sqrt(2)
    assert rows[0]["mAP"] == pytest.approx(0.8) and rows[0]["mAP_std"] == pytest.approx(0.2 / 2**0.5)
    assert rows[1]["mAP_std"] == 0.0 and rows[1]["cam"] == pytest.approx(0.7)
    assert rows[1]["seeds"] == 2 and rows[1]["corrected"] == 10
    assert quality_table(rows).splitlines()[2:] == [
        "| image labels only | 0 | 80.0 ± 14.1 | 40.0 ± 14.1 | 50.0 ± 14.1 |",
        "| + corrections on 20 % | 10 | 80.0 ± 0.0 | 70.0 ± 14.1 | 80.0 ± 14.1 |",
    ]
    assert quality_table(runs[0]).splitlines()[2] == "| image labels only | 0 | 90.0 | 50.0 | 60.0 |"
    with pytest.raises(ValueError, match=r"run 1 has fractions \[0.0\], expected \[0.0, 0.2\]"):
        summarize_seeds([runs[0], runs[1][:1]])
