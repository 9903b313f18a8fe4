"""Which image-level labels carry no localisation signal.

A class present in (almost) every image cannot be localised from image-level labels: the
classifier only learns its frequency, and its CAMs say nothing about where it is (CCP's
skin and hair, street scenes' building, sky, window). Such classes need strokes. The report
also takes the classifier's per-class average precision when known: an AP close to the
class frequency (what a classifier that ignores the image gets) flags a class too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FREQUENT", "AP_MARGIN", "LabelReport", "label_report"]

#: Share of images above which a label cannot be localised from image labels.
FREQUENT = 0.9
#: A classifier AP at most this far above the class frequency: no better than chance.
AP_MARGIN = 0.05


@dataclass
class LabelReport:
    """Per-class label statistics and the classes that need strokes.

    Attributes
    ----------
    frequency : dict of str to float
        Share of the images labelled with each foreground class.
    needs_strokes : dict of str to str
        Class name -> why its image labels cannot localise it.
    images : int
    """

    frequency: dict[str, float] = field(default_factory=dict)
    needs_strokes: dict[str, str] = field(default_factory=dict)
    images: int = 0

    def __str__(self) -> str:
        if not self.needs_strokes:
            return ""
        return "needs strokes (image labels cannot localise): " + "; ".join(
            f"{name}: {why}" for name, why in self.needs_strokes.items())

    def as_dict(self) -> dict:
        return {"images": self.images, "frequency": dict(self.frequency),
                "needs_strokes": dict(self.needs_strokes)}


def label_report(project, *, ap: dict[str, float] | None = None, frequent: float = FREQUENT,
                 ap_margin: float = AP_MARGIN) -> LabelReport:
    """The label-informativeness report of a project (or any source with ``classes``,
    ``background``, ``image_ids()`` and ``image_labels(id)``).

    Parameters
    ----------
    ap : dict of str to float, optional
        The classifier's average precision per class (on held-out images); classes whose
        AP is within ``ap_margin`` of their frequency are flagged.
    frequent : float
        Classes labelled on more than this share of the images are flagged.
    """
    ids = project.image_ids()
    fg = [c for c in range(len(project.classes)) if c != project.background]
    counts = np.zeros(len(project.classes), np.int64)
    for iid in ids:
        for c in np.asarray(project.image_labels(iid), np.int64):
            counts[c] += 1
    rep = LabelReport(images=len(ids))
    if not ids:
        return rep
    for c in fg:
        name = project.classes[c]
        f = float(counts[c] / len(ids))
        rep.frequency[name] = f
        if f > frequent:
            rep.needs_strokes[name] = f"labelled on {100 * f:.0f} % of the images"
        elif ap is not None and name in ap and np.isfinite(ap[name]) and ap[name] <= f + ap_margin:
            rep.needs_strokes[name] = (f"classifier AP {100 * ap[name]:.0f} % is no better than its "
                                       f"frequency {100 * f:.0f} %")
    return rep
