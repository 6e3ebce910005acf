"""The pip requirements and the conda environment pin the same versions."""

import re

import yaml

from conftest import REPO


def _pins(lines):
    pins = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_pip_and_conda_pins_agree():
    pip = _pins((REPO / "envs/requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs/colorize.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = _pins(pip_section)
    assert pip == conda
    assert pip["torch"] == "2.13.0"  # the CPU build on disk; any other version pulls a CUDA build
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert py == "python=3.11"
