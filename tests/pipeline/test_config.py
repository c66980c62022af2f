from pathlib import Path

import pytest
import yaml

from pipeline.config import ParamsError, load_params

REPO_PARAMS = Path(__file__).parents[2] / "params.yaml"


def write(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load(REPO_PARAMS.read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_shipped_params_are_valid_and_default_to_smoke():
    params = load_params(REPO_PARAMS)
    assert params.profile == "smoke"
    assert params.device == "cpu"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.update(profile="fast"), r"'profile' = 'fast' is invalid; expected one of smoke, pretrained"),
        (lambda p: p.update(seed="zero"), r"'seed' = 'zero' is invalid; expected int"),
        (lambda p: p["denoise"].update(sigmas=[25, "fifty"]), r"'denoise.sigmas'.*a list of integers"),
        (lambda p: p["profiles"]["smoke"]["fit"].update(stepz=3), r"unknown key 'profiles.smoke.fit.stepz'; allowed"),
        (lambda p: p["profiles"]["smoke"].update(device="tpu"), r"expected one of cpu, cuda, auto"),
        (lambda p: p["profiles"]["smoke"]["denoise"].update(testsets=["set12"]),
         r"profiles.smoke.denoise.testsets names 'set12', which is not in profiles.smoke.datasets"),
        (lambda p: p["profiles"]["smoke"]["denoise"].update(sigmas=[33]),
         r"profiles.smoke.denoise.sigmas names 33, which is not in denoise.sigmas \(25, 50, 70\)"),
        (lambda p: p["methods"].pop("bm3d"), r"denoise.methods names 'bm3d', which is not in the methods section"),
        (lambda p: p["folders"].update(mine={"path": "x", "color": "cmyk"}), r"folders.mine.color = 'cmyk'"),
        (lambda p: p["profiles"]["smoke"]["correspondence"].update(cells={"synthetic": "synthetic"}),
         r"'profiles.smoke.correspondence.cells'.*expected a mapping from training set to a list of test sets"),
        (lambda p: p["profiles"]["smoke"]["correspondence"].update(cells={"stereo_motorcycle": ["synthetic"]}),
         r"correspondence.cells names 'stereo_motorcycle', which is not in correspondence.trainsets"),
        (lambda p: p["profiles"]["smoke"]["correspondence"]["cells"].update(synthetic=["reichstag"]),
         r"cells.synthetic names 'reichstag', which is not in profiles.smoke.correspondence.datasets"),
        (lambda p: p["profiles"]["smoke"]["correspondence"].update(methods=["magsac"]),
         r"profiles.smoke.correspondence.methods names 'magsac', which is not in correspondence.methods"),
        (lambda p: p["profiles"]["smoke"]["correspondence"]["fit"].update(epochs=3),
         r"unknown key 'profiles.smoke.correspondence.fit.epochs'; allowed"),
        (lambda p: p.update(benchmarks=["n3block", "speed"]),
         r"benchmarks names 'speed', which is not in the scripts in benchmarks/"),
        (lambda p: p["profiles"]["smoke"].update(benchmarks=["gpu"]),
         r"profiles.smoke.benchmarks names 'gpu', which is not in the top-level benchmarks"),
        (lambda p: p["correspondence"]["protocol"].update(pose="eight_point"),
         r"'correspondence.protocol.pose' = 'eight_point' is invalid; expected one of ransac, weighted8"),
        (lambda p: p["methods"].pop("n3net-cnet"),
         r"correspondence.methods names 'n3net-cnet', which is not in the methods section"),
        (lambda p: p["correspondence"]["datasets"].append("set12"), r"set12 named both in datasets"),
    ],
)
def test_malformed_params_name_the_key_and_the_allowed_values(tmp_path, edit, message):
    with pytest.raises(ParamsError, match=message):
        load_params(write(tmp_path, edit))


def test_invalid_yaml_and_missing_file(tmp_path):
    (tmp_path / "params.yaml").write_text("profile: [smoke\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_profile_overrides_method_hyperparameters_and_selects_cells(tmp_path):
    params = load_params(write(tmp_path, lambda p: None))
    assert params.method("dncnn-s")["depth"] == 6  # the smoke profile's tiny network
    assert params.cell_active("denoise", "bm3d", 25)
    assert not params.cell_active("denoise", "bm3d", 50)
    assert not params.cell_active("denoise", "dncnn-b", 25)
    pretrained = load_params(write(tmp_path, lambda p: p.update(profile="pretrained")))
    assert pretrained.method("dncnn-s")["depth"] == 17
    assert pretrained.cell_active("denoise", "dncnn-b", 70)
    assert pretrained.fit["mode"] == "official"


def test_correspondence_cells_are_method_by_training_set(tmp_path):
    smoke = load_params(write(tmp_path, lambda p: None))
    assert smoke.cell_active("correspondence", "n3net-cnet", "synthetic")
    assert not smoke.cell_active("correspondence", "cnet", "st_peters")
    assert smoke.method("cnet")["depth"] == 6  # the smoke profile's small network
    assert not load_params(write(tmp_path, lambda p: p.update(profile="pretrained"))).correspondence["cells"]
    paper = load_params(write(tmp_path, lambda p: p.update(profile="paper")))
    assert paper.correspondence["cells"]["st_peters"] == ["st_peters", "reichstag"]
    assert paper.cell_active("correspondence", "cnet", "brown_bm_3_05")


def test_mirror_environment_variable_wins(tmp_path, monkeypatch):
    params = load_params(write(tmp_path, lambda p: p.update(mirror="/from/params")))
    monkeypatch.delenv("N3BENCH_MIRROR", raising=False)
    assert params.mirror == "/from/params"
    monkeypatch.setenv("N3BENCH_MIRROR", "/from/env")
    assert params.mirror == "/from/env"


def test_an_ablation_variant_is_its_model_with_other_hyperparameters(tmp_path):
    from pipeline.fit import make_method

    params = load_params(write(tmp_path, lambda p: None))
    variant = make_method("n3net-knn", params, "denoise")
    base = make_method("n3net", params, "denoise")
    assert type(variant) is type(base) and variant.name == "n3net-knn"
    assert variant.hparams == {**base.hparams, "rule": "hard"}  # the smoke profile's tiny sizes carry over
