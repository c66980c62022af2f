"""The correspondence paper table (Paper | Measured | Δ) and the match figure."""

from __future__ import annotations

import io

import numpy as np
import yaml
from PIL import Image

from pipeline.correspondence.report import PAPER_TABLES, match_figure, paper_table, paper_values
from pipeline.correspondence.synthetic import SyntheticConfig, generate_pair


def _result(method: str, dataset: str, value: float, **extra) -> dict:
    return {"method": method, "dataset": dataset, "map5": value, "map10": value + 0.1, "map20": value + 0.2, **extra}


def test_paper_values_come_from_the_repository_table():
    values = paper_values()
    assert ("st_peters", "reichstag", "n3net-cnet") in values and ("brown_bm_3_05", "brown_bm_3_05", "cnet") in values
    assert set(values[("st_peters", "st_peters", "cnet")]) == {5, 10, 20}


def test_paper_table_shows_paper_measured_and_delta(tmp_path):
    tables = yaml.safe_load(PAPER_TABLES.read_text())
    table = next(table for table in tables["tables"] if table["id"] == "n3net_correspondence")
    table["rows"][0]["value"] = 0.5  # CNet, St. Peter → St. Peter, mAP@5
    edited = tmp_path / "paper_tables.yaml"
    edited.write_text(yaml.safe_dump(tables, allow_unicode=True))
    results = [_result("cnet", "st_peters", 0.55), _result("n3net-cnet", "reichstag", 0.3, train="st_peters"),
               _result("ransac", "synthetic", 0.2)]
    markdown = paper_table(results, edited, note="profile: smoke")
    lines = markdown.splitlines()
    assert "profile: smoke" in markdown and "Paper mAP@5°" in lines[5] and "Measured mAP@20°" in lines[5]
    assert "| st_peters → st_peters | cnet | 0.500 | 0.550 | +0.050 | — | 0.650 | — | — | 0.750 | — |" in lines
    assert "| st_peters → reichstag | n3net-cnet | — | 0.300 | — | — | 0.400 | — | — | 0.500 | — |" in lines
    assert lines[-1] == "| synthetic → synthetic | ransac | — | 0.200 | — | — | 0.300 | — | — | 0.400 | — |"
    assert "| brown_bm_3_05 → brown_bm_3_05 | n3net-cnet | — | — | — |" in markdown


def test_match_figure_is_a_png_of_both_views():
    pair = generate_pair(0, "test", 0, SyntheticConfig(n_matches=100))
    predicted = np.zeros(len(pair), dtype=bool)
    predicted[:40] = True
    png = match_figure(pair, predicted)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] == 1000
    views = (np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 255, np.uint8))
    assert match_figure(pair, predicted, views, title="x") != png
