"""Training configs: every shipped YAML loads, overrides work, bad files and options fail clearly."""

from pathlib import Path

import pytest

from stark_ros.training.config import load_config, parse_options

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
MMTRACKING_NAMES = ("stark_st1_r50_500e_got10k", "stark_st2_r50_50e_got10k", "stark_st1_r50_500e_lasot",
                    "stark_st2_r50_50e_lasot")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.stage in (1, 2)
    if cfg.stage == 2:
        assert cfg.load_from, "stage 2 starts from stage 1's weights"
    if cfg.model == "S50":
        assert cfg.stage == 1


def test_official_configs_present_with_official_settings():
    for name in MMTRACKING_NAMES:
        assert (CONFIGS / f"{name}.yaml").is_file(), name
    st1 = load_config(CONFIGS / "stark_st1_r50_500e_got10k.yaml")
    assert (st1.epochs, st1.batch_size, st1.data.samples_per_epoch, st1.data.max_gap) == (500, 16, 60000, 200)
    o = st1.optim
    assert (o.lr, o.backbone_lr_mult, o.weight_decay, o.lr_drop_at, o.grad_clip) == (1e-4, 0.1, 1e-4, 0.8, 0.1)
    assert (o.giou_weight, o.l1_weight) == (2.0, 5.0)
    assert (st1.data.aug.search_center_jitter, st1.data.aug.search_scale_jitter) == (4.5, 0.5)
    st2 = load_config(CONFIGS / "stark_st2_r50_50e_lasot.yaml")
    assert (st2.stage, st2.epochs) == (2, 50)
    assert {s.kind for s in st2.data.sources} == {"lasot", "got10k", "trackingnet", "coco"}


def test_lite_config_never_trains_on_the_evaluation_sequences():
    for stage in ("st1", "st2"):
        cfg = load_config(CONFIGS / f"stark_lite_{stage}.yaml")
        assert cfg.model == "LITE"
        assert [s.root for s in cfg.data.sources] == ["data/train"]


def test_cfg_options_override_nested_values_and_read_literals():
    cfg = load_config(CONFIGS / "tiny.yaml", ["optim.lr=1e-4", "epochs=7", "data.aug.flip_prob=0",
                                              "load_from=/x/y.pth", "model_overrides.dropout=0.0",
                                              "data.sources=[{kind: simple, root: data/sot}]", "amp=true"])
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.epochs == 7
    assert cfg.data.aug.flip_prob == 0.0
    assert cfg.load_from == "/x/y.pth"
    assert cfg.model_overrides["dropout"] == 0.0
    assert cfg.model_overrides["enc_layers"] == 1  # the rest of the mapping stays
    assert cfg.data.sources[0].root == "data/sot"
    assert cfg.amp is True


@pytest.mark.parametrize(("options", "message"), [
    (["optim.lrr=1"], "unknown keys"),
    (["epochs=ten"], "epochs"),
    (["epochs=0"], "epochs must be >= 1"),
    (["stage=3"], "stage"),
    (["noequals"], "key=value"),
    (["data.sources=[{kind: imagenet}]"], "kind"),
    (["amp=1"], "true/false"),
    (["data.negative_prob=2"], "negative_prob"),
    (["data.negative_made_prob=-0.1"], "negative_made_prob"),
    (["data.made_absences_every=0"], "made_absences_every"),
    (["epochs.sub=1"], "not a section"),
])
def test_bad_options_are_refused_with_the_key_named(options, message):
    with pytest.raises(ValueError, match=message):
        load_config(CONFIGS / "tiny.yaml", options)


def test_base_inheritance_and_bad_files(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nepochs: 5\noptim: {lr: 0.5, grad_clip: 2.0}\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nname: child\noptim: {lr: 0.25}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.name, cfg.epochs, cfg.optim.lr, cfg.optim.grad_clip) == ("child", 5, 0.25, 2.0)
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ValueError, match="loops"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_options_never_run_code():
    # A YAML tag that would build a Python object stays refused by the safe loader.
    with pytest.raises(ValueError, match="cannot read value"):
        parse_options(["name=!!python/object/apply:os.system ['true']"])
