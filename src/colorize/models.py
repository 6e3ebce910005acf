"""Colorization networks: L (normalised, Bx1xHxW) in, ab (normalised, Bx2xHxW) out.

``build_model(ModelConfig(...))`` is the one factory. Every model returns its *raw* output
from ``forward`` (what the loss sees) and turns that into normalised ab with
``model.ab_from_output(out)`` (what inference uses), so a regression head (tanh, MSE) and a
classification head (ab bins, added later) share the training and inference code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("seed_ae", "unet")


@dataclass
class ModelConfig:
    arch: str = "seed_ae"  # "seed_ae" (the seed's Keras autoencoder, layer for layer) or "unet"
    base_channels: int = 32  # unet: channels of the first level, doubled at each level down
    depth: int = 4  # unet: number of down-sampling levels
    norm: str = "batch"  # unet: "batch", "group" or "none"
    loss: str = "mse"  # "mse": tanh regression of ab / 128, as the seed

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def _pad_to_multiple(x: torch.Tensor, m: int):
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class RegressionHead(nn.Module):
    """tanh output scaled to ab / 128 (the seed's head); loss: MSE."""

    out_channels = 2

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return out


def conv_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]


class SeedAE(nn.Module):
    """The seed notebook's autoencoder (SEED.md), 6,219,410 parameters.

    Encoder 64->512 with three stride-2 convolutions, decoder with nearest upsampling,
    tanh output; input sizes that are not a multiple of 8 are padded and cropped back.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = nn.Sequential(
            *conv_relu(1, 64, 2),
            *conv_relu(64, 128),
            *conv_relu(128, 128, 2),
            *conv_relu(128, 256),
            *conv_relu(256, 256, 2),
            *conv_relu(256, 512),
            *conv_relu(512, 512),
            *conv_relu(512, 256),
        )
        self.decoder = nn.Sequential(
            *conv_relu(256, 128),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *conv_relu(128, 64),
            nn.Upsample(scale_factor=2, mode="nearest"),
            *conv_relu(64, 32),
            *conv_relu(32, 16),
            nn.Conv2d(16, 2, 3, padding=1),
            nn.Tanh(),
            nn.Upsample(scale_factor=2, mode="nearest"),
        )
        self.head = RegressionHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = _pad_to_multiple(x, 8)
        return self.decoder(self.encoder(x))[..., :h, :w]

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return self.head.ab_from_output(out)


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(min(8, c), c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose batch, group or none")


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net with skip connections and normalisation; width ``base_channels``, ``depth`` levels."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        chans = [cfg.base_channels * 2**i for i in range(cfg.depth + 1)]
        self.inc = DoubleConv(1, chans[0], cfg.norm)
        self.downs = nn.ModuleList(DoubleConv(chans[i], chans[i + 1], cfg.norm) for i in range(cfg.depth))
        self.ups = nn.ModuleList(
            DoubleConv(chans[i + 1] + chans[i], chans[i], cfg.norm) for i in reversed(range(cfg.depth))
        )
        self.head = RegressionHead()
        self.out = nn.Conv2d(chans[0], self.head.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = _pad_to_multiple(x, 2**self.cfg.depth)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up in self.ups:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], dim=1))
        return torch.tanh(self.out(y))[..., :h, :w]

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return self.head.ab_from_output(out)


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.loss != "mse":
        raise ValueError(f"unknown loss {cfg.loss!r}; choose mse")
    if cfg.arch == "seed_ae":
        return SeedAE(cfg)
    if cfg.arch == "unet":
        return UNet(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}; choose one of {ARCHITECTURES}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
