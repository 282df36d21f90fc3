"""scripts/bench_tf.py's statistics: per-round steady means, the median round as the headline."""

import pytest

from scripts import bench_tf


def _run(seconds, loss=250.0):
    return {"seconds": seconds, "n_train": 60000, "test": {"loss": loss}, "peak_rss_mib": 1000.0}


def test_summary_takes_the_median_round_of_steady_epochs():
    # first epochs (compile) are large and must not count; round means 5, 4, 9 -> median round 5
    rows = {"reference": bench_tf.summarize([_run([20, 5, 5]), _run([20, 3, 5]), _run([20, 9, 9])]),
            "ours": bench_tf.summarize([_run([30, 2, 3]), _run([30, 2, 2]), _run([30, 4, 4])])}
    assert rows["reference"]["round_steady_s_per_epoch"] == [5, 4, 9]
    assert rows["reference"]["steady_s_per_epoch"] == 5
    assert rows["ours"]["steady_s_per_epoch"] == 2.5
    assert rows["ours"]["images_per_s"] == 60000 / 2.5
    assert rows["reference"]["first_epoch_overhead_s"] == 15
    s = bench_tf.speedups(rows)
    assert s["median_round"] == 2.0
    assert s["per_round"] == pytest.approx([2.0, 2.0, 2.25])
    assert s["mean_epoch"] == pytest.approx((36 / 6) / (17 / 6))
    assert s["median_epoch"] == pytest.approx(5 / 2.5)


def test_a_one_epoch_run_uses_its_only_epoch():
    summary = bench_tf.summarize([_run([7.0])])
    assert summary["steady_s_per_epoch"] == 7.0 and summary["first_epoch_overhead_s"] == 0.0
