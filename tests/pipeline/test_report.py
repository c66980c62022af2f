"""The report: paper vs measured tables, smoke banner, paired bootstrap, figures, plot data, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline import paths
from pipeline.data.images import write_png
from pipeline.report import build_report, example_panels, paired_bootstrap

REPO = Path(__file__).resolve().parents[2]
N = 10
RNG = np.random.default_rng(7)
NOISY = 20.0 + RNG.normal(0.0, 0.5, N)
DNCNN = NOISY + 10.0 + RNG.normal(0.0, 0.3, N)
N3NET = DNCNN + 0.2 + RNG.normal(0.0, 0.1, N)
N3NET += 30.70 - N3NET.mean()  # measured mean exactly 30.70: Δ vs the paper's 30.55 is +0.15
BICUBIC = 33.0 + RNG.normal(0.0, 0.4, N)
VDSR = BICUBIC + 3.0 + RNG.normal(0.0, 0.2, N)

PAPER = {"tables": [
    {"id": "n3net_gaussian_denoising", "source_paper": "N3Net", "caption": "Gray AWGN.", "metric": "PSNR",
     "task": "gaussian_denoising_gray", "rows": [
         {"method": "N3Net", "dataset": "Set12", "setting": {"sigma": 25}, "value": 30.55, "verified": False},
         {"method": "N3Net", "dataset": "Set12", "setting": {"sigma": 50}, "value": 27.43, "verified": True},
         {"method": "N3Net", "dataset": "BSD68", "setting": {"sigma": 25}, "value": 29.30, "verified": True},
         {"method": "WNNM", "dataset": "Set12", "setting": {"sigma": 25}, "value": None},
     ]},
    {"id": "vdsr_paper", "source_paper": "VDSR", "caption": "SISR.", "metric": ["PSNR", "SSIM"], "task": "sisr",
     "rows": [{"method": "VDSR", "dataset": "Set5", "setting": {"scale": 2}, "value": 37.53, "ssim": 0.9587}]},
    {"id": "correspondence", "source_paper": "N3Net", "caption": "Pose.", "metric": "mAP",
     "task": "correspondence_classification",
     "rows": [{"method": "CNet", "dataset": "x", "setting": {"train": "x", "threshold_deg": 5}, "value": 0.5}]},
]}


def _cell(root: Path, profile: str, task: str, method: str, setting: int, dataset: str, psnr: np.ndarray) -> None:
    """A cell as the evaluate stage leaves it: summary JSON, per-image Parquet, the first image's examples."""
    images = [f"img{index:02d}" for index in range(len(psnr))]
    ssim = np.clip(psnr / 40.0, 0.0, 1.0)
    rows = pd.DataFrame({"task": task, "method": method, "dataset": dataset, "setting": setting, "image": images,
                         "psnr": psnr, "ssim": ssim, "seconds": 0.5, "profile": profile})
    out = root / paths.eval_dir(profile, task, method, setting)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(out / "per_image.parquet", index=False)
    pixels = np.random.default_rng(len(method)).integers(0, 256, (32, 40), dtype=np.uint8)
    for suffix in ("", "__degraded", "__reference"):
        write_png(out / "examples" / f"{dataset}__img00{suffix}.png", pixels)
    summary = {"profile": profile, "device": "cpu",
               dataset: {"psnr": round(float(psnr.mean()), 4), "ssim": round(float(ssim.mean()), 4),
                         "n_images": len(psnr)}}
    _write_json(root / paths.metrics_file(profile, task, method, setting), summary)


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _project(root: Path, profile: str) -> Path:
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "paper_tables.yaml").write_text(yaml.safe_dump(PAPER))
    _cell(root, profile, "denoise", "noisy", 25, "set12", NOISY)
    _cell(root, profile, "denoise", "dncnn-s", 25, "set12", DNCNN)
    _cell(root, profile, "denoise", "n3net", 25, "set12", N3NET)
    _cell(root, profile, "denoise", "noisy", 50, "set12", NOISY - 6.0)
    _write_json(root / paths.metrics_file(profile, "denoise", "n3net", 50), {"profile": profile, "skipped": "x"})
    _cell(root, profile, "sr", "bicubic", 2, "set5", BICUBIC)
    _cell(root, profile, "sr", "vdsr", 2, "set5", VDSR)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _project(tmp_path_factory.mktemp("project"), "pretrained")
    return build_report("pretrained", root, resamples=2000)


def table(markdown: str, heading: str) -> list[dict[str, str]]:
    """The rows of the Markdown table under ``heading``, as column → cell."""
    lines = markdown.splitlines()
    cells = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            cells.append([cell.strip() for cell in line.strip("|").split("|")])
    header, _, *rows = cells
    return [dict(zip(header, row, strict=True)) for row in rows]


def row(rows: list[dict[str, str]], method: str, dataset: str) -> dict[str, str]:
    return next(r for r in rows if r["Method"].startswith(method) and r["Dataset"].startswith(dataset))


def test_paper_table_shows_paper_measured_and_delta(report: Path) -> None:
    rows = table((report / "README.md").read_text(), "### n3net_gaussian_denoising · denoise · PSNR (dB)")
    n3net = row(rows, "N3Net", "Set12")
    assert (n3net["σ=25 Paper"], n3net["σ=25 Measured"], n3net["σ=25 Δ"]) == ("30.55†", "30.70", "+0.15")
    assert (n3net["σ=50 Paper"], n3net["σ=50 Measured"], n3net["σ=50 Δ"]) == ("27.43", "—", "—")
    bsd68 = row(rows, "N3Net", "BSD68")  # N3Net's BSD68 is val68, not measured here
    assert "val68" in bsd68["Dataset"]
    assert (bsd68["σ=25 Paper"], bsd68["σ=25 Measured"], bsd68["σ=25 Δ"]) == ("29.30", "—", "—")
    dncnn = row(rows, "`dncnn-s`", "Set12")  # measured, not in the paper table
    assert (dncnn["σ=25 Paper"], dncnn["σ=25 Measured"]) == ("—", f"{DNCNN.mean():.2f}")
    assert not any(r["Method"].startswith("WNNM") for r in rows)  # neither a paper value nor a measurement


def test_paper_table_ssim_and_sr(report: Path) -> None:
    markdown = (report / "README.md").read_text()
    psnr = row(table(markdown, "### vdsr_paper · sr · PSNR (dB)"), "VDSR", "Set5")
    assert (psnr["×2 Paper"], psnr["×2 Measured"]) == ("37.53", f"{VDSR.mean():.2f}")
    assert psnr["×2 Δ"] == f"{round(VDSR.mean(), 4) - 37.53:+.2f}"
    ssim = row(table(markdown, "### vdsr_paper · sr · SSIM"), "VDSR", "Set5")
    assert ssim["×2 Paper"] == "0.9587"
    assert "correspondence" not in markdown


def test_smoke_banner_only_for_smoke(tmp_path: Path, report: Path) -> None:
    smoke = build_report("smoke", _project(tmp_path, "smoke"), resamples=100)
    assert "NOT comparable with the paper" in (smoke / "README.md").read_text()
    assert "NOT comparable" not in (report / "README.md").read_text()


def test_results_csv_holds_every_measured_cell(report: Path) -> None:
    results = pd.read_csv(report / "results.csv")
    cells = set(zip(results.task, results.method, results.setting, results.dataset, strict=True))
    assert cells == {("denoise", "noisy", 25, "set12"), ("denoise", "dncnn-s", 25, "set12"),
                     ("denoise", "n3net", 25, "set12"), ("denoise", "noisy", 50, "set12"),
                     ("sr", "bicubic", 2, "set5"), ("sr", "vdsr", 2, "set5")}
    assert (results.n_images == N).all() and (results.seconds == 0.5).all()
    measured = table((report / "README.md").read_text(), "### Measured · denoise")
    assert row(measured, "`n3net`", "set12")["PSNR (dB)"] == "30.70"


def test_paired_comparisons(report: Path) -> None:
    paired = pd.read_csv(report / "paired.csv").set_index(["method_a", "method_b"])
    focus = paired.loc[("n3net", "dncnn-s")]
    true_mean = float(np.mean(N3NET - DNCNN))
    assert focus.mean_diff == pytest.approx(true_mean, abs=1e-4)
    assert focus.ci_low < true_mean < focus.ci_high and focus.ci_low > 0
    assert {("dncnn-s", "noisy"), ("n3net", "noisy"), ("vdsr", "bicubic")} <= set(paired.index)
    shown = table((report / "README.md").read_text(), "### Paired · sr")
    assert [(r["A"], r["B"]) for r in shown] == [("`vdsr`", "`bicubic`")]


def test_bootstrap_interval_covers_the_mean_and_is_seeded() -> None:
    diffs = np.random.default_rng(3).normal(0.5, 1.0, 40)
    mean, low, high = paired_bootstrap(diffs, resamples=5000, confidence=0.95, seed=11)
    assert mean == pytest.approx(diffs.mean())
    assert low < 0.5 < high and low < mean < high
    assert paired_bootstrap(diffs, 5000, 0.95, 11) == (mean, low, high)
    assert paired_bootstrap(diffs, 5000, 0.95, 12) != (mean, low, high)
    assert paired_bootstrap(diffs, 5000, 0.5, 11)[1] > low  # a narrower interval at a lower confidence


def test_figures_and_plot_data(report: Path) -> None:
    names = ["examples_denoise_set12_sigma25.png", "examples_denoise_set12_sigma50.png",
             "examples_sr_set5_scale2.png", "psnr_vs_sigma_set12.png", "psnr_vs_scale_set5.png"]
    for name in names:
        with Image.open(report / "figures" / name) as image:
            assert image.format == "PNG"
            image.verify()
        assert f"](figures/{name})" in (report / "README.md").read_text()
    sigma = pd.read_csv(report / "plots" / "psnr_vs_sigma.csv")
    assert list(sigma.columns) == ["method", "dataset", "sigma", "psnr"]
    assert sorted(sigma[sigma.method == "noisy"].sigma) == [25, 50]
    assert list(pd.read_csv(report / "plots" / "psnr_vs_scale.csv").columns) == ["method", "dataset", "scale",
                                                                                  "psnr"]


def test_second_run_gives_identical_files_and_drops_stale_figures(tmp_path: Path) -> None:
    root = _project(tmp_path, "pretrained")
    out = build_report("pretrained", root, resamples=500)
    texts = ["README.md", "results.csv", "paired.csv", "plots/psnr_vs_sigma.csv", "plots/psnr_vs_scale.csv"]
    first = {name: (out / name).read_bytes() for name in texts}
    (out / "figures" / "examples_denoise_gone_sigma5.png").write_bytes(b"old")
    build_report("pretrained", root, resamples=500)
    assert {name: (out / name).read_bytes() for name in texts} == first
    assert not (out / "figures" / "examples_denoise_gone_sigma5.png").exists()


def test_the_real_paper_tables_render(tmp_path: Path) -> None:
    root = _project(tmp_path, "pretrained")
    out = build_report("pretrained", root, paper_tables=REPO / "reports/paper_tables.yaml", resamples=100)
    markdown = (out / "README.md").read_text()
    rows = table(markdown, "### n3net_gaussian_denoising · denoise · PSNR (dB)")
    assert row(rows, "N3Net", "Set12")["σ=25 Δ"] == "+0.15"
    assert "### measured_official_weights · denoise · PSNR (dB)" in markdown
    assert "### dncnn3_multitask · sr · SSIM" in markdown


def test_sr_examples_show_lr_bicubic_methods_and_hr(tmp_path: Path) -> None:
    root = _project(tmp_path, "smoke")
    per_image = pd.concat(pd.read_parquet(root / paths.eval_dir("smoke", "sr", method, 2) / "per_image.parquet")
                          for method in ("bicubic", "vdsr"))
    _, panels = example_panels("smoke", "sr", "set5", 2, per_image, root)
    assert [panel.title.split("\n")[0] for panel in panels] == ["LR (×2, pixels replicated)", "input (bicubic)",
                                                                "vdsr", "HR"]
    low, high = panels[0].image, panels[-1].image
    assert low.shape == high.shape == (32, 40)
    assert (low[::2, ::2] == low[1::2, 1::2]).all()  # each LR pixel is a 2×2 block
    assert abs(float(low.mean()) - float(high.mean())) < 3.0  # bicubic downscaling keeps the mean brightness


def test_real_noise_section_shows_dnd_as_paper_only_and_cc15_published_beside_measured(tmp_path: Path) -> None:
    root = _project(tmp_path, "pretrained")
    _cell(root, "pretrained", "realnoise", "noisy", 0, "cc15", np.full(15, 33.41))
    _cell(root, "pretrained", "realnoise", "bm3d", 0, "cc15", np.full(15, 33.54))
    _cell(root, "pretrained", "realnoise", "n3net-pg", 0, "cc15", np.full(15, 34.0))
    _cell(root, "pretrained", "realnoise", "dncnn-pg", 0, "cc15", np.full(15, 33.9))
    out = build_report("pretrained", root, paper_tables=REPO / "reports/paper_tables.yaml", resamples=100)
    markdown = (out / "README.md").read_text()
    section = markdown[markdown.index("## Real noise"):markdown.index("## Paired comparisons")]
    dnd = table(section, "### n3net_real_denoising_dnd · DND")
    raw = next(r for r in dnd if r["Space"] == "raw")
    assert raw == {"Method": "N3Net", "Space": "raw", "PSNR Paper": "—", "SSIM Paper": "—",
                   "Measured": "submit to the website"}
    cc15 = table(section, "### cc15_reference · realnoise · PSNR (dB)")
    assert row(cc15, "noisy (`noisy`)", "CC15 (`cc15`)")["σ=0 Published"] == "33.41"
    assert row(cc15, "noisy (`noisy`)", "CC15 (`cc15`)")["σ=0 Measured"] == "33.41"
    assert row(cc15, "`bm3d`", "CC15 (`cc15`)")["σ=0 Measured"] == "33.54"
    assert row(cc15, "TWSC", "CC15 (`cc15`)")["σ=0 Measured"] == "—"
    assert "needs the SIDD download" in section
    paired = markdown[markdown.index("### Paired · realnoise"):]
    assert "| cc15 | σ=0 | `n3net-pg` | `dncnn-pg` | 15 | +0.10 |" in paired
    assert "cc15_reference" not in markdown[:markdown.index("## Real noise")]
