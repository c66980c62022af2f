"""DnCNN: the layer stack, the MatConvNet and KAIR readers, the registered methods and the official weights."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from models.dncnn import DnCNN, conv_stack, read_kair, read_matconvnet
from pipeline.methods import METHODS
from pipeline.protocols.metrics import psnr
from pipeline.protocols.noise import add_gaussian_noise

# ---------------------------------------------------------------- networks


def test_conv_stack_layouts():
    dncnn = conv_stack(1, 64, 1, 17, batchnorm=False)
    assert [type(m).__name__ for m in dncnn[:4]] == ["Conv2d", "ReLU", "Conv2d", "ReLU"]
    assert len(dncnn) == 33 and all(conv.bias is not None for conv in dncnn[::2])
    with_bn = conv_stack(1, 64, 8, 6)
    kinds = [type(m).__name__ for m in with_bn]
    assert kinds == ["Conv2d", "ReLU"] + ["Conv2d", "BatchNorm2d", "ReLU"] * 4 + ["Conv2d"]
    assert [m.bias is not None for m in with_bn if isinstance(m, torch.nn.Conv2d)] == [True] + [False] * 4 + [True]
    embedding = conv_stack(8, 64, 8, 3, head_bn=True)
    assert [type(m).__name__ for m in embedding] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["Conv2d"]


def test_dncnn_subtracts_the_predicted_noise():
    network = DnCNN(depth=4, features=8).eval()
    x = torch.rand(1, 1, 12, 12)
    torch.testing.assert_close(network(x), x - network.layers(x))


# ---------------------------------------------------------------- readers


def _write_matconvnet(path: Path, filters: list[np.ndarray], biases: list[np.ndarray], extra: str = "") -> None:
    """A MATLAB v7.3 file shaped like DnCNN's: ``net/layers`` references conv and relu structs."""
    with h5py.File(path, "w") as file:
        refs = file.create_group("#refs#")

        def layer(index: int, kind: str, weights: tuple[np.ndarray, ...] = ()) -> h5py.Reference:
            group = refs.create_group(f"layer{index}")
            group["type"] = np.array([ord(c) for c in kind], dtype=np.uint16)[:, None]
            if weights:
                stored = [refs.create_dataset(f"w{index}_{i}", data=array).ref for i, array in enumerate(weights)]
                group.create_dataset("weights", data=np.array(stored, dtype=h5py.ref_dtype)[:, None])
            return group.ref

        layers = []
        for index, (weight, bias) in enumerate(zip(filters, biases, strict=True)):
            matlab = weight.transpose(0, 1, 3, 2)  # h5py shows MATLAB kh×kw×in×out as (out, in, kw, kh)
            layers.append(layer(2 * index, "conv", (matlab[0] if len(weight) == 1 else matlab, bias[None])))
            if index < len(filters) - 1:
                layers.append(layer(2 * index + 1, "relu"))
        if extra:
            layers.append(layer(len(layers), extra))
        file.create_dataset("net/layers", data=np.array(layers, dtype=h5py.ref_dtype)[:, None])


def _random_dncnn_weights(depth: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    widths = [1] + [4] * (depth - 1) + [1]
    filters = [rng.standard_normal((o, i, 3, 3)).astype(np.float32) for i, o in itertools.pairwise(widths)]
    return filters, [rng.standard_normal(len(f)).astype(np.float32) for f in filters]


def test_matconvnet_reader_swaps_the_kernel_axes_and_restores_the_singleton(tmp_path):
    filters, biases = _random_dncnn_weights(4)
    filters[1][:, :, 0, 2] += 5  # an asymmetric kernel: a missing transpose would show
    _write_matconvnet(tmp_path / "model.mat", filters, biases)
    state = read_matconvnet(tmp_path / "model.mat")
    network = DnCNN(depth=4, features=4, batchnorm=False)
    network.load_state_dict(state, strict=True)
    for index, (weight, bias) in enumerate(zip(filters, biases, strict=True)):
        np.testing.assert_array_equal(state[f"layers.{2 * index}.weight"].numpy(), weight)
        np.testing.assert_array_equal(state[f"layers.{2 * index}.bias"].numpy(), bias)


def test_matconvnet_reader_refuses_other_layer_types(tmp_path):
    _write_matconvnet(tmp_path / "model.mat", *_random_dncnn_weights(3), extra="bnorm")
    with pytest.raises(ValueError, match="type 'bnorm'"):
        read_matconvnet(tmp_path / "model.mat")


def test_kair_reader_renames_and_refuses_other_layouts(tmp_path):
    source = DnCNN(depth=5, features=4, batchnorm=False).state_dict()
    kair = OrderedDict((key.replace("layers.", "model."), value) for key, value in source.items())
    torch.save(kair, tmp_path / "kair.pth")
    assert {key: value.tolist() for key, value in read_kair(tmp_path / "kair.pth").items()} == {
        key: value.tolist() for key, value in source.items()
    }
    torch.save(source, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="expected KAIR keys"):
        read_kair(tmp_path / "other.pth")


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_kair_reader_refuses_pickled_code(tmp_path):
    torch.save({"model.0.weight": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="Weights only load failed"):
        read_kair(tmp_path / "evil.pth")


# ---------------------------------------------------------------- methods


def test_registered_methods_and_hyperparameters():
    small, blind = METHODS.get("dncnn-s")(), METHODS.get("dncnn-b")(features=32)
    assert small.hparams == {"depth": 17, "features": 64, "batchnorm": False, "noise_maps": False, "blind": False}
    assert blind.hparams == {"depth": 20, "features": 32, "batchnorm": False, "noise_maps": False, "blind": True}
    assert len(blind.build_network(25).layers) == 39
    assert METHODS.get("dncnn-s")(depth=6).build_network(25).layers[-1].in_channels == 64


def test_official_files_per_setting():
    small, blind = METHODS.get("dncnn-s")(), METHODS.get("dncnn-b")()
    assert sorted(small.official) == [15, 25, 50, 70]
    remote = small.official_file(25)
    assert remote.url.endswith("/cszn/DnCNN/e93b27812d3ff523a3a79d19e5e50d233d7a8d0a/model/specifics/sigma=25.mat")
    assert remote.mirror_path == "pretrained/dncnn_s_sigma25_matconvnet.mat"
    assert blind.official_file(50) is blind.official_file(70)
    assert blind.official_file(15).url.endswith("/model/GD_Gray_Blind.mat")
    with pytest.raises(ValueError, match="no official checkpoint for setting 35"):
        small.official_file(35)


def test_official_import_needs_folded_batchnorm_and_a_known_format(tmp_path):
    with pytest.raises(ValueError, match="batchnorm=False"):
        METHODS.get("dncnn-s")(batchnorm=True).import_official(tmp_path / "x.mat", 25)
    with pytest.raises(ValueError, match="unknown DnCNN checkpoint format"):
        METHODS.get("dncnn-s")().import_official(tmp_path / "x.onnx", 25)


# ---------------------------------------------------------------- official weights (mirror)


def _set12(mirror: Path, stem: str) -> np.ndarray:
    return np.asarray(Image.open(mirror / "datasets" / "set12" / f"{stem}.png")).astype(np.float32) / 255


@pytest.mark.mirror
@pytest.mark.parametrize(
    ("name", "sigma"),
    [("dncnn-s", 15), ("dncnn-s", 25), ("dncnn-s", 50), ("dncnn-s", 70), ("dncnn-b", 25), ("dncnn-b", 50)],
)
def test_official_weights_load_strictly_and_denoise(mirror, name, sigma):
    method = METHODS.get(name)()
    method.load(method.import_official(mirror / method.official_file(sigma).mirror_path, sigma), sigma)
    for stem in ("01", "05"):  # 256×256 each
        clean = _set12(mirror, stem)
        noisy = add_gaussian_noise(clean, sigma, dataset="set12", image=stem)
        assert psnr(method.restore(noisy, sigma), clean) > psnr(noisy, clean, quantize=False) + 3


@pytest.mark.mirror
def test_kair_conversion_equals_the_matconvnet_model(mirror):
    matconvnet = read_matconvnet(mirror / "pretrained" / "dncnn_s_sigma25_matconvnet.mat")
    kair = read_kair(mirror / "pretrained" / "dncnn_s_sigma25_kair.pth")
    assert list(kair) == list(matconvnet)
    for key, value in kair.items():
        torch.testing.assert_close(value, matconvnet[key], rtol=0, atol=0)


def test_noise_map_dncnn_subtracts_its_output_from_the_image_plane_only():
    network = DnCNN(depth=3, features=4, noise_maps=True)
    assert network.layers[0].in_channels == 3 and network.layers[-1].out_channels == 1
    torch.nn.init.zeros_(network.layers[-1].weight)
    torch.nn.init.zeros_(network.layers[-1].bias)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(network(x), x[:, :1])
