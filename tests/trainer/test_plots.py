"""Loss-curve plots: COCO's -1 ("no objects of this size") is not plotted as a value."""

from __future__ import annotations

from trainer.plots import drop_coco_sentinels, plot_loss_curves


def test_coco_sentinels_are_dropped_and_real_values_kept():
    series = {
        "val/map": [(0.0, 0.1), (1.0, 0.3)],
        "val/map_small": [(0.0, -1.0), (1.0, -1.0)],  # no small objects at all: the series goes
        "val/mar_large": [(0.0, -1.0), (1.0, 0.4)],
        "val/score": [(0.0, -1.0)],  # not a COCO metric: -1 is a value (e.g. R2)
    }
    assert drop_coco_sentinels(series) == {
        "val/map": [(0.0, 0.1), (1.0, 0.3)], "val/mar_large": [(1.0, 0.4)], "val/score": [(0.0, -1.0)],
    }


def test_plot_is_written_from_a_detection_log(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,step,train/loss_epoch,val/loss,val/map,val/map_small\n0,3,2.0,2.1,0.1,-1\n1,7,1.5,1.6,0.3,-1\n"
    )
    out = plot_loss_curves(tmp_path, tmp_path / "plots" / "loss_curves.png")
    assert out is not None and out.stat().st_size > 10_000
