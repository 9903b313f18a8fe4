"""Classes image labels cannot localise are named: frequent ones, and ones whose classifier AP
is no better than their frequency."""

import numpy as np

from napari_wsss.informativeness import label_report
from napari_wsss.ingest import ingest_folder
from napari_wsss.store import Project


def test_frequent_and_chance_level_classes_need_strokes(tmp_path):
    p = Project.create(tmp_path / "p.zarr", ["skin", "bag", "shoe"], background=True)
    img = np.zeros((4, 4, 3), np.uint8)
    for i in range(20):  # skin on 19/20 images (95 %), bag on 10, shoe on 4
        labels = (["skin"] if i else []) + (["bag"] if i % 2 else []) + (["shoe"] if i % 5 == 0 else [])
        p.add_image(f"im{i}", img, labels)
    rep = label_report(p)
    assert rep.images == 20 and rep.frequency == {"skin": 0.95, "bag": 0.5, "shoe": 0.2}
    assert list(rep.needs_strokes) == ["skin"] and "95 % of the images" in rep.needs_strokes["skin"]
    # bag's AP 0.52 is within 5 points of its frequency 0.5: what ignoring the image gives
    rep = label_report(p, ap={"skin": 0.99, "bag": 0.52, "shoe": 0.9})
    assert list(rep.needs_strokes) == ["skin", "bag"] and "no better than its frequency 50 %" in str(rep)
    assert label_report(p, ap={"bag": 0.56}).needs_strokes.keys() == {"skin"}


def test_ingest_names_the_classes_that_need_strokes(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    rows = ["id,null,hair,hat"]
    for i in range(12):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / "imgs" / f"im{i}.png")
        rows.append(f"im{i},1,1,{i % 3 == 0:d}")
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    report = ingest_folder(tmp_path / "p.zarr", tmp_path / "imgs", tmp_path / "l.csv", background_class="null")
    assert list(report.labels.needs_strokes) == ["hair"]  # background is not a label to localise
    assert "needs strokes (image labels cannot localise): hair: labelled on 100 % of the images" in str(report)
