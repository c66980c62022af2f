"""N³Net: architecture, hyper-parameters, the official key mapping and the official weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from models.n3net import HPARAMS, DnCNNStage, N3Net, N3NetMethod, convert_official, official_key
from pipeline.config import ParamsError
from pipeline.methods import METHODS
from pipeline.protocols.metrics import psnr
from pipeline.protocols.noise import add_gaussian_noise
from pipeline.safe_pickle import load_namespace_pickle

# ---------------------------------------------------------------- architecture


def test_paper_network_channel_plan_and_parameter_count():
    network = N3Net()
    plan = [(stage.layers[0].in_channels, stage.layers[-1].out_channels) for stage in network.stages]
    assert plan == [(1, 8), (64, 8), (64, 1)]
    assert [block.out_channels for block in network.n3blocks] == [64, 64]
    # the spec's 705,895 learnable values include the 384 of the three unused official ``bn1``
    assert sum(p.numel() for p in network.parameters()) == 705_895 - 384
    assert sum(p.numel() for p in network.n3blocks[0].parameters()) == 88_651
    first_conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv is network.stages[0].layers[0]  # LearnedMethod.restore reads the input channels here


def test_forward_keeps_the_image_shape_and_backpropagates():
    network = N3Net(features=16, embed_features=8)
    x = torch.rand(2, 1, 80, 83, requires_grad=True)
    out = network(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and network.n3blocks[1].temperature_net[0].weight.grad.abs().sum() > 0


def test_stage_adds_its_first_input_channels():
    stage = DnCNNStage(3, 2, depth=3, features=4)
    last = stage.layers[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(stage(x), x[:, :2])
    wider = DnCNNStage(1, 3, depth=3, features=4)
    torch.nn.init.zeros_(wider.layers[-1].weight)
    torch.nn.init.zeros_(wider.layers[-1].bias)
    torch.testing.assert_close(wider(x[:, :1]), torch.cat([x[:, :1], torch.zeros(1, 2, 6, 6)], dim=1))


def test_k_zero_removes_the_n3_blocks():
    network = N3Net(k=0, depth=3, features=8)
    assert len(network.n3blocks) == 0
    assert [stage.layers[0].in_channels for stage in network.stages] == [1, 8, 8]
    assert network(torch.rand(1, 1, 20, 20)).shape == (1, 1, 20, 20)


def test_ablation_hyperparameters_reach_the_blocks():
    network = N3Net(rule="hard", embedding="identity", temperature="fixed", distance_bn=False, k=3, window=9)
    block = network.n3blocks[0]
    assert (block.rule, block.k, block.window) == ("hard", 3, 9)
    assert block.embedding is None and block.temperature_net is None and block.distance_bn is None
    assert network.stages[1].layers[0].in_channels == 4 * 8


# ---------------------------------------------------------------- method


def test_registered_method_defaults_are_the_paper_settings():
    method = METHODS.get("n3net")()
    assert method.hparams == HPARAMS
    assert {key: HPARAMS[key] for key in ("stages", "depth", "features", "interm_channels", "k")} == {
        "stages": 3, "depth": 6, "features": 64, "interm_channels": 8, "k": 7,
    }  # fmt: skip
    assert (HPARAMS["patch_size"], HPARAMS["stride"], HPARAMS["window"], HPARAMS["temp_bias"]) == (10, 5, 15, 0.1)
    with pytest.raises(ParamsError, match="n3net has no hyper-parameters \\['kk'\\]"):
        N3NetMethod(kk=3)


def test_a_small_network_trains_on_40px_crops_with_a_7x7_window():
    """40 px crops have 7 patch positions a side: the 15×15 window needs ≥ 80 px, a 7×7 window fits."""
    method = METHODS.get("n3net")(stages=2, depth=4, features=16)
    with pytest.raises(ValueError, match="at least 80 px"):
        method.build_network(25)(torch.rand(1, 1, 40, 40))
    network = METHODS.get("n3net")(stages=2, depth=4, features=16, window=7).build_network(25)
    loss = network(torch.rand(4, 1, 40, 40)).square().mean()
    loss.backward()
    assert torch.isfinite(loss)


def test_official_files():
    method = N3NetMethod()
    assert sorted(method.official) == [25, 50, 70]
    remote = method.official_file(50)
    assert remote.url == (
        "https://raw.githubusercontent.com/visinf/n3net/5d5883a374aab343ca4091d8a072e83629d53516/"
        "results_gaussian_denoising/pretrained_sigma50/checkpoint/051_ckpt.t7"
    )
    assert (remote.size, remote.mirror_path) == (2_856_732, "pretrained/n3net_gaussian_sigma50.t7")
    with pytest.raises(ValueError, match="no official checkpoint for setting 15"):
        method.official_file(15)


# ---------------------------------------------------------------- official key mapping


def _official_layout() -> dict[str, tuple[int, ...]]:
    """The 140 keys and shapes of an official Gaussian checkpoint (n3net_spec.md §i)."""
    bn = ("weight", "bias", "running_mean", "running_var")
    keys: dict[str, tuple[int, ...]] = {}
    for s in range(3):
        keys |= {f"blocks.{s}.conv1.weight": (64, 1 if s == 0 else 64, 3, 3), f"blocks.{s}.conv1.bias": (64,)}
        keys |= {f"blocks.{s}.bn1.{p}": (64,) for p in bn}
        for m in (0, 3, 6, 9):
            keys[f"blocks.{s}.layer1.{m}.weight"] = (64, 64, 3, 3)
            keys |= {f"blocks.{s}.layer1.{m + 1}.{p}": (64,) for p in bn}
        out = 8 if s < 2 else 1
        keys |= {f"blocks.{s}.conv2.weight": (out, 64, 3, 3), f"blocks.{s}.conv2.bias": (out,)}
    for j, (net, out) in itertools.product(range(2), (("embedcnn", 8), ("tempcnn", 1))):
        keys |= {f"nls.{j}.{net}.0.weight": (64, 8, 3, 3), f"nls.{j}.{net}.3.weight": (64, 64, 3, 3)}
        keys |= {f"nls.{j}.{net}.{m}.{p}": (64,) for m in (1, 4) for p in bn}
        keys |= {f"nls.{j}.{net}.6.weight": (out, 64, 3, 3), f"nls.{j}.{net}.6.bias": (out,)}
    for j in range(2):
        keys |= {f"nls.{j}.n3aggregation.aggregation.nnn.bn.{p}": (1,) for p in bn}
    return keys


def _fake_official() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.rand(shape, generator=generator) + 0.5 for key, shape in _official_layout().items()}


@pytest.mark.parametrize(
    ("official", "ours"),
    [
        ("blocks.0.conv1.weight", "stages.0.layers.0.weight"),
        ("blocks.2.bn1.running_var", None),
        ("blocks.1.layer1.0.weight", "stages.1.layers.2.weight"),
        ("blocks.1.layer1.4.running_var", "stages.1.layers.6.running_var"),
        ("blocks.0.layer1.10.bias", "stages.0.layers.12.bias"),
        ("blocks.2.conv2.bias", "stages.2.layers.14.bias"),
        ("nls.1.embedcnn.4.running_mean", "n3blocks.1.embedding.4.running_mean"),
        ("nls.0.tempcnn.6.weight", "n3blocks.0.temperature_net.6.weight"),
        ("nls.1.n3aggregation.aggregation.nnn.bn.weight", "n3blocks.1.distance_bn.weight"),
    ],
)
def test_official_key_mapping(official, ours):
    assert official_key(official, last=14) == ours


def test_official_layout_converts_completely_and_loads_strictly(tmp_path):
    official = _fake_official()
    assert len(official) == 140
    path = tmp_path / "051_ckpt.t7"
    torch.save({"net": official, "epoch": 51}, path, _use_new_zipfile_serialization=False)
    method = N3NetMethod()
    state = method.import_official(path, 25)
    network = method.build_network(25)
    network.load_state_dict(state, strict=True)
    ours = network.state_dict()
    method.load(state, 25)  # the inference network (BatchNorm folded) loads the same state
    for key, value in official.items():
        name = official_key(key, last=14)
        if name is not None:
            assert torch.equal(ours[name], value), key
    assert ours["n3blocks.0.distance_bn.num_batches_tracked"].item() == 0


def test_unknown_or_unfitting_official_keys_are_refused():
    with pytest.raises(ValueError, match="matches no known pattern"):
        convert_official({**_fake_official(), "blocks.0.extra.weight": torch.zeros(1)}, N3Net())
    with pytest.raises(ValueError, match=r"do not fit.*unexpected \['n3blocks.0.embedding"):
        convert_official(_fake_official(), N3Net(embedding="identity"))


def test_import_refuses_other_checkpoint_layouts(tmp_path):
    torch.save(_fake_official(), tmp_path / "bare.t7")
    with pytest.raises(ValueError, match="expected the official"):
        N3NetMethod().import_official(tmp_path / "bare.t7", 25)


# ---------------------------------------------------------------- official weights (mirror)

#: per-image PSNR (raw output, dB) measured with this implementation, noise seed 0 (docs/models.md)
MEASURED = {25: {"01": 30.116, "05": 30.468}, 50: {"01": 27.267, "05": 26.916}, 70: {"01": 25.836, "05": 25.436}}


@pytest.mark.mirror
@pytest.mark.parametrize("sigma", [25, 50, 70])
def test_official_args_match_the_defaults(mirror, sigma):
    args = load_namespace_pickle(mirror / "pretrained" / f"n3net_gaussian_sigma{sigma}_args.pkl")["parsed_args"]
    assert args.sigma == sigma
    expected = {
        "ndncnn": HPARAMS["stages"], "nl_k": HPARAMS["k"], "nl_patchsize": HPARAMS["patch_size"],
        "nl_stride": HPARAMS["stride"], "nfeatures_interm": HPARAMS["interm_channels"],
    }  # fmt: skip
    assert {key: getattr(args, key) for key in expected} == expected
    assert args.dncnn == {"features": HPARAMS["features"], "depth": HPARAMS["depth"], "kernel": 3, "bn": True}
    assert args.embedcnn == {
        "features": HPARAMS["embed_features"], "depth": HPARAMS["embed_depth"], "kernel": 3, "bn": True,
        "nplanes_out": HPARAMS["embed_channels"],
    }  # fmt: skip
    assert args.nl_temp == {"external_temp": True, "temp_bias": HPARAMS["temp_bias"], "distance_bn": True}


@pytest.mark.mirror
@pytest.mark.parametrize("sigma", [25, 50, 70])
def test_official_weights_load_strictly_and_denoise(mirror, sigma):
    method = N3NetMethod()
    method.load(method.import_official(mirror / method.official_file(sigma).mirror_path, sigma), sigma)
    for stem, expected in MEASURED[sigma].items():  # two 256×256 Set12 images
        clean = np.asarray(Image.open(mirror / "datasets" / "set12" / f"{stem}.png")).astype(np.float32) / 255
        noisy = add_gaussian_noise(clean, sigma, dataset="set12", image=stem)
        score = psnr(method.restore(noisy, sigma), clean, quantize=False)
        assert score > psnr(noisy, clean, quantize=False) + 3
        assert score == pytest.approx(expected, abs=0.01)


def test_noise_map_network_takes_three_planes_and_carries_only_the_image():
    network = N3Net(stages=2, depth=3, features=8, interm_channels=4, k=3, window=5, noise_maps=True)
    assert network.stages[0].layers[0].in_channels == 3 and network.stages[-1].layers[-1].out_channels == 1
    stage = network.stages[0]
    torch.nn.init.zeros_(stage.layers[-1].weight)
    torch.nn.init.zeros_(stage.layers[-1].bias)
    x = torch.rand(2, 3, 30, 30)
    torch.testing.assert_close(stage(x), torch.cat([x[:, :1], torch.zeros(2, 3, 30, 30)], dim=1))
    assert network(x).shape == (2, 1, 30, 30)
