from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import io

from pipeline.data import prepare as prepare_module
from pipeline.data.catalog import DATASETS, folder_dataset
from pipeline.data.download import sha256_file
from pipeline.data.prepare import MANIFEST, MANIFEST_COLUMNS, DatasetError, load_manifest, prepare


def test_sample_dataset_is_built_offline_and_deterministically(tmp_path):
    first = prepare(DATASETS.get("sample_gray"), tmp_path / "a", raw=tmp_path / "raw")
    second = prepare(DATASETS.get("sample_gray"), tmp_path / "b", raw=tmp_path / "raw")
    assert list(first.columns) == MANIFEST_COLUMNS
    assert len(first) == 4 and (first["channels"] == 1).all()
    assert first["sha256"].tolist() == second["sha256"].tolist()
    for row in first.itertuples():
        png = tmp_path / "a" / f"{row.image}.png"
        assert sha256_file(png) == row.sha256
        assert io.imread(png).shape == (row.height, row.width)


def test_rgb_sample_keeps_colour(tmp_path):
    manifest = prepare(DATASETS.get("sample_rgb"), tmp_path / "rgb", raw=tmp_path / "raw")
    assert (manifest["channels"] == 3).all()


def test_folder_dataset_converts_to_gray_and_names_a_corrupt_file(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    io.imsave(folder / "a.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), check_contrast=False)
    manifest = prepare(folder_dataset("mine", str(folder), "gray"), tmp_path / "out", raw=tmp_path / "raw")
    assert manifest[["image", "height", "width", "channels"]].values.tolist() == [["a", 20, 24, 1]]

    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match=r"broken\.png"):
        prepare(folder_dataset("mine", str(folder), "gray"), tmp_path / "out", raw=tmp_path / "raw")
    # the earlier result is untouched and no staging folder is left behind
    assert load_manifest(tmp_path / "out", "mine")["image"].tolist() == ["a"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine", "out"]


def test_interrupted_prepare_leaves_no_output(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "write_png", explode)
    with pytest.raises(KeyboardInterrupt):
        prepare(DATASETS.get("sample_gray"), tmp_path / "sample", raw=tmp_path / "raw")
    assert not (tmp_path / "sample").exists()
    assert [path for path in tmp_path.iterdir() if path.name != "raw"] == []


def test_unprepared_dataset_says_which_stage_to_run(tmp_path):
    with pytest.raises(DatasetError, match=r"dvc repro prepare@set12"):
        load_manifest(tmp_path / "set12", "set12")


@pytest.mark.mirror
@pytest.mark.parametrize(("name", "count"), [("set12", 12), ("bsd68", 68)])
def test_mirror_datasets_match_the_published_pixels(mirror, tmp_path, name, count):
    manifest = prepare(DATASETS.get(name), tmp_path / name, raw=tmp_path / "raw", mirror=mirror)
    assert len(manifest) == count
    for row in manifest.itertuples():
        ours = io.imread(tmp_path / name / f"{row.image}.png")
        theirs = io.imread(mirror / "datasets" / name / row.source)
        assert ours.dtype == np.uint8 and ours.ndim == 2
        assert (row.height, row.width) == ours.shape
        np.testing.assert_array_equal(ours, theirs)
    assert pd.read_parquet(tmp_path / name / MANIFEST)["split"].eq("test").all()


def test_manifest_is_written_beside_the_pngs(tmp_path):
    prepare(DATASETS.get("sample_gray"), tmp_path / "s", raw=tmp_path / "raw")
    assert {path.suffix for path in Path(tmp_path / "s").iterdir()} == {".png", ".parquet"}
