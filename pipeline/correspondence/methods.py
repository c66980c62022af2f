"""Correspondence methods behind one interface: ``predict(pair) -> Prediction`` (scores, inliers, E, pose).

Registered in :data:`MATCHERS`:

``ransac``
    OpenCV five-point RANSAC + ``recoverPose`` on all putatives (the spec's protocol (c)).
``cnet``, ``n3net-cnet``
    :class:`models.cnet.CorrespondenceNet` without / with the N³ block (k = 3). Pose by protocol
    ``"ransac"`` (keep logits ≥ 0, then RANSAC: the paper-era test protocol (b)) or ``"weighted8"`` (the
    weighted eight-point E decomposed on the top 10 % by logit: protocol (a), used for validation).

The RANSAC threshold τ_R is in calibrated units; its default 0.01 is the 2018 code's value (spec §3.1).
A trained matcher is stored as ``{"state_dict", "method", "hparams"}`` (:func:`load_matcher` reads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.cnet import CorrespondenceNet, inlier_weights, weighted_eight_point
from pipeline.correspondence.geometry import Pose, essential, pose_from_essential, pose_ransac
from pipeline.correspondence.tables import Pair
from pipeline.errors import UserError
from pipeline.registry import Registry

PROTOCOLS = ("ransac", "weighted8")
DEFAULT_RANSAC_THRESHOLD = 0.01


@dataclass(frozen=True)
class Prediction:
    """Per-match inlier ``scores`` (higher = more likely inlier), the predicted ``inliers``, E and the pose."""

    scores: np.ndarray
    inliers: np.ndarray
    E: np.ndarray | None
    pose: Pose | None


class Matcher:
    """A correspondence method: classifies putative matches and estimates the relative pose."""

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = False

    def __init__(self, threshold: float = DEFAULT_RANSAC_THRESHOLD, prob: float = 0.999, seed: int = 0) -> None:
        self.threshold, self.prob, self.seed = threshold, prob, seed

    def settings(self) -> dict[str, Any]:
        """What a metric computed with this matcher depends on (recorded next to it)."""
        return {"ransac_threshold": self.threshold, "ransac_prob": self.prob, "ransac_seed": self.seed}

    def ransac(self, xs: np.ndarray, keep: np.ndarray) -> Pose | None:
        return pose_ransac(xs, keep, self.threshold, self.seed, self.prob)

    def predict(self, pair: Pair) -> Prediction:
        raise NotImplementedError


MATCHERS: Registry[type[Matcher]] = Registry("correspondence method")


@MATCHERS.register("ransac")
class Ransac(Matcher):
    """RANSAC on every putative match; its inlier set is the winning candidate's cheirality inliers."""

    name = "ransac"

    def predict(self, pair: Pair) -> Prediction:
        pose = self.ransac(pair.xs, np.ones(len(pair), dtype=bool))
        inliers = pose.inliers if pose is not None else np.zeros(len(pair), dtype=bool)
        return Prediction(inliers.astype(np.float32), inliers, essential(pose.R, pose.t) if pose else None, pose)


def top_fraction(logits: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """CNet's protocol-(a) mask: logits ≥ the ``max(1, ⌊N·fraction⌋)``-th largest (0-based) logit."""
    ranked = np.sort(logits)[::-1]
    return logits >= ranked[min(max(1, int(len(logits) * fraction)), len(logits) - 1)]


class LearnedMatcher(Matcher):
    """A :class:`CorrespondenceNet` followed by a pose protocol; ``architecture`` fixes the variant."""

    trainable = True
    architecture: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        network: torch.nn.Module | None = None,
        protocol: str = "ransac",
        threshold: float = DEFAULT_RANSAC_THRESHOLD,
        prob: float = 0.999,
        seed: int = 0,
        **hparams: Any,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown pose protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
        super().__init__(threshold, prob, seed)
        self.protocol = protocol
        self.network = network if network is not None else self.build_network(**hparams)

    @classmethod
    def build_network(cls, **hparams: Any) -> CorrespondenceNet:
        """A freshly initialised network of this variant; ``hparams`` override the architecture."""
        return CorrespondenceNet(**{**cls.architecture, **hparams})

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "protocol": self.protocol}

    def logits(self, xs: np.ndarray) -> torch.Tensor:
        """Logits of one pair (the network in eval mode; its previous mode is restored)."""
        training = self.network.training
        self.network.eval()
        try:
            with torch.inference_mode():
                parameter = next(self.network.parameters())
                return self.network(torch.as_tensor(xs, device=parameter.device)[None])[0].float().cpu()
        finally:
            self.network.train(training)

    def predict(self, pair: Pair) -> Prediction:
        logits = self.logits(pair.xs)
        scores = logits.numpy()
        if self.protocol == "ransac":
            pose = self.ransac(pair.xs, scores >= 0)
            return Prediction(scores, scores >= 0, essential(pose.R, pose.t) if pose else None, pose)
        e_hat = weighted_eight_point(torch.as_tensor(pair.xs), inlier_weights(logits)).double().numpy()
        E = e_hat.reshape(3, 3)
        return Prediction(scores, scores >= 0, E, pose_from_essential(E, pair.xs, top_fraction(scores)))


@MATCHERS.register("cnet")
class CNet(LearnedMatcher):
    name = "cnet"


@MATCHERS.register("n3net-cnet")
class N3NetCNet(LearnedMatcher):
    name = "n3net-cnet"
    architecture: ClassVar[dict[str, Any]] = {"n3_k": 3}


def checkpoint_metadata(method: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`load_matcher` needs besides the weights (``pipeline.train.save_model`` metadata)."""
    return {"method": method, "hparams": dict(hparams)}


def load_matcher(name: str, weights: Path | None = None, device: str = "cpu", **settings: Any) -> Matcher:
    """The registered matcher ``name``; learned ones load ``weights`` (a ``model.pt`` written after training).

    ``settings`` are constructor arguments: ``threshold``, ``prob``, ``seed`` and, for learned ones,
    ``protocol``.
    """
    cls = MATCHERS.get(name)
    if not issubclass(cls, LearnedMatcher):
        return cls(**settings)
    if weights is None:
        raise UserError(f"correspondence method {name!r} is learned: give the model.pt written by its training")
    payload = torch.load(Path(weights), map_location="cpu", weights_only=True)
    if payload.get("method") != name:
        raise UserError(f"{weights} holds a {payload.get('method')!r} model, not {name!r}")
    network = cls.build_network(**payload["hparams"])
    network.load_state_dict(payload["state_dict"], strict=True)
    return cls(network=network.to(device).eval(), **settings)
