"""colorize.device: the device choice, its logged CPU fallback, autocast on the CPU."""

from __future__ import annotations

import logging

import pytest
import torch

from colorize.device import autocast, pick_device


def test_fake_gpu_falls_back_to_cpu_with_a_log_line(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("COLORIZE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="colorize.device"):
        assert pick_device() == torch.device("cpu")
    assert "CUDA_VISIBLE_DEVICES='0'" in caplog.text and "falling back to CPU" in caplog.text
    with pytest.raises(RuntimeError, match="requested"):
        pick_device("cuda")
    monkeypatch.setenv("COLORIZE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
