"""Score-CAM (Wang et al., CVPR-W 2020): activation maps weighted by masked-input scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LayerCAMBase, check_index, forward_capture, weighted_sum
from .layers import resolve_layer
from .postprocess import normalize

__all__ = ["ScoreCAM"]

_OUTPUTS = ("logit", "sigmoid", "softmax")
_WEIGHTINGS = ("score", "softmax")


class ScoreCAM(LayerCAMBase):
    r"""Score-CAM.

    Each channel's activation map is upsampled to the input size and min-max
    normalised, :math:`H^k = s(\mathrm{Up}(A^k))`; the input masked by it is scored:

    .. math::

        \alpha^c_k = f_c(X \circ H^k)\;[-\,f_c(X_b)], \qquad
        M^c = \sum_k \alpha^c_k A^k

    (Wang et al., eqs. 3-5; the baseline term :math:`f_c(X_b)` with
    :math:`X_b = 0` is used when ``baseline=True``). Every masked forward is shared
    by all targets of the image and run in batches of ``batch_size`` channels.

    Options
    -------
    output : {"logit", "sigmoid", "softmax"}
        What :math:`f_c` reads from the model: the logit (default), its sigmoid
        (multi-label confidence) or the softmax over classes (the authors' code).
    weighting : {"score", "softmax"}
        ``"score"``: :math:`\alpha^c_k` as above. ``"softmax"``: softmax of the
        scores over the channels :math:`k`, as pytorch-grad-cam does.
    baseline : bool
        Subtract the score of an all-zero input (the paper's increase of confidence).
    batch_size : int
        Masked images per forward pass.
    align_corners : bool
        Bilinear upsampling of the activation maps; pytorch-grad-cam uses ``True``.
    """

    name = "scorecam"
    needs_grad = False
    options = {"output": "logit", "weighting": "score", "baseline": False, "batch_size": 32, "align_corners": False}

    def __init__(self, **options):
        super().__init__(**options)
        if self.opts["output"] not in _OUTPUTS:
            raise ValueError(f"scorecam: unknown output {self.opts['output']!r}; valid: {', '.join(_OUTPUTS)}")
        if self.opts["weighting"] not in _WEIGHTINGS:
            raise ValueError(f"scorecam: unknown weighting {self.opts['weighting']!r}; valid: {', '.join(_WEIGHTINGS)}")
        if int(self.opts["batch_size"]) < 1:
            raise ValueError(f"scorecam: batch_size must be >= 1, got {self.opts['batch_size']}")

    def explain(self, model, images, index, valid, *, layer, differentiable):
        _, module = resolve_layer(model, layer)
        logits, acts = forward_capture(model, images, module, differentiable=differentiable, need_grad=False)
        check_index(index, logits.shape[1])
        with torch.no_grad():
            scores = self._channel_scores(model, images, acts.detach(), index)  # (B, D, K)
            if self.opts["weighting"] == "softmax":
                scores = torch.softmax(scores, dim=1)
        with torch.set_grad_enabled(differentiable):
            return weighted_sum(scores.transpose(1, 2).to(acts.dtype), acts, valid)

    def _read(self, out: torch.Tensor) -> torch.Tensor:
        if self.opts["output"] == "sigmoid":
            return torch.sigmoid(out)
        if self.opts["output"] == "softmax":
            return torch.softmax(out, dim=1)
        return out

    def _channel_scores(self, model, images, acts, index) -> torch.Tensor:
        """``f_c(X_b o H^k)`` for every image ``b``, channel ``k`` and target ``c``: (B, D, K).

        A channel whose activation map is constant has an all-zero mask, so its
        masked input is the zero image for every such channel: it is scored once.
        """
        b, d = acts.shape[:2]
        size = images.shape[-2:]
        bs = int(self.opts["batch_size"])
        out = acts.new_empty((b, d, index.shape[1]))
        for i in range(b):
            cls = index[i]
            flat = acts[i].flatten(1)
            varying = torch.nonzero(flat.amax(1) > flat.amin(1)).flatten()
            zero_score = None
            if self.opts["baseline"] or len(varying) < d:
                with torch.inference_mode():
                    zero_score = self._read(model(torch.zeros_like(images[i : i + 1])))[0, cls]
                out[i] = zero_score.clone()  # constant channels; overwritten below for the others
            for start in range(0, len(varying), bs):
                chans = varying[start : start + bs]
                up = F.interpolate(
                    acts[i : i + 1, chans], size=size, mode="bilinear", align_corners=bool(self.opts["align_corners"])
                )
                masks = normalize(up, relu=False)[0][:, None]  # (n, 1, H, W)
                with torch.inference_mode():
                    scores = self._read(model(images[i : i + 1] * masks))[:, cls]
                out[i, chans] = scores.clone()
            if self.opts["baseline"]:
                out[i] -= zero_score.clone()
        return out
