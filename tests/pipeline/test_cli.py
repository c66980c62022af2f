import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from skimage import io

from pipeline.cli import main

REPO = Path(__file__).parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with the repository's params.yaml (outputs land in tmp)."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_the_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("datasets", "evaluate", "report", "denoise", "upscale"):
        assert command in result.output


def test_datasets_list_shows_every_registry_entry(project):
    result = run("datasets", "list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[1:]}
    assert {"set12", "bsd68", "urban100", "bsds400", "set5", "set14", "b100", "t91", "div2k", "waterloo", "dnd",
            "sidd"} <= set(lines)
    assert lines["set12"][1:3] == ["denoise", "12"] and lines["set12"][4] == "no"


def test_unknown_names_list_the_valid_ones_without_a_traceback(project):
    result = run("datasets", "prepare", "set13")
    assert result.exit_code == 1
    assert "unknown dataset 'set13'; valid names:" in result.output and "set12" in result.output
    assert "Traceback" not in result.output
    result = run("evaluate", "--method", "bm4d", "--dataset", "sample_gray", "--setting", "25")
    assert result.exit_code == 1 and "unknown method 'bm4d'" in result.output and "bm3d" in result.output


def test_add_folder_registers_a_dataset_that_flows_into_evaluation(project):
    folder = project / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("one", "two"):
        io.imsave(folder / f"{name}.png", rng.integers(0, 256, (40, 48), dtype=np.uint8), check_contrast=False)
    result = run("datasets", "add-folder", str(folder), "--name", "photos", "--gray")
    assert result.exit_code == 0, result.output
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["folders"]["photos"] == {"path": str(folder.resolve()), "color": "gray"}
    assert "photos" in params["profiles"]["smoke"]["denoise"]["testsets"]
    assert "# n3bench parameters" in (project / "params.yaml").read_text()  # comments survive the edit

    listed = [line for line in run("datasets", "list").output.splitlines() if line.startswith("photos")]
    assert listed and "local folder" in listed[0]

    result = run("evaluate", "--method", "noisy", "--dataset", "photos", "--setting", "25", "--json")
    summary = json.loads(result.stdout)
    assert {"method", "dataset", "setting", "n_images", "psnr", "ssim", "seconds"} <= set(summary)
    assert summary["n_images"] == 2 and 19 < summary["psnr"] < 22  # noisy input at σ=25: about 20.2 dB
    assert not (project / "reports").exists()  # nothing tracked is written unless asked


def test_add_folder_refuses_a_builtin_name(project, tmp_path):
    result = run("datasets", "add-folder", str(tmp_path), "--name", "set12")
    assert result.exit_code == 1 and "taken" in result.output


@pytest.mark.slow
def test_evaluate_prints_pose_map_for_a_correspondence_dataset(project):
    result = run("evaluate", "--method", "ransac", "--dataset", "synthetic", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"map5", "map10", "map20"} <= set(summary)
    assert 0 <= summary["map5"] <= summary["map10"] <= summary["map20"] <= 1


def test_image_datasets_need_a_setting(project):
    result = run("evaluate", "--method", "bm3d", "--dataset", "sample_gray")
    assert result.exit_code == 1 and "--setting is required" in result.output


def test_real_noise_evaluates_with_an_estimated_level_by_default(project):
    result = run("evaluate", "--method", "noisy", "--dataset", "sample_pg", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["setting"] == 0 and summary["n_images"] == 3 and summary["weights"] == "none"
    assert summary["psnr"] == pytest.approx(23.41, abs=0.01)  # the committed smoke figure of the noisy input


@pytest.mark.mirror
def test_a_method_without_a_fit_in_the_profile_uses_its_official_weights(project, mirror):
    result = run("evaluate", "--method", "dncnn-s", "--dataset", "set12", "--setting", "25", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["weights"] == "official"
    assert summary["psnr"] == pytest.approx(30.43, abs=0.01)  # DnCNN-S, Set12, σ = 25 (paper: 30.44)


@pytest.fixture
def photo(project):
    path = project / "photo.png"
    io.imsave(path, np.random.default_rng(2).integers(0, 256, (24, 20, 3), dtype=np.uint8), check_contrast=False)
    return path


def _checkpoint(project, method: str, setting: int, **hparams) -> Path:
    """A checkpoint as n3bench writes it, of ``method`` with ``hparams`` and random weights."""
    import models  # noqa: F401
    from pipeline.methods import METHODS
    from pipeline.train import save_model

    network = METHODS.get(method)(**hparams).build_network(setting)
    out = project / f"{method}-ckpt"
    save_model(network, out, {"method": method, "task": "sr", "setting": setting, "hparams": hparams})
    return out / "model.pt"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scale", "5"], "super-resolution scale must be one of (2, 3, 4), got 5"),
        (["--scale", "4", "--method", "n3net-sr"], "n3net-sr has no official checkpoint for setting 4"),
    ],
)
def test_upscale_refuses_a_scale_without_a_model_in_one_line(photo, args, message):
    result = run("upscale", str(photo), *args, "-o", str(photo.with_name("out.png")))
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def test_a_checkpoint_brings_its_own_architecture(project, photo):
    checkpoint = _checkpoint(project, "vdsr", 2, depth=3, features=8)  # not the profile's vdsr (6 × 24)
    result = run("upscale", str(photo), "--scale", "2", "--checkpoint", str(checkpoint), "-o", "out.png")
    assert result.exit_code == 0, result.output
    assert io.imread(project / "out.png").shape == (48, 40, 3)


def test_unfit_or_unreadable_checkpoints_are_refused_in_one_line(project, photo):
    wrong = _checkpoint(project, "n3net-sr", 2)
    result = run("upscale", str(photo), "--scale", "2", "--checkpoint", str(wrong), "-o", "out.png")
    assert result.exit_code == 1 and "(trained as n3net-sr, hparams {}) does not fit vdsr" in result.output
    garbage = project / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    result = run("upscale", str(photo), "--scale", "2", "--checkpoint", str(garbage), "-o", "out.png")
    assert result.exit_code == 1 and f"cannot read checkpoint {garbage}" in result.output
    assert not (project / "out.png").exists()


def test_an_image_smaller_than_the_search_window_is_refused_in_one_line(project, photo):
    checkpoint = _checkpoint(project, "n3net-sr", 2)
    result = run("upscale", str(photo), "--scale", "2", "--method", "n3net-sr", "--checkpoint", str(checkpoint),
                 "-o", "out.png")
    assert result.exit_code == 1 and "N3Block needs at least 80 px per side" in result.output
