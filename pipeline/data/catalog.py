"""The dataset registry: every dataset n3bench knows is one entry here.

An entry says where the files come from (canonical URLs, each with its SHA-256, and the path of the same file
in a local mirror laid out as ``datasets/<folder>/<file>``), what the prepare stage does to them (the colour
conversion of the protocol), and which task uses them. Per-file checksums live in ``checksums/<list>.sha256``
(``sha256sum`` format).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipeline.registry import Registry

DNCNN = "https://raw.githubusercontent.com/cszn/DnCNN/e93b27812d3ff523a3a79d19e5e50d233d7a8d0a"
BSDS = "https://raw.githubusercontent.com/BIDS/BSDS500/a04b7c6c3a9f0ace74bf205c72a43d32e1c72722/BSDS500/data/images"
SELFEXSR = (
    "https://raw.githubusercontent.com/jbhuang0604/SelfExSR/8f6dd8c1d20cb7e8792a7177b4f6fd677633f598"
    "/data/Urban100/image_SRF_4"
)
SRCNN = "https://raw.githubusercontent.com/tegg89/SRCNN-Tensorflow/78be1a24697935fc39a3a8cf59a6632264afade7/Train"
MCWNNM = (
    "https://raw.githubusercontent.com/csjunxu/MCWNNM-ICCV2017/e6db69b01ff21e89461cc49893c89afb1a9a941c"
    "/Real_ccnoise_denoised_part"
)

#: What the prepare stage does to each source image before storing it as PNG.
CONVERSIONS = {
    "none": "stored as published (8-bit gray or RGB)",
    "gray_pil": "N3Net's gray conversion: Pillow matrix (0.2989, 0.5870, 0.1140), float32, rounded half up",
    "gray_matlab": "MATLAB rgb2gray (as DnCNN's BSD68 PNGs)",
}


@dataclass(frozen=True)
class FileList:
    """Files published one by one: ``base_url/<name>``, checksums from a packaged list."""

    base_url: str
    checksums: str
    mirror_dir: str

    def entries(self) -> list[tuple[str, str]]:
        """``(file name, sha256)`` pairs, sorted by name."""
        text = resources.files("pipeline.data").joinpath("checksums", f"{self.checksums}.sha256").read_text()
        pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
        return sorted((name.strip().lstrip("*"), digest) for digest, name in pairs)


@dataclass(frozen=True)
class Archive:
    """One archive to download and unpack; ``members`` is a glob of the files to keep."""

    url: str
    sha256: str | None
    size: int | None
    members: str
    mirror_path: str


@dataclass(frozen=True)
class Generated:
    """Made offline by n3bench itself (the bundled sample images)."""

    recipe: str


@dataclass(frozen=True)
class Manual:
    """Behind a registration or without a published checksum: the user places the files."""

    instructions: str


@dataclass(frozen=True)
class Folder:
    """A folder of the user's own images, registered with ``n3bench datasets add-folder``."""

    path: Path


Source = FileList | Archive | Generated | Manual | Folder


@dataclass(frozen=True)
class Dataset:
    """One registry entry."""

    name: str
    task: str
    description: str
    sources: tuple[Source, ...]
    color: str = "gray"
    conversion: str = "none"
    split: str = "test"
    reference: str = ""
    #: an already-converted copy a mirror may hold instead of the sources (checksummed like them)
    mirror_copy: FileList | None = None

    @property
    def source_label(self) -> str:
        kinds = {FileList: "per-file download", Archive: "archive download", Generated: "generated offline",
                 Manual: "manual (registration)", Folder: "local folder"}
        return kinds[type(self.sources[0])]


DATASETS: Registry[Dataset] = Registry("dataset")


def _add(dataset: Dataset) -> None:
    DATASETS.add(dataset.name, dataset)


# --- bundled samples (smoke profile; no network) -------------------------------------------------------------
_add(Dataset("sample_gray", "denoise", "4 gray 128×128 crops of scikit-image's bundled photographs",
             (Generated("gray"),), reference="scikit-image data module"))
_add(Dataset("sample_rgb", "sr", "3 RGB 132×132 crops of scikit-image's bundled photographs",
             (Generated("rgb"),), color="rgb", reference="scikit-image data module"))
_add(Dataset("sample_train", "train", "6 RGB 256×256 crops of scikit-image's bundled photographs (training)",
             (Generated("train"),), color="rgb", split="train", reference="scikit-image data module"))
_add(Dataset("sample_pg", "realnoise", "3 RGB 96×96 crops with seeded Poisson-Gaussian noise, stored as CC15-style "
             "(noisy, clean) pairs", (Generated("pg"),), color="rgb", reference="scikit-image data module"))

# --- Gaussian denoising ---------------------------------------------------------------------------------------
_add(Dataset("set12", "denoise", "Set12: 12 gray images (DnCNN test set)",
             (FileList(f"{DNCNN}/testsets/Set12", "set12", "datasets/set12"),),
             reference="Zhang et al., TIP 2017"))
_add(Dataset("bsd68", "denoise", "BSD68 as DnCNN's gray PNGs (MATLAB rgb2gray of the BSDS500 val68 JPGs)",
             (FileList(f"{DNCNN}/testsets/BSD68", "bsd68", "datasets/bsd68"),),
             reference="Roth & Black 2005; Martin et al. 2001"))
_add(Dataset("val68", "denoise", "BSD68 as N3Net builds it: the 68 BSDS500 val JPGs through Pillow's gray matrix",
             (FileList(f"{BSDS}/val", "bsd68_rgb", "datasets/bsd68_rgb"),), conversion="gray_pil",
             reference="Plötz & Roth 2018 (official test protocol)"))
_add(Dataset("urban100_gray", "denoise", "Urban100 HR through N3Net's gray conversion",
             (FileList(SELFEXSR, "urban100", "datasets/urban100_rgb"),), conversion="gray_pil",
             reference="Huang et al., CVPR 2015",
             mirror_copy=FileList("", "urban100_gray", "datasets/urban100_gray")))
_add(Dataset("train400", "train", "DnCNN's 400 gray 180×180 training images",
             (FileList(f"{DNCNN}/TrainingCodes/DnCNN_TrainingCodes_v1.0/data/Train400", "train400",
                       "datasets/train400"),), split="train", reference="Chen & Pock (TNRD); Zhang et al. 2017"))
_add(Dataset("bsds400", "train", "BSDS500 train + test (400 images) in N3Net's gray conversion",
             (FileList(f"{BSDS}/train", "bsds500_train", "datasets/bsds500/images/train"),
              FileList(f"{BSDS}/test", "bsds500_test", "datasets/bsds500/images/test")),
             conversion="gray_pil", split="train", reference="Arbeláez et al., TPAMI 2011"))

# --- super-resolution -----------------------------------------------------------------------------------------
_add(Dataset("set5", "sr", "Set5 ground truth (5 images)",
             (FileList(f"{DNCNN}/testsets/Set5", "set5", "datasets/set5"),), color="rgb",
             reference="Bevilacqua et al., BMVC 2012"))
_add(Dataset("set14", "sr", "Set14 ground truth (14 images; bridge is gray)",
             (FileList(f"{DNCNN}/testsets/Set14", "set14", "datasets/set14"),), color="rgb",
             reference="Zeyde et al. 2010"))
_add(Dataset("b100", "sr", "B100 / BSD100: the 100 BSDS300 test images (= BSDS500 val)",
             (FileList(f"{BSDS}/val", "bsds500_val", "datasets/bsds500/images/val"),), color="rgb",
             reference="Martin et al., ICCV 2001"))
_add(Dataset("urban100", "sr", "Urban100 HR images (SelfExSR image_SRF_4)",
             (FileList(SELFEXSR, "urban100", "datasets/urban100_rgb"),), color="rgb",
             reference="Huang et al., CVPR 2015"))
_add(Dataset("t91", "train", "Yang et al.'s 91 training images (with BSDS200: the 291-image SR set)",
             (FileList(SRCNN, "t91", "datasets/t91"),), color="rgb", split="train",
             reference="Yang et al., TIP 2010"))
_add(Dataset("bsds200", "train", "BSDS500 train (200 images), RGB: the BSD200 half of the 291-image SR set",
             (FileList(f"{BSDS}/train", "bsds500_train", "datasets/bsds500/images/train"),), color="rgb",
             split="train", reference="Arbeláez et al., TPAMI 2011"))

# --- real noise -----------------------------------------------------------------------------------------------
_add(Dataset("cc15", "realnoise", "CC15: 15 real-noise crops of Nam et al. (noisy / mean / Nam's result)",
             (FileList(MCWNNM, "cc15", "datasets/cc15"),), color="rgb", reference="Nam et al., CVPR 2016"))
_add(Dataset("div2k", "train", "DIV2K train HR (800 images), for Poisson-Gaussian training",
             (Archive("http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
                      "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", 3_530_603_713,
                      "DIV2K_train_HR/*.png", "datasets/div2k/DIV2K_train_HR.zip"),),
             color="rgb", split="train", reference="Agustsson & Timofte, NTIRE 2017"))
_add(Dataset("waterloo", "train", "Waterloo Exploration pristine images (4,744), for Poisson-Gaussian training",
             (Manual("Download http://ivc.uwaterloo.ca/database/WaterlooExploration/exploration_database_and_code.rar "
                     "(project page https://ece.uwaterloo.ca/~k29ma/exploration/; a RAR archive without a published "
                     "checksum), extract it and put its pristine_images/ folder (the *.bmp files, subfolders allowed) "
                     "into <mirror>/datasets/waterloo/."),),
             color="rgb", split="train", reference="Ma et al., TIP 2017"))
_add(Dataset("dnd", "realnoise", "Darmstadt Noise Dataset: 50 raw photographs × 20 crops (ground truth private)",
             (Manual("Register at https://noise.visinf.tu-darmstadt.de/downloads/, download the benchmark data and "
                     "put info.mat, images_raw/ and images_srgb/ into <mirror>/datasets/dnd/."),),
             color="rgb", reference="Plötz & Roth, CVPR 2017"))
_add(Dataset("sidd", "realnoise", "SIDD sRGB validation blocks (public ground truth) and benchmark blocks",
             (Manual("Download ValidationNoisyBlocksSrgb.mat, ValidationGtBlocksSrgb.mat and "
                     "BenchmarkNoisyBlocksSrgb.mat from https://abdokamel.github.io/sidd/ and put them into "
                     "<mirror>/datasets/sidd/."),),
             color="rgb", reference="Abdelhamed et al., CVPR 2018"))


def folder_dataset(name: str, path: str, color: str) -> Dataset:
    """A registry entry for a user folder (``params.yaml: folders.<name>``).

    ``gray``: converted with MATLAB's ``rgb2gray`` when RGB, evaluated by Gaussian denoising; ``y`` and ``rgb``:
    stored in colour, evaluated by super-resolution (which scores the luma).
    """
    task, stored = ("denoise", "gray") if color == "gray" else ("sr", "rgb")
    return Dataset(name, task, f"user folder {path}", (Folder(Path(path)),), color=stored,
                   conversion="gray_matlab" if stored == "gray" else "none", reference="user data")


def resolve(name: str, folders: dict[str, dict] | None = None) -> Dataset:
    """The entry for ``name``: a built-in dataset or a folder registered in params."""
    if folders and name in folders:
        entry = folders[name]
        return folder_dataset(name, entry["path"], entry.get("color", "gray"))
    return DATASETS.get(name)
