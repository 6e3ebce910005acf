"""End to end, several modules: inputs people really have through both the shard path and the inference path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from PIL import Image

from colorize.colorspace import lightness
from colorize.imageio import load_image
from colorize.infer import colorize_files
from colorize.manifest import SCAN_COLUMNS, scan, walk
from colorize.preprocess import PreprocessConfig, build_shard, prepare_image
from colorize.tsv import read_tsv, write_tsv
from helpers import mkdirs, tinted_model, upright_photo

COLORIZE = Path(sys.executable).with_name("colorize")
ORIENTATIONS = range(1, 9)
# How a camera stores an upright scene under each EXIF orientation: the inverse of what
# a viewer (PIL's exif_transpose) applies to show it upright.
STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # the viewer turns it back 90 degrees clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}
H, W = 40, 64  # upright: landscape, so a missed rotation changes the size


def save_oriented(
    path: Path, upright: np.ndarray, orientation: int, fmt: str, mode: str = "RGB"
) -> Path:
    """Store ``upright`` as a camera would: pixels as the sensor saw them + the EXIF tag."""
    im = stored(Image.fromarray(upright), orientation)
    im = im.convert(mode) if mode != "RGB" else im
    kw = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, exif=_exif(orientation), **kw)
    return path


def stored(im: Image.Image, orientation: int) -> Image.Image:
    return im if STORE[orientation] is None else im.transpose(STORE[orientation])


def _exif(o: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = o
    return exif


def L_of(rgb: np.ndarray) -> np.ndarray:
    return lightness(np.ascontiguousarray(rgb), "RGB")


@pytest.fixture(scope="module")
def oriented(tmp_path_factory) -> tuple[Path, dict[str, int], np.ndarray]:
    """32 photos: each of the 8 EXIF orientations as JPEG, PNG, WebP and TIFF."""
    root = tmp_path_factory.mktemp("oriented")
    upright = upright_photo()
    files = {}
    for fmt, ext in FORMATS.items():
        for o in ORIENTATIONS:
            rel = f"{fmt.lower()}/orient {o}{ext}"
            save_oriented(root / rel, upright, o, fmt)
            with Image.open(
                root / rel
            ) as im:  # the tag really is in the file, the pixels stored turned
                assert im.getexif().get(0x0112) == o, rel
                # (PIL reports a TIFF's size upright already: read the stored size from its tags)
                size = (im.tag_v2[256], im.tag_v2[257]) if fmt == "TIFF" else im.size
                assert size == ((W, H) if o < 5 else (H, W)), rel
            files[rel] = o
    return root, files, upright


def test_every_orientation_and_format_decodes_upright(oriented):
    root, files, upright = oriented
    for rel in files:
        rgb = load_image(root / rel)
        bgr = load_image(root / rel, bgr=True)
        assert rgb.shape == (H, W, 3), rel
        assert rgb.flags.c_contiguous and bgr.flags.c_contiguous, rel
        assert np.array_equal(bgr, rgb[..., ::-1]), rel
        assert np.abs(L_of(rgb) - L_of(upright)).mean() < 1.5, rel


def test_every_orientation_and_format_through_build_shard(oriented, tmp_path):
    """Stretch to a square: a photo left on its side would give a different picture."""
    root, files, upright = oriented
    cfg = PreprocessConfig(
        image_size=32, resize_policy="stretch", min_side=8, gray_chroma_threshold=0
    )
    rels = sorted(files)
    rows = [{"relpath": r, "sha256": f"{i:064x}"} for i, r in enumerate(rels)]
    counts = build_shard(
        rows,
        [root / r for r in rels],
        tmp_path / "s.h5",
        tmp_path / "s.tsv",
        "train",
        cfg,
        progress=False,
    )
    assert counts == {"ok": len(rels), "excluded": 0}
    Image.fromarray(upright).save(tmp_path / "upright.png")
    want = prepare_image(tmp_path / "upright.png", cfg)[..., 0]
    sideways = prepare_image(tmp_path / "upright.png", cfg)[
        ..., 0
    ].T  # what a missed rotation looks like
    assert np.abs(want - sideways).mean() > 5  # the check below can tell
    with h5py.File(tmp_path / "s.h5") as f:
        for rel, L in zip(f["relpath"][...], f["L"][...].astype(np.float32)):
            assert np.abs(L - want).mean() < 1.5, rel.decode()


def test_every_orientation_and_format_through_colorize_predict(oriented, tmp_path, checkpoint_file):
    root, files, upright = oriented
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [
            str(COLORIZE),
            "predict",
            "-q",
            "-m",
            str(checkpoint_file),
            "-o",
            str(out),
            "--size",
            "32",
            "-r",
            str(root),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    status = {r["input"]: r for r in read_tsv(out / "status.tsv")}
    assert len(status) == len(files)
    for rel in files:
        row = status[str(root / rel)]
        assert row["status"] == "ok", (rel, row["reason"])
        assert (int(row["width"]), int(row["height"])) == (W, H), rel
        got = cv2.cvtColor(
            cv2.imread(str(out / rel), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION),
            cv2.COLOR_BGR2RGB,
        )
        assert got.shape == (H, W, 3), rel  # upright size, not the stored one
        assert np.abs(L_of(got) - L_of(upright)).mean() < 2.0, rel  # upright, lightness kept


# -- a file name that is not UTF-8 -------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_recorded_not_fatal(tmp_path):
    root = mkdirs(tmp_path / "photos")
    bad = os.fsdecode(b"caf\xe9.jpg")
    Image.fromarray(upright_photo()).save(root / bad, format="JPEG")
    Image.fromarray(upright_photo(seed=1)).save(root / "fine.jpg")
    mkdirs(root / os.fsdecode(b"dir\xff"))
    Image.fromarray(upright_photo(seed=2)).save(root / os.fsdecode(b"dir\xff") / "inside.jpg")
    listing = walk(root)
    assert listing.files == ["fine.jpg"]
    assert "not valid UTF-8" in listing.refused["caf\\xe9.jpg"]
    assert "folder name is not valid UTF-8" in listing.refused["dir\\xff"]
    rows = scan(
        root,
        val_fraction=0.2,
        test_fraction=0.2,
        shards={"train": 1, "val": 1, "test": 1},
        min_side=8,
        progress=False,
    )
    write_tsv(rows, tmp_path / "scan.tsv", SCAN_COLUMNS)  # the manifest stays UTF-8
    (tmp_path / "scan.tsv").read_text(encoding="utf-8")
    by_name = {r["relpath"]: r["status"] for r in read_tsv(tmp_path / "scan.tsv")}
    assert by_name["fine.jpg"] == "ok" and "UTF-8" in by_name["caf\\xe9.jpg"]
    # the inference path takes it (the name is only shown escaped)
    results = colorize_files(
        tinted_model(), [root / bad, root / "fine.jpg"], tmp_path / "out", size=32, progress=False
    )
    assert [r.status for r in results] == ["ok", "ok"]
    assert (tmp_path / "out" / bad).is_file()
    assert read_tsv(tmp_path / "out" / "status.tsv")[0]["input"].endswith("caf\\xe9.jpg")


# -- a property-style sweep: formats x modes x orientations x sizes x names --------------------

MODES = {  # format -> modes it can store
    "JPEG": ["RGB", "L", "CMYK"],
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "I;16"],
    "WEBP": ["RGB", "RGBA"],
    "TIFF": ["RGB", "RGBA", "L", "CMYK", "I;16"],
    "BMP": ["RGB", "L", "P"],
    "GIF": ["P", "L"],
}
EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}
SIZES = [(40, 64), (64, 40), (33, 47), (9, 13), (1, 200), (257, 129)]
NAME_PARTS = [
    "photo",
    "two  spaces",
    " lead",
    "tab\t",
    "ünï",
    "写真",
    "a'b\"c",
    "#%&",
    "new\nline",
    "\\x41",
]


def generated_inputs(
    root: Path, n: int = 40, seed: int = 7
) -> list[tuple[Path, int, tuple[int, int]]]:
    """``n`` files of random format, mode, orientation, size and name; -> (path, orientation, upright (h, w))."""
    rng = np.random.default_rng(seed)
    out = []
    fmts = sorted(MODES)
    for i in range(n):
        fmt = fmts[i % len(fmts)]  # every format equally often
        mode = MODES[fmt][rng.integers(len(MODES[fmt]))]
        o = int(rng.integers(1, 9)) if fmt in EXIF_FORMATS else 1
        h, w = SIZES[rng.integers(len(SIZES))]
        name = f"{i:02d} {NAME_PARTS[rng.integers(len(NAME_PARTS))]}.{fmt.lower()}"
        im = stored(Image.fromarray(upright_photo(h, w, seed=i)), o)
        if mode == "I;16":
            im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
        elif mode != "RGB":
            im = im.convert(mode)
        kw = {"exif": _exif(o)} if fmt in EXIF_FORMATS else {}
        if fmt == "WEBP":
            kw["lossless"] = True
        im.save(root / name, format=fmt, **kw)
        out.append((root / name, o, (h, w)))
    return out


def upright_L(path: Path, h: int, w: int) -> np.ndarray:
    """The lightness of the scene the generated file was made from (not PIL's reading of it:
    PIL's exif_transpose turns some gray and CMYK TIFFs the wrong way)."""
    return L_of(upright_photo(h, w, seed=int(path.name[:2])))


def test_generated_inputs_through_both_paths(tmp_path):
    root = mkdirs(tmp_path / "in")
    cases = generated_inputs(root)
    cfg = PreprocessConfig(
        image_size=32, resize_policy="stretch", min_side=8, gray_chroma_threshold=3.0
    )
    rows = [{"relpath": p.name, "sha256": f"{i:064x}"} for i, (p, _, _) in enumerate(cases)]
    counts = build_shard(
        rows,
        [p for p, _, _ in cases],
        tmp_path / "s.h5",
        tmp_path / "s.tsv",
        "train",
        cfg,
        progress=False,
    )
    status = read_tsv(tmp_path / "s.tsv")
    assert [r["relpath"] for r in status] == [p.name for p, _, _ in cases]  # every name, exactly
    assert counts["ok"] + counts["excluded"] == len(cases)
    with h5py.File(tmp_path / "s.h5") as f:
        stored = dict(zip((s.decode() for s in f["relpath"][...]), f["L"][...].astype(np.float32)))
    for (path, o, (h, w)), row in zip(cases, status):
        reason = row["status"]
        if reason != "ok":  # a recorded, expected reason: never an unexpected decoder failure
            assert reason.startswith(("too small", "grayscale")), (path.name, reason)
            assert reason.startswith("grayscale") == (min(h, w) >= 8), (path.name, reason)
            continue
        ref = cv2.resize(upright_L(path, h, w), (32, 32), interpolation=cv2.INTER_AREA)
        corr = np.corrcoef(stored[path.name].ravel(), ref.ravel())[0, 1]
        assert corr > 0.8, (path.name, o, corr)  # upright (a wrong turn: < 0.3)

    results = colorize_files(
        tinted_model(),
        [p for p, _, _ in cases],
        tmp_path / "out",
        size=32,
        batch_size=3,
        workers=2,
        progress=False,
    )
    for (path, o, (h, w)), r in zip(cases, results):
        assert r.ok, (path.name, r.reason)  # any image, gray or tiny, can be colorized
        got = cv2.imread(r.output, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert got.shape[:2] == (h, w), (path.name, o)  # the upright size
        ref = upright_L(path, h, w)
        L = L_of(cv2.cvtColor(got, cv2.COLOR_BGR2RGB))
        assert np.corrcoef(L.ravel(), ref.ravel())[0, 1] > 0.8, (
            path.name,
            o,
        )  # upright (palettes: ~0.88)
