"""colorize.pretrained: the ImageNet EfficientNet-Lite encoder's weights load right; its gray input is the lightness."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from colorize.colorspace import normalize_l, rgb_to_lab
from colorize.models import ModelConfig, build_model
from colorize.pretrained import INPUT_MEAN, INPUT_STD, efficientnet, lightness_to_input

torch.set_num_threads(1)
CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def square(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    crop = rgb[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def net():
    return efficientnet("efficientnet-lite0").eval()


@pytest.mark.parametrize("name, classes", [("chelsea", CATS), ("coffee", [ESPRESSO])])
def test_imagenet_weights_load_right_in_colour_and_in_gray(net, name, classes):
    rgb = square(getattr(skimage.data, name)())
    x = torch.from_numpy(
        ((rgb.astype(np.float32) - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)[None]
    )
    with torch.no_grad():
        top_colour = int(net(x).argmax())
    assert top_colour in classes, (name, top_colour)
    # gray: the colorizer's own input path, L only -> the encoder's classifier head
    model = build_model(ModelConfig(arch="effnet_unet")).eval()
    L = torch.from_numpy(normalize_l(rgb_to_lab(rgb)[..., 0]))[None, None]
    with torch.no_grad():
        top_gray = int(model.encoder.classify(L).argmax())
    assert top_gray in classes, (name, top_gray)


def test_gray_input_is_the_srgb_of_the_lightness():
    for v in (0, 30, 118, 200, 255):
        rgb = np.full((2, 2, 3), v, np.uint8)
        L = torch.from_numpy(normalize_l(rgb_to_lab(rgb)[..., 0]))[None, None]
        x = lightness_to_input(L)
        assert x.shape == (1, 3, 2, 2)
        assert torch.allclose(x * INPUT_STD + INPUT_MEAN, torch.full_like(x, float(v)), atol=0.6), v
