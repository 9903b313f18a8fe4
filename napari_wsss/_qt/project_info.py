"""What the panel shows about an opened project: the calibration (threshold in effect and
where it came from, refinement stages it turned off) and the classes that need strokes."""

from __future__ import annotations

__all__ = ["calibration_summary", "show_calibration", "mark_needs_strokes", "project_opened"]

STAGE_TITLES = {"crf": "CRF", "rw": "RW"}


def calibration_summary(calibration: dict | None, background: int | None) -> tuple[str, dict[str, str]]:
    """``(threshold text, {stage: why it is off by default})`` of a project's calibration
    (``Project.read_calibration()``)."""
    from napari_wsss.refine.threshold import DEFAULT_RULE

    if background is None:
        return "no background class: no threshold", {}
    if not calibration:
        return f"auto = rule {DEFAULT_RULE} on each image's CAMs (not calibrated yet)", {}
    thr = calibration.get("cam_threshold")
    shown = f"{thr:.2f}" if isinstance(thr, (int, float)) else f"rule {thr or DEFAULT_RULE}"
    text = f"auto = {shown}, from {calibration.get('threshold_source', 'the calibration')}"
    stages = (calibration.get("evidence") or {}).get("stages") or {}
    off = {}
    for stage, why in (calibration.get("refine_off") or {}).items():
        title = STAGE_TITLES.get(stage, stage)
        if "cam" in stages and stage in stages:
            off[stage] = (f"{title} lowered mIoU on your corrected images: {100 * stages['cam']:.1f} -> "
                          f"{100 * stages[stage]:.1f}, off by default")
        else:
            off[stage] = f"{title} is off by default: {why}"
    return text, off


def show_calibration(controls, calibration: dict | None, background: int | None) -> None:
    """Show the calibration in the proposal controls: the threshold in effect under the
    threshold box, each stage the calibration turned off unticked with the reason."""
    text, off = calibration_summary(calibration, background)
    controls.calibration.setText(text)
    controls.calibration.setToolTip(text)
    boxes = {"crf": controls.use_crf, "rw": controls.use_rw}
    for stage, box in boxes.items():
        default_tip = box.property("default_tip")
        if default_tip is None:
            box.setProperty("default_tip", box.toolTip())
            default_tip = box.toolTip()
        if stage in off:
            box.setChecked(False)
            box.setToolTip(off[stage])
        else:
            box.setToolTip(default_tip)


def mark_needs_strokes(picker, project) -> dict[int, str]:
    """Tag the classes of `napari_wsss.informativeness.label_report` in the class picker."""
    from napari_wsss.informativeness import label_report

    report = label_report(project)
    reasons = {project.classes.index(name): why for name, why in report.needs_strokes.items()}
    picker.mark_needs_strokes(reasons)
    return reasons


def project_opened(widget, project) -> None:
    """Everything of the above for an `AnnotationWidget` that just opened ``project``."""
    show_calibration(widget.proposal_controls, project.read_calibration(), project.background)
    mark_needs_strokes(widget.picker, project)
    widget.model.set_project(project)
