"""Pipeline defaults from the project's own data (no Qt, no trainer).

:func:`choose_defaults` picks the background threshold of a project with background and
decides which refinement stages are applied by default:

* **From corrections**, when the annotator corrected enough pixels: the thresholds of
  :data:`napari_wsss.evaluate.DEFAULT_THRESHOLDS` are swept on the corrected pixels (the
  stored CAMs thresholded, scored against the corrections) and the best is taken; the
  dense CRF and the random walk are run on the corrected images at that threshold, and a
  stage that scores below the CAMs there is not applied by default.
* **Otherwise by a rule**: :data:`DEFAULT_RULE`, measured with ``bench/calibrate.py`` on
  the training images of datasets with background (the shapes sample and CCP), computed
  on each image's own CAMs.

The decision and its numbers go into the project (``Project.write_calibration``) where the
pipeline (``cam_threshold="auto"``) and the panel read them.
"""

from __future__ import annotations

import numpy as np

from .conventions import IGNORE
from .refine.threshold import DEFAULT_RULE, THRESHOLD_RULES, image_threshold, threshold_by_rule

__all__ = ["THRESHOLD_RULES", "DEFAULT_RULE", "threshold_by_rule", "image_threshold",
           "choose_defaults", "corrected_images", "MIN_CORRECTED_IMAGES", "MIN_CORRECTED_PIXELS"]

#: Corrections needed before the threshold and the refinement stages come from them.
MIN_CORRECTED_IMAGES = 3
MIN_CORRECTED_PIXELS = 500


def corrected_images(project) -> list[tuple[str, np.ndarray]]:
    """(image id, corrections with 255 where unlabeled or painted "ignore") of every image
    with at least one corrected class pixel."""
    from .store import split_corrections

    out = []
    for iid in project.image_ids():
        labels, _ = split_corrections(project.read_corrections(iid))
        if (labels != IGNORE).any():
            out.append((iid, labels))
    return out


def _miou(conf: np.ndarray) -> float:
    from .metrics import segmentation_scores

    return float(segmentation_scores(conf).miou)


def choose_defaults(project, *, pipeline=None, method: str = "cam", write: bool = True,
                    min_images: int = MIN_CORRECTED_IMAGES, min_pixels: int = MIN_CORRECTED_PIXELS,
                    corrected=None, stored_cams: bool = False) -> dict:
    """Choose the background threshold and the default refinement stages from the project's data.

    Parameters
    ----------
    project : Project
        With stored CAMs of ``method`` on the corrected images (``napari-wsss prelabel``).
    pipeline : Pipeline, optional
        The project's models (``Pipeline.from_project``): computes the CAMs of the corrected
        images and runs the CRF / random walk on them to judge those stages. Without one the
        stored CAMs of ``method`` are thresholded and no stage is judged; without enough
        corrections neither (all stages stay on).
    method : str
        CAM method of the stored maps (used without a pipeline).
    write : bool
        Store the result in the project (``Project.write_calibration``).
    min_images, min_pixels : int
        Corrections needed before they decide (else the rule / the defaults stand).
    corrected : list of (id, labels), optional
        The corrected images, if already read.
    stored_cams : bool
        Threshold the stored CAMs of ``method`` even when a pipeline could compute them.

    Returns
    -------
    dict
        ``cam_threshold`` (a number, a rule name of :data:`THRESHOLD_RULES` computed per
        image, or ``None`` without background), ``threshold_source``, ``refine_off``
        (stage -> why it is not applied by default) and ``evidence``: corrected images and
        pixels, the threshold sweep on corrected pixels (``thresholds``, ``miou``) and the
        mIoU of each stage there (``stages``), ``cam_method``.
    """
    from .evaluate import DEFAULT_THRESHOLDS, _upsampled_cams, cam_threshold_sweep
    from .metrics import confusion_matrix

    c = len(project.classes)
    pipe = pipeline
    found = []
    for iid, labels in (corrected_images(project) if corrected is None else corrected):
        if pipe is not None and not stored_cams:  # the models in use, as prelabel computes them
            cls = np.asarray(sorted(int(k) for k in project.image_labels(iid)), np.int64)
            cams = pipe.cams(project.image(iid), cls)
        else:
            got = project.read_cams(iid, method)
            if got is None:
                continue
            cams, cls = _upsampled_cams(got[0], labels.shape), got[1]
        found.append((iid, labels, cams, cls))
    corrected = found
    pixels = int(sum((lab != IGNORE).sum() for _, lab, _, _ in corrected))
    enough = len(corrected) >= min_images and pixels >= min_pixels
    evidence = {"corrected_images": len(corrected), "corrected_pixels": pixels, "cam_method": method,
                "min_images": min_images, "min_pixels": min_pixels}
    out = {"background": project.background, "refine_off": {}, "evidence": evidence}
    if project.background is None:
        out.update(cam_threshold=None, threshold_source="no background class: no threshold")
    elif enough:
        thr = tuple(float(t) for t in DEFAULT_THRESHOLDS)
        conf = sum(cam_threshold_sweep(cams, cls, lab, background=project.background, num_classes=c,
                                       thresholds=thr) for _, lab, cams, cls in corrected)
        miou = [_miou(k) for k in conf]
        best = int(np.nanargmax(miou))
        evidence.update(thresholds=list(thr), miou=miou)
        out.update(cam_threshold=thr[best], threshold_source=(
            f"corrections: best of {len(thr)} thresholds on {pixels} corrected pixels of "
            f"{len(corrected)} images (mIoU {100 * miou[best]:.1f} %)"))
    else:
        out.update(cam_threshold=DEFAULT_RULE, threshold_source=(
            f"rule {DEFAULT_RULE} on each image's CAMs ({len(corrected)} corrected images / {pixels} "
            f"pixels; corrections decide from {min_images} images and {min_pixels} pixels)"))
    if enough and pipe is not None:  # judge the refinement stages at the chosen threshold
        judge = pipe.with_config(cam_threshold=out["cam_threshold"] or 0.5, refine=("crf", "rw"))
        confs = {s: np.zeros((c, c + 1), np.int64) for s in ("cam", "crf", "rw")}
        for iid, lab, cams, cls in corrected:
            props = judge.proposals_from_cams(project.image(iid), cls, cams)
            for stage, k in confs.items():
                k += confusion_matrix(props.masks[stage], lab, c)
        stages = {s: _miou(k) for s, k in confs.items()}
        evidence["stages"] = stages
        for s in ("crf", "rw"):
            if stages[s] < stages["cam"]:
                out["refine_off"][s] = (f"lowers mIoU on the corrected pixels: CAM "
                                        f"{100 * stages['cam']:.1f} -> {s} {100 * stages[s]:.1f} %")
    if write:
        project.write_calibration(out)
    return out
