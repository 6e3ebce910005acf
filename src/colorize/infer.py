"""Batch inference at full resolution, as richzhang/colorization's ``postprocess_tens``.

For each photo: Lab of the full-resolution RGB; L resized (area) to the model's square working
size and normalised; a batch of those through the model gives normalised ab at working size;
ab is denormalised, resized (bilinear) back to the *original* size and recombined with the
*original* L. So the output has the input's size and, up to 8-bit rounding and gamut clipping,
the input's lightness: only colour is invented.

``colorize_files`` overlaps the work: a thread pool decodes ahead (PIL, cv2 and numpy release
the GIL; one read per file, only L laid out), the main thread runs batches through the model,
and a second pool resizes ab, converts back to RGB, encodes and writes. A file that fails is
recorded with its reason in the returned results and the status TSV; it never stops the run.

The status table is written as the run goes (one line per finished file, so a killed run
leaves what it did) and rewritten complete, in input order, at the end. Each row records the
input's size and modification time (``source``) and a fingerprint of the model and options
(``settings``): with ``resume``, a file whose row says ok, whose output is still there and
whose source and settings are unchanged is not done again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import tempfile
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .colorspace import denormalize_ab, lab_to_rgb, normalize_l
from .device import autocast, configure_backends, pick_device, to_device_format
from .imageio import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageDecodeError, as_rgb_uint8, load_image
from .models import load_checkpoint
from .preprocess import lightness
from .shards import iter_batches, shard_info
from .tsv import atomic_write_text, printable_name, read_tsv, row_line, table_text

log = logging.getLogger("colorize.infer")

DEFAULT_SIZE = 256  # the seed's working size; a checkpoint's own size wins when it records one
JPEG_QUALITY = 95
WEBP_QUALITY = 95
# Output formats OpenCV writes, kept as the input's; anything else (gif, jp2, tga, ...) -> .png.
_WRITABLE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".ppm"}


# --------------------------------------------------------------------------------------------
# The numeric core: L at working size in, ab at working size out, recombined at full size.


def load_model(checkpoint, device: str | torch.device | None = None) -> tuple[torch.nn.Module, dict]:
    """A checkpoint's model, in eval mode on ``device`` (None/"auto": CUDA when it works), and the checkpoint."""
    device = pick_device(device)
    configure_backends(device)
    model, ckpt = load_checkpoint(checkpoint, map_location=device)
    return to_device_format(model, device).eval(), ckpt


def working_size(ckpt: dict, default: int = DEFAULT_SIZE) -> int:
    """The square size a checkpoint's model works at: its recorded ``image_size``, else ``default``."""
    size = ckpt.get("image_size") or (ckpt.get("train_config") or {}).get("image_size")
    return int(size) if size else int(default)


def model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def working_l(L: np.ndarray, size: int) -> np.ndarray:
    """Full-size L (HxW, 0..100) -> normalised L at ``size`` x ``size`` (area when shrinking)."""
    h, w = L.shape
    if (h, w) == (size, size):
        small = L
    else:
        interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
        small = cv2.resize(L, (size, size), interpolation=interp)
    return normalize_l(small.astype(np.float32, copy=False))


def predict_ab(model: torch.nn.Module, L_norm: np.ndarray) -> np.ndarray:
    """Normalised L batch (B, S, S) -> ab in Lab units (B, 2, S, S) float32, on the model's device."""
    device = model_device(model)
    x = torch.from_numpy(np.ascontiguousarray(L_norm, dtype=np.float32)[:, None])
    if device.type == "cuda":
        x = x.pin_memory()
    x = to_device_format(x, device, non_blocking=True)
    with torch.inference_mode(), autocast(device):
        ab_norm = model.ab_from_output(model(x))
    return denormalize_ab(ab_norm.float()).cpu().numpy()


def ab_to_size(ab: np.ndarray, height: int, width: int) -> np.ndarray:
    """ab (2, s, s) -> (height, width, 2), bilinear (half-pixel centres, as torch's align_corners=False)."""
    hwc = np.ascontiguousarray(np.moveaxis(ab, 0, -1), dtype=np.float32)
    if hwc.shape[:2] == (height, width):
        return hwc
    return cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)


def recombine(L_full: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
    """Original-size L (HxW) + working-size ab (2, s, s) -> HxWx3 uint8 RGB at the original size."""
    h, w = L_full.shape
    return lab_to_rgb(L_full, ab_to_size(ab_small, h, w), keep_lightness=True)


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass when the caller does not say: 16 on CUDA; 4 on CPU, where
    batches of 16 measured about 2x slower per image than batches of 1-8 (cache misses)."""
    return 16 if torch.device(device).type == "cuda" else 4


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def colorize_arrays(
    model: torch.nn.Module, rgbs: Sequence[np.ndarray], size: int = DEFAULT_SIZE, batch_size: int | None = None
) -> list[np.ndarray]:
    """Colorize in-memory images (HxW, HxWx1, HxWx3 or HxWx4 uint8, any sizes) -> HxWx3 uint8 RGB each.

    Only the lightness of the input is used; the output keeps the input's size and L. Puts the
    model in eval mode; ``batch_size`` None is ``default_batch_size`` of the model's device.
    """
    model.eval()
    batch_size = batch_size or default_batch_size(model_device(model))
    out: list[np.ndarray] = []
    for sl in _batches(len(rgbs), batch_size):
        L_full = [lightness(as_rgb_uint8(rgb), "RGB") for rgb in rgbs[sl]]
        ab = predict_ab(model, np.stack([working_l(L, size) for L in L_full]))
        out.extend(recombine(L, a) for L, a in zip(L_full, ab))
    return out


# --------------------------------------------------------------------------------------------
# Shards (the test split): predictions at the shard's own size.


def predict_l_batch(model: torch.nn.Module, L: np.ndarray, size: int | None = None) -> np.ndarray:
    """L batch (B, H, W) in Lab units -> predicted ab (B, 2, H, W), via the working size ``size``."""
    b, h, w = L.shape
    if size is None or (h, w) == (size, size):
        return predict_ab(model, normalize_l(L))
    ab = predict_ab(model, np.stack([working_l(x, size) for x in L]))
    return np.stack([np.moveaxis(ab_to_size(a, h, w), -1, 0) for a in ab])


def predict_shard(
    model: torch.nn.Module, shard_path, size: int | None = None, batch_size: int | None = None
) -> np.ndarray:
    """Predicted ab (N, 2, H, W) float32 Lab units for every image of a shard, at the shard's size.

    ``size`` None (default) feeds the shard's own size to the model; another value resizes L to
    ``size`` and the prediction back, as full-resolution inference does.
    """
    model.eval()
    batch_size = batch_size or default_batch_size(model_device(model))
    parts = [predict_l_batch(model, L, size) for L, _, _ in iter_batches(shard_path, batch_size)]
    if not parts:
        _, size_stored = shard_info(shard_path)
        return np.zeros((0, 2, size_stored, size_stored), np.float32)
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# Files: decode ahead, batch through the model, write behind.


@dataclass
class Result:
    """What happened to one input file."""

    input: str
    output: str | None  # None when it failed
    status: str  # "ok" or "failed"
    reason: str = ""  # why it failed (empty when ok)
    width: int = 0
    height: int = 0
    source: str = ""  # the input's "bytes:mtime_ns" when it was read
    settings: str = ""  # fingerprint of the model and options that made the output
    resumed: bool = False  # done by an earlier run (--resume), not again
    errno: int | None = field(default=None, repr=False)  # of a failed write

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict:
        return {"input": self.input, "status": self.status, "output": self.output or "",
                "width": self.width or "", "height": self.height or "", "reason": self.reason,
                "source": self.source, "settings": self.settings}  # fmt: skip


STATUS_COLUMNS = ("input", "status", "output", "width", "height", "reason", "source", "settings")
# Write errors after which no further output can succeed: the run stops cleanly.
_FATAL_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class Results(list):
    """``colorize_files``' one ``Result`` per input, plus where the status table went."""

    status_path: Path | None = None
    resumed: int = 0  # done by an earlier run and skipped
    stopped: str | None = None  # why the run stopped before the end (a full or read-only disk)


class OutputNotWritable(OSError):
    """The output folder (or the status table's) cannot be created or written."""


def check_writable(folder) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it (a real write: the
    permission bits say nothing for root, nor about read-only mounts); else ``OutputNotWritable``
    with a one-line message naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".colorize-write-test-"):
            pass
    except OSError as e:
        raise OutputNotWritable(f"cannot write to {folder}: {e.strerror or e}") from None
    return folder


def source_stamp(path: Path) -> str:
    """An input's identity for --resume: its size and modification time."""
    try:
        st = Path(path).stat()
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def run_settings(model: torch.nn.Module, **options) -> str:
    """A short fingerprint of the model's weights and decoding and of the options that shape
    an output: a changed model or option makes every earlier output stale for --resume."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    head = getattr(model, "head", None)
    options = dict(options, temperature=getattr(head, "temperature", None),
                   chroma_gain=getattr(head, "chroma_gain", None), inference_version=1)
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class _StatusJournal:
    """The status table, appended one row per finished file (a killed run leaves what it did)
    and rewritten whole at the end. Write errors never stop the run: the final table goes, in
    that order, to ``path`` atomically, to ``path`` in place (a full disk may have room for a
    rewrite but not for a second copy), or to the temporary folder."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "w", encoding="utf-8")
            self._fh.write("\t".join(STATUS_COLUMNS) + "\n")
            self._fh.flush()
        except OSError as e:
            log.warning("cannot write the status table %s as the run goes: %s", path, e)
            self._close()

    def add(self, result: Result) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(row_line(result.row().values()) + "\n")
            self._fh.flush()
        except OSError as e:
            log.warning("cannot append to the status table %s: %s", self.path, e)
            self._close()

    def _close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None

    def finish(self, results: Sequence[Result]) -> Path:
        self._close()
        text = table_text([r.row() for r in results], STATUS_COLUMNS)
        try:
            return atomic_write_text(self.path, text)
        except OSError as first:
            try:
                with open(self.path, "w", encoding="utf-8") as fh:
                    fh.write(text)
                return self.path
            except OSError:
                fallback = Path(tempfile.gettempdir()) / f"colorize-status-{os.getpid()}.tsv"
                fallback.write_text(text, encoding="utf-8")
                log.error("could not write the status table to %s (%s); it is in %s", self.path,
                          first.strerror or first, fallback)
                return fallback


def output_relpath(relname: str | PurePath) -> PurePath:
    """The output's name: the input's, with a .png extension when OpenCV cannot write the input's format."""
    rel = PurePath(relname)
    return rel if rel.suffix.lower() in _WRITABLE_EXTENSIONS else rel.with_suffix(".png")


def _encode_params(suffix: str, jpeg_quality: int) -> list[int]:
    s = suffix.lower()
    if s in (".jpg", ".jpeg", ".jpe"):
        return [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    if s == ".webp":
        return [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY]
    return []


def write_rgb(path: Path, rgb: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> None:
    """Encode by extension and write atomically (temporary name, then rename)."""
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _encode_params(path.suffix, jpeg_quality))
    if not ok:
        raise OSError(f"OpenCV could not encode {path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def previous_status(path) -> dict[str, dict]:
    """The ok rows of an earlier run's status table (input -> row), for --resume."""
    try:
        rows = read_tsv(path)
    except (OSError, UnicodeDecodeError):
        return {}
    return {r["input"]: r for r in rows if r.get("status") == "ok" and r.get("settings")}


def collect_inputs(
    paths: Sequence[str | Path], recursive: bool = False, exclude: Sequence[str | Path] = ()
) -> list[tuple[Path, PurePath]]:
    """Files and folders -> (file, name to keep) pairs, in a stable order.

    A file named on the command line is always tried (and keeps its bare name); a folder
    contributes the files with an image extension (``imageio.IMAGE_EXTENSIONS``), named
    relative to that folder, descending into sub-folders when ``recursive``. Hidden files and
    anything under ``exclude`` (e.g. the output folder) are skipped. A path that does not exist
    is returned too, so that it is reported as failed rather than silently dropped.
    """
    excluded = [Path(e).resolve() for e in exclude]

    def is_excluded(p: Path) -> bool:
        rp = p.resolve()
        return any(rp == e or e in rp.parents for e in excluded)

    items: list[tuple[Path, PurePath]] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            items.append((p, PurePath(p.name)))
            continue
        pattern = "**/*" if recursive else "*"
        found = [
            f
            for f in p.glob(pattern)
            if f.is_file()
            and f.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
            and not is_excluded(f)
        ]
        items.extend((f, PurePath(f.relative_to(p).as_posix())) for f in sorted(found))
    return items


@dataclass
class _Decoded:
    L_full: np.ndarray  # (H, W) float32, 0..100
    L_work: np.ndarray  # (S, S) float32, normalised


def _decode(path: Path, size: int, max_pixels: int | None) -> _Decoded:
    # One read of the file, OpenCV's BGR order, only L laid out: rgb_to_lab(read_rgb(path))[..., 0].
    L = lightness(load_image(path, max_pixels=max_pixels, bgr=True), "BGR")
    return _Decoded(L, working_l(L, size))


def _encode(src: Path, dst: Path, L_full: np.ndarray, ab: np.ndarray, jpeg_quality: int, stamp: str,
            settings: str) -> Result:
    h, w = L_full.shape
    try:
        write_rgb(dst, recombine(L_full, ab), jpeg_quality)
    except Exception as e:  # a full disk or a bad path costs this file, not the run
        return Result(str(src), None, "failed", f"cannot write {dst}: {e}", w, h, stamp, settings,
                      errno=getattr(e, "errno", None))
    return Result(str(src), str(dst), "ok", "", w, h, stamp, settings)


def colorize_files(
    model: torch.nn.Module,
    inputs: Sequence[Path | str | tuple[Path | str, str | PurePath]],
    output_dir,
    *,
    root=None,
    size: int = DEFAULT_SIZE,
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    status_path=None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = JPEG_QUALITY,
    resume: bool = False,
) -> Results:
    """Colorize image files into ``output_dir``, keeping their relative names; never stops on a bad file.

    ``inputs`` are paths, or (path, relative output name) pairs as ``collect_inputs`` makes.
    A plain path is named relative to ``root`` when given (it must lie under it), else by its
    file name. Outputs keep the input's extension when OpenCV can write it (JPEG at
    ``jpeg_quality``), else become .png. Two inputs that would write the same output are an
    error for the second, and an output that would replace its own input is an error: never a
    silent overwrite. Returns one ``Result`` per input, in input order (``Results``: a list that
    also says where the status table went), and writes them to ``status_path`` (default
    ``output_dir/status.tsv``; a Snakemake rule whose output is the folder should put it beside
    the folder) as the run goes and complete at the end. ``resume``: skip the files an earlier
    run's status table at ``status_path`` lists as done with the same input and settings, whose
    output is still there. A write that fails costs that file; one that fails because the disk
    is full or read-only stops the run cleanly (the files not reached are listed as not
    attempted). ``batch_size`` None is ``default_batch_size`` of the model's device; ``workers``
    (threads decoding, and as many encoding) None is 4 or the number of CPU cores if fewer: more
    threads than cores add no speed, only full-resolution images in flight (``benchmarks/NOTES.md``).
    """
    model.eval()
    batch_size = batch_size or default_batch_size(model_device(model))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    status_path = Path(status_path) if status_path is not None else output_dir / "status.tsv"
    workers = max(1, int(workers or min(4, os.cpu_count() or 1)))
    settings = run_settings(model, size=size, jpeg_quality=jpeg_quality)
    previous = previous_status(status_path) if resume else {}

    results: list[Result | Future | None] = [None] * len(inputs)
    jobs: list[tuple[int, Path, Path, str]] = []  # (index, source, destination, source stamp)
    claimed: dict[PurePath, str] = {}
    n_resumed = 0
    for i, item in enumerate(inputs):
        if isinstance(item, tuple):
            src, rel = Path(item[0]), PurePath(item[1])
        else:
            src = Path(item)
            if root is not None:
                try:
                    rel = PurePath(src.resolve().relative_to(Path(root).resolve()).as_posix())
                except ValueError:
                    results[i] = Result(str(src), None, "failed", f"not under the input root {root}")
                    continue
            else:
                rel = PurePath(src.name)
        out_rel = output_relpath(rel)
        key = PurePath(out_rel.as_posix().lower())  # case-insensitive file systems clash too
        if key in claimed:
            results[i] = Result(
                str(src), None, "failed", f"output {out_rel} would overwrite the one from {claimed[key]}"
            )
            continue
        dst = output_dir / out_rel
        if dst.resolve() == src.resolve():
            results[i] = Result(
                str(src), None, "failed", "the output would overwrite the input; choose another output folder"
            )
            continue
        claimed[key] = str(src)
        stamp = source_stamp(src)
        done = previous.get(printable_name(str(src)))
        if (done and stamp and done["source"] == stamp and done["settings"] == settings
                and done["output"] == printable_name(str(dst)) and dst.is_file()):
            results[i] = Result(str(src), str(dst), "ok", "", int(done["width"] or 0), int(done["height"] or 0),
                                stamp, settings, resumed=True)  # fmt: skip
            n_resumed += 1
            continue
        jobs.append((i, src, dst, stamp))

    journal = _StatusJournal(status_path)
    for r in results:
        if isinstance(r, Result):
            journal.add(r)
    if n_resumed:
        log.info("resuming: %d of %d images already done with the same model and options (%s)", n_resumed,
                 len(inputs), status_path)
    bar = tqdm(total=len(inputs), unit="img", disable=not progress, desc="colorize")
    bar.update(sum(r is not None for r in results))
    prefetch = batch_size + 2 * workers  # decoded images in flight (full-size L: 4 bytes/pixel)
    max_writes = 2 * workers
    stopped: str | None = None  # why the run stopped early (the output disk is full ...)
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="decode") as decoders,
        ThreadPoolExecutor(workers, thread_name_prefix="encode") as encoders,
    ):
        pending: deque[tuple[int, Path, Path, str, Future]] = deque()
        writes: set[Future] = set()
        todo = iter(jobs)

        def refill() -> None:
            while len(pending) < prefetch and stopped is None:
                job = next(todo, None)
                if job is None:
                    return
                pending.append((*job, decoders.submit(_decode, job[1], size, max_pixels)))

        def finished(i: int, result: Result) -> None:
            nonlocal stopped
            results[i] = result
            journal.add(result)
            bar.update(1)
            if result.errno in _FATAL_WRITE_ERRNOS and stopped is None:
                stopped = f"not attempted: the run stopped after a write failed ({os.strerror(result.errno)})"
                log.error("stopping: cannot write the output of %s: %s", result.input, os.strerror(result.errno))

        def drain(limit: int) -> None:
            nonlocal writes
            while len(writes) > limit:
                done, writes = wait(writes, return_when=FIRST_COMPLETED)
                for fut in done:
                    finished(fut.index, fut.result())

        def run_batch(batch: list[tuple[int, Path, Path, str, _Decoded]]) -> None:
            try:
                ab = predict_ab(model, np.stack([d.L_work for *_, d in batch]))
            except Exception as e:  # e.g. CUDA out of memory: these files fail, the run goes on
                log.exception("model failed on a batch of %d", len(batch))
                for i, src, _, stamp, d in batch:
                    h, w = d.L_full.shape
                    finished(i, Result(str(src), None, "failed", f"model failed: {type(e).__name__}: {e}", w, h,
                                       stamp, settings))
                return
            for (i, src, dst, stamp, d), a in zip(batch, ab):
                fut = encoders.submit(_encode, src, dst, d.L_full, a, jpeg_quality, stamp, settings)
                fut.index = i
                results[i] = fut
                writes.add(fut)
            drain(max_writes)

        batch: list[tuple[int, Path, Path, str, _Decoded]] = []
        refill()
        while pending:
            i, src, dst, stamp, fut = pending.popleft()
            if stopped is not None:
                fut.cancel()
                continue
            refill()
            try:
                batch.append((i, src, dst, stamp, fut.result()))
            except ImageDecodeError as e:
                finished(i, Result(str(src), None, "failed", e.reason, source=stamp, settings=settings))
            except Exception as e:  # anything unexpected in one file is that file's problem
                finished(i, Result(str(src), None, "failed", f"{type(e).__name__}: {e}", source=stamp,
                                   settings=settings))
            if len(batch) == batch_size:
                run_batch(batch)
                batch = []
        if batch and stopped is None:
            run_batch(batch)
        drain(0)
    bar.close()

    final = Results(r.result() if isinstance(r, Future) else r for r in results)
    for i, r in enumerate(final):
        if r is None:  # never reached: the run stopped early
            final[i] = Result(str(inputs[i][0] if isinstance(inputs[i], tuple) else inputs[i]), None, "failed",
                              stopped or "not attempted")
    final.status_path = journal.finish(final)
    final.resumed = n_resumed
    final.stopped = stopped
    n_bad = sum(not r.ok for r in final)
    log.info(
        "colorized %d of %d images into %s (%d failed, %d already done; status: %s)",
        len(final) - n_bad - n_resumed,
        len(final),
        output_dir,
        n_bad,
        n_resumed,
        final.status_path,
    )
    return final
