"""The proposal panel offers the Explainer as class-map source and as refinement stage."""

from napari_wsss._qt.controls import ModelControls, ProposalControls
from napari_wsss._qt.session import MASK_STAGES, config_from_settings
from napari_wsss.pipeline import PipelineConfig


def test_explainer_in_method_list_refine_boxes_and_retrain_stages(qtbot):
    panel = ProposalControls()
    qtbot.addWidget(panel)
    methods = [panel.method.itemText(i) for i in range(panel.method.count())]
    assert methods[-1] == "explainer" and "gradcam" in methods
    panel.set_from_config(PipelineConfig(refine=("crf", "explainer")))
    assert panel.use_explainer.isChecked() and not panel.use_seg.isChecked()
    panel.method.setCurrentText("explainer")
    panel.use_crf.setChecked(False)
    settings = panel.settings()
    assert settings["refine"] == ("explainer",) and settings["method"] == "explainer"
    config = config_from_settings(None, settings)
    assert config.method == "explainer" and config.refine == ("explainer",)
    panel.use_explainer.setChecked(False)
    assert "explainer" not in panel.settings()["refine"]

    model = ModelControls()
    qtbot.addWidget(model)
    stages = [model.stage.itemText(i) for i in range(model.stage.count())]
    assert stages.index("classifier") < stages.index("explainer") < stages.index("all")
    assert "explainer" in MASK_STAGES  # its proposal gets a layer and can be accepted
