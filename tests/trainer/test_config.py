import pytest

from trainer.config import TrainConfig, apply_overrides, config_from_dict, load_config, save_config


def test_yaml_round_trip_keeps_types(tmp_path):
    cfg = TrainConfig(amp=True, seed=3)
    cfg.classifier.puzzle_pieces = 4
    cfg.classifier.scale_range = (0.5, 2.0)
    cfg.segmenter.pseudo_stages = ("crf",)
    save_config(cfg, tmp_path / "c.yaml")
    back = load_config(tmp_path / "c.yaml")
    assert back == cfg
    assert isinstance(back.classifier.scale_range, tuple)


def test_partial_yaml_keeps_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("classifier:\n  epochs: 3\n  lr: 1\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.classifier.epochs == 3
    assert cfg.classifier.lr == 1.0 and isinstance(cfg.classifier.lr, float)
    assert cfg.segmenter == TrainConfig().segmenter


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("classifier:\n  epoch: 3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml\.classifier: unknown key\(s\) epoch; valid keys: .*epochs"):
        load_config(path)


def test_wrong_type_is_an_error():
    with pytest.raises(ValueError, match="classifier.epochs: expected int"):
        config_from_dict({"classifier": {"epochs": "many"}})
    with pytest.raises(ValueError, match="amp: expected true/false"):
        config_from_dict({"amp": "yes"})


def test_overrides():
    cfg = apply_overrides(TrainConfig(), ["classifier.kur=true", "segmenter.pseudo_stages=[crf, cam]", "seed=7"])
    assert cfg.classifier.kur is True
    assert cfg.segmenter.pseudo_stages == ("crf", "cam")
    assert cfg.seed == 7
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        apply_overrides(TrainConfig(), ["classifier.lrr=1"])


def test_unknown_stage_lists_valid():
    with pytest.raises(ValueError, match="valid stages: affinity, classifier, explainer, segmenter"):
        TrainConfig().stage("crf")


def test_float_keys_take_yaml_exponents_and_reject_words():
    # YAML 1.1 reads 3e-4 (no dot) as a string; it is still a learning rate.
    cfg = apply_overrides(TrainConfig(), ["classifier.lr=3e-4"])
    assert cfg.classifier.lr == 0.0003 and isinstance(cfg.classifier.lr, float)
    with pytest.raises(ValueError, match="expected a number, got 'fast'"):
        apply_overrides(TrainConfig(), ["classifier.lr=fast"])
