"""One scale rule for training and inference of every model.

The trainer fits each training image in the ``crop_size`` box (its long side becomes
``crop_size``, times the random scale jitter around 1) before cropping; a model therefore
only ever saw objects at that scale. The rule is stored in every checkpoint
(``state["scale"] = {"train_side": crop_size, "rule": "long_side"}``) and the loaders attach
it to the model (``model.scale``); inference resizes each image the same way (long side to
``train_side``) and brings the result back to the image size. A model without a stored rule
(checkpoints written before the rule) keeps the pipeline's ``max_side`` / ``min_side``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ScaleRule", "scale_rule", "resize_to_rule", "model_input"]

RULES = ("long_side",)


@dataclass(frozen=True)
class ScaleRule:
    """The scale a model was trained at.

    Attributes
    ----------
    train_side : int
        Side of the training crop box; ``rule="long_side"``: the image's long side is scaled
        to it (what :func:`trainer.data.build_transform` does before cropping).
    rule : str
    """

    train_side: int
    rule: str = "long_side"

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown scale rule {self.rule!r}; valid: {', '.join(RULES)}")
        if int(self.train_side) < 1:
            raise ValueError(f"train_side must be a positive number of pixels, got {self.train_side}")

    def size(self, h: int, w: int) -> tuple[int, int]:
        """The inference size of an ``h x w`` image (as ``ScaleJitter`` rounds: down)."""
        r = self.train_side / max(h, w)
        return max(1, int(h * r)), max(1, int(w * r))

    def as_dict(self) -> dict:
        return {"train_side": int(self.train_side), "rule": self.rule}


def scale_rule(state_or_model) -> ScaleRule | None:
    """The rule stored in a checkpoint dict (``state["scale"]``) or attached to a model
    (``model.scale``); ``None`` when there is none."""
    if isinstance(state_or_model, dict):
        got = state_or_model.get("scale")
    else:
        got = getattr(state_or_model, "scale", None)
    if got is None or isinstance(got, ScaleRule):
        return got
    return ScaleRule(int(got["train_side"]), got.get("rule", "long_side"))


def resize_to_rule(x: torch.Tensor, rule: ScaleRule | None) -> torch.Tensor:
    """Resize a ``(B, C, H, W)`` batch of ``[0, 1]`` images to the rule's inference size:
    bilinear with antialiasing, bit for bit what the trainer's ``ScaleJitter`` does;
    unchanged without a rule."""
    if rule is None:
        return x
    size = rule.size(*x.shape[-2:])
    if size == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def model_input(image, device, rule: ScaleRule | None) -> torch.Tensor:
    """A stored image as a normalised ``(1, 3, h, w)`` tensor at the rule's scale: resized
    in ``[0, 1]`` before the ImageNet normalisation, in the trainer's order."""
    from ..transforms import normalize, to_rgb_float

    rgb = torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1)[None].to(device)
    return normalize(resize_to_rule(rgb, rule))
