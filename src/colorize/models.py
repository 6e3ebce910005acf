"""Colorization networks: L (normalised, Bx1xHxW) in, ab (normalised, Bx2xHxW) out.

``build_model(ModelConfig(...))`` is the one factory. Every model returns its *raw* output
from ``forward`` (what the loss sees) and turns that into normalised ab with
``model.ab_from_output(out)`` (what inference uses), so a regression head (tanh, MSE) and a
classification head (a distribution over ab bins, ``loss: zhang``; see ``colorize.quantize``)
share the training and inference code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .colorspace import AB_SCALE
from .quantize import REBALANCE_LAMBDA, TEMPERATURE, annealed_mean, gamut_bins, uniform_prior

ARCHITECTURES = ("seed_ae", "unet", "effnet_unet")
LOSSES = ("mse", "l1", "zhang")
REGRESSION_LOSSES = ("mse", "l1")  # the tanh regression head; they differ only in training


def dataclass_from_dict(cls, d: dict, what: str):
    """Build a settings dataclass from a dict; an unknown key is an error that names it."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)


@dataclass
class ModelConfig:
    """A model's architecture and loss (a ``models:`` entry's model keys; stored in checkpoints)."""

    arch: str = "seed_ae"  # "seed_ae" (the seed's Keras autoencoder, layer for layer) or "unet"
    base_channels: int = 32  # unet: channels of the first level, doubled at each level down
    depth: int = 4  # unet: number of down-sampling levels
    norm: str = "batch"  # unet: "batch", "group" or "none"
    loss: str = (
        "mse"  # "mse": tanh regression of ab / 128, as the seed; "l1": the same head, absolute
        # error; "zhang": ab-bin classification
    )
    temperature: float = (
        TEMPERATURE  # zhang: annealed-mean decoding (1 = mean, -> 0 = mode; paper 0.38)
    )
    rebalance_lambda: float = REBALANCE_LAMBDA  # zhang: class rebalancing (1 = none; paper 0.5)
    chroma_gain: float = 1.0  # mse, l1: decoding-only gain on the predicted ab (1 = as predicted)
    encoder: str = (
        "efficientnet-lite0"  # effnet_unet: the ImageNet-pretrained encoder (colorize.pretrained)
    )
    freeze_encoder: bool = True  # effnet_unet: keep the encoder fixed (else fine-tune it)
    encoder_lr_scale: float = 0.1  # effnet_unet, fine-tuned: the encoder's learning rate / lr

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return dataclass_from_dict(cls, d, "model")

    def to_dict(self) -> dict:
        return asdict(self)


def pad_to_multiple(x: torch.Tensor, m: int):
    """Pad (B, C, H, W) at the bottom and right, replicating the edge, to multiples of ``m``;
    returns the padded tensor and the original (H, W) to crop the output back to."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class RegressionHead(nn.Module):
    """tanh output scaled to ab / 128 (the seed's head); loss: MSE or L1.

    ``chroma_gain`` (decoding only, 1 = off) multiplies the predicted ab: MSE regresses to the
    mean colour and so paints too timidly; a gain chosen on validation photos restores some of
    the chroma (``benchmarks/quality.py --chroma-gain`` measures the trade against PSNR)."""

    out_channels = 2

    def __init__(self, chroma_gain: float = 1.0):
        super().__init__()
        self.chroma_gain = float(chroma_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return out if self.chroma_gain == 1.0 else (out * self.chroma_gain).clamp(-1.0, 1.0)


class ClassificationHead(nn.Module):
    """Logits over the in-gamut ab bins (Zhang et al. 2016), decoded with the annealed mean.

    Buffers (saved in the state_dict, so a checkpoint carries them): ``bin_centers`` (Q, 2)
    in Lab units and ``prior`` (Q,), the training set's smoothed ab prior (uniform until
    training sets it). ``temperature`` may be changed after loading to decode differently.
    """

    def __init__(self, temperature: float = TEMPERATURE):
        super().__init__()
        centres = gamut_bins()
        self.register_buffer("bin_centers", torch.from_numpy(centres.copy()))
        self.register_buffer("prior", torch.from_numpy(uniform_prior(len(centres))).float())
        self.temperature = float(temperature)

    @property
    def out_channels(self) -> int:
        return len(self.bin_centers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # logits; the loss applies log_softmax

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return annealed_mean(out, self.bin_centers, self.temperature) / AB_SCALE


def make_head(cfg: ModelConfig) -> nn.Module:
    """The output head of ``cfg.loss``: regression for mse and l1, ab-bin classification for zhang."""
    if cfg.loss in REGRESSION_LOSSES:
        return RegressionHead(cfg.chroma_gain)
    if cfg.loss == "zhang":
        return ClassificationHead(cfg.temperature)
    raise ValueError(f"unknown loss {cfg.loss!r}; choose one of {LOSSES}")


def conv_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    """A 3x3 convolution (padding 1) and a ReLU, as a list to splice into a Sequential."""
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]


class SeedAE(nn.Module):
    """The seed notebook's autoencoder (SEED.md), 6,219,410 parameters.

    Encoder 64->512 with three stride-2 convolutions, decoder with nearest upsampling,
    tanh output; input sizes that are not a multiple of 8 are padded and cropped back.
    With ``loss: zhang`` the last convolution gives one logit per ab bin instead (no tanh).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        head = make_head(cfg)
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
            nn.Conv2d(16, head.out_channels, 3, padding=1),
            head,  # tanh (the seed) or logits; in place of the seed's Tanh, so its state_dict keys stay
            nn.Upsample(scale_factor=2, mode="nearest"),
        )

    @property
    def head(self) -> nn.Module:
        return self.decoder[-2]

    @property
    def output_conv(self) -> nn.Conv2d:
        """The last convolution, which feeds the head."""
        return self.decoder[-3]

    size_multiple = 8  # three stride-2 convolutions: inputs are padded to a multiple of this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.size_multiple)
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
    """Two 3x3 convolutions, each with its normalisation and ReLU: one U-Net level."""

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
        self.downs = nn.ModuleList(
            DoubleConv(chans[i], chans[i + 1], cfg.norm) for i in range(cfg.depth)
        )
        self.ups = nn.ModuleList(
            DoubleConv(chans[i + 1] + chans[i], chans[i], cfg.norm)
            for i in reversed(range(cfg.depth))
        )
        self.head = make_head(cfg)
        self.out = nn.Conv2d(chans[0], self.head.out_channels, 1)

    @property
    def output_conv(self) -> nn.Conv2d:
        """The last convolution, which feeds the head."""
        return self.out

    @property
    def size_multiple(self) -> int:
        """``depth`` poolings: inputs are padded to a multiple of this."""
        return 2**self.cfg.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.size_multiple)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up in self.ups:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], dim=1))
        return self.head(self.out(y))[..., :h, :w]

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return self.head.ab_from_output(out)


DECODER_CHANNELS = (160, 80, 48, 32, 16)  # effnet_unet's decoder, at strides 16, 8, 4, 2, 1


class PretrainedUNet(nn.Module):
    """L -> pretrained EfficientNet-Lite features -> U-Net decoder -> the head (mse or zhang)."""

    def __init__(self, cfg, pretrained: bool = True):
        from .pretrained import Encoder

        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder, pretrained)
        self.freeze_encoder = bool(cfg.freeze_encoder)
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
        enc = self.encoder.channels  # strides 2, 4, 8, 16, 32
        self.ups = nn.ModuleList()
        below = enc[-1]
        for skip, width in zip([*reversed(enc[:-1]), 1], DECODER_CHANNELS):
            self.ups.append(DoubleConv(below + skip, width, "batch"))
            below = width
        self.head = make_head(cfg)
        self.out = nn.Conv2d(DECODER_CHANNELS[-1], self.head.out_channels, 1)

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.out

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # BatchNorm statistics stay ImageNet's, frozen or fine-tuned
        return self

    size_multiple = 32  # the encoder's output stride: inputs are padded to a multiple of this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, self.size_multiple)
        if self.freeze_encoder:
            with torch.no_grad():
                feats = self.encoder(x)
        else:
            feats = self.encoder(x)
        y = feats[-1]
        for up, skip in zip(self.ups, [*reversed(feats[:-1]), x]):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip.to(y.dtype)], dim=1))
        return self.head(self.out(y))[..., :h, :w]

    def ab_from_output(self, out: torch.Tensor) -> torch.Tensor:
        return self.head.ab_from_output(out)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser groups: the decoder at ``lr``; a fine-tuned encoder at ``lr * encoder_lr_scale``."""
        decoder = [p for n, p in self.named_parameters() if not n.startswith("encoder.")]
        groups = [{"params": decoder, "lr": lr, "name": "decoder"}]
        if not self.freeze_encoder:
            groups.append(
                {
                    "params": list(self.encoder.parameters()),
                    "lr": lr * self.cfg.encoder_lr_scale,
                    "name": "encoder",
                }
            )
        return groups


@torch.no_grad()
def init_logits_to(model: nn.Module, distribution, floor: float = 1e-6) -> None:
    """Set a classification model's output bias to ``log(distribution)`` (Q,), so that training
    starts from that colour distribution instead of a uniform one over all bins (saves the
    first hundreds of steps, which matters on a short budget). Probabilities are floored."""
    p = torch.as_tensor(distribution, dtype=torch.float64).clamp_min(floor)
    conv = model.output_conv
    conv.bias.copy_(torch.log(p / p.sum()).to(conv.bias))


def build_model(cfg: ModelConfig, pretrained: bool = True) -> nn.Module:
    """The model of ``cfg``; ``pretrained=False`` skips reading an encoder's ImageNet weights
    (a checkpoint is about to overwrite them)."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose one of {LOSSES}")
    if cfg.arch == "seed_ae":
        return SeedAE(cfg)
    if cfg.arch == "unet":
        return UNet(cfg)
    if cfg.arch == "effnet_unet":
        return PretrainedUNet(cfg, pretrained)
    raise ValueError(f"unknown architecture {cfg.arch!r}; choose one of {ARCHITECTURES}")


def count_parameters(model: nn.Module, trainable: bool = False) -> int:
    """Number of parameters of ``model`` (only those that train when ``trainable``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def param_groups(model: nn.Module, lr: float) -> list[dict]:
    """Optimiser parameter groups: the model's own (a frozen or slower encoder), else one group."""
    if hasattr(model, "param_groups"):
        return model.param_groups(lr)
    return [{"params": list(model.parameters()), "lr": lr}]
