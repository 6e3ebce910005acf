"""Batch colorization of image files at full resolution: decode ahead, batch through the model,
write behind; every file ends in the status table (``colorize.status``), none stops the run.

``colorize_files`` overlaps the work: a thread pool decodes ahead (PIL, cv2 and numpy release
the GIL; one read per file, only L laid out), the main thread runs batches through the model
(``predict.predict_ab``), and a second pool resizes ab, converts back to RGB, encodes and
writes (``predict.recombine``). A file that fails is recorded with its reason in the returned
results and the status TSV; it never stops the run.
"""

from __future__ import annotations

import ctypes
import logging
import os
import tempfile
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from .colorspace import DEFAULT_SIZE, lightness
from .files import atomic_write_bytes, remove_stale_temporaries
from .imageio import DEFAULT_MAX_PIXELS, ImageDecodeError, is_image_name, load_image
from .manifest import walk  # the one link policy of every folder the project reads
from .predict import batch_size_for, predict_ab, recombine, working_l
from .status import (
    FATAL_WRITE_ERRNOS,
    Result,
    Results,
    StatusJournal,
    previous_status,
    run_settings,
    source_stamp,
)
from .tsv import printable_name

log = logging.getLogger("colorize.infer")

JPEG_QUALITY = 95
WEBP_QUALITY = 95
# Output formats OpenCV writes, kept as the input's; anything else (gif, jp2, tga, ...) -> .png.
_WRITABLE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".ppm"}


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


def write_bgr(path: Path, bgr: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> None:
    """Encode a BGR image (OpenCV's order) by extension and write atomically (``files.atomic_path``)."""
    ok, buf = cv2.imencode(path.suffix, bgr, _encode_params(path.suffix, jpeg_quality))
    if not ok:
        raise OSError(f"OpenCV could not encode {path.suffix}")
    atomic_write_bytes(path, buf)


def write_rgb(path: Path, rgb: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> None:
    """``write_bgr`` of an RGB image."""
    write_bgr(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), jpeg_quality)


class Input(NamedTuple):
    """One entry of a ``colorize`` run: the file, the name its output keeps, and, when the
    folder listing refused it (``manifest.walk``'s link policy, a hidden file), why: it then
    gets a ``skipped`` row in the status table and is never opened."""

    path: Path
    rel: PurePath
    refused: str = ""


FOLLOW_LINKS_HINT = "pass --follow-links"


def collect_inputs(
    paths: Sequence[str | Path],
    recursive: bool = False,
    exclude: Sequence[str | Path] = (),
    follow_links: bool = False,
    link_switch: str = FOLLOW_LINKS_HINT,
) -> list[Input]:
    """Files and folders -> ``Input`` rows, in a stable order (as Paths sort).

    A file named on the command line is always tried (and keeps its bare name). A folder is
    listed by ``manifest.walk``, the link policy the data stage uses too: its files with an
    image extension (``imageio.IMAGE_EXTENSIONS``), named relative to that folder, descending
    into sub-folders (and folders linked there from inside it) when ``recursive``; a link
    leaving the folder is refused unless ``follow_links`` (``link_switch`` says how to allow
    it); broken links, link loops, fifos and hidden files (names starting with ".") that look
    like images are refused, each with its reason, so that every one gets a row. Anything under
    ``exclude`` (e.g. the output folder, also when reached through a link) is not listed. A
    path that does not exist is returned too, so that it is reported as failed rather than
    silently dropped.
    """
    items: list[Input] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            items.append(Input(p, PurePath(p.name)))
            continue
        listing = walk(
            p, follow_external_links=follow_links, recursive=recursive, exclude=exclude,
            hidden=False, utf8_only=False, looks_wanted=is_image_name, link_switch=link_switch,
            what="input folder",
        )  # fmt: skip
        found = [(rel, "") for rel in listing.files] + list(listing.refused.items())
        found.sort(key=lambda item: item[0].split("/"))  # as Paths sort
        items.extend(Input(p / rel, PurePath(rel), why) for rel, why in found)
    return items


def one_malloc_arena() -> None:
    """Allocate from one glibc heap ("arena") in this process, not one per thread: each arena
    keeps what it frees, and with full-size images allocated in several threads that held
    ~80 MB more at peak for 20 photos of 6 MP (benchmarks/NOTES.md). Takes effect for arenas
    not created yet: colorize_files calls it before its threads start, a caller that loads a
    model first (torch starts threads) should call it before that. A no-op off glibc."""
    try:
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX (malloc.h)
    except (OSError, AttributeError):
        pass


@dataclass
class _Decoded:
    L_full: np.ndarray  # (H, W) uint16 (colorspace.pack_lightness): half of float32's memory
    L_work: np.ndarray  # (S, S) float32, normalised


def _decode(path: Path, size: int, max_pixels: int | None) -> _Decoded:
    # One read of the file, OpenCV's BGR order, only L laid out: rgb_to_lab(read_rgb(path))[..., 0].
    L = lightness(load_image(path, max_pixels=max_pixels, bgr=True), "BGR", np.uint16)
    return _Decoded(L, working_l(L, size))


def _encode(
    src: Path,
    dst: Path,
    L_full: np.ndarray,
    ab: np.ndarray,
    jpeg_quality: int,
    stamp: str,
    settings: str,
) -> Result:
    h, w = L_full.shape
    try:
        write_bgr(dst, recombine(L_full, ab, order="BGR"), jpeg_quality)
    except Exception as e:  # a full disk or a bad path costs this file, not the run
        return Result(
            str(src),
            None,
            "failed",
            f"cannot write {dst}: {e}",
            w,
            h,
            stamp,
            settings,
            errno=getattr(e, "errno", None),
        )
    return Result(str(src), str(dst), "ok", "", w, h, stamp, settings)


def colorize_files(
    model,
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

    ``model`` is a PyTorch colorizer or a ``runtime.OnnxColorizer`` (then PyTorch is never
    imported). ``inputs`` are paths, or (path, relative output name) pairs as ``collect_inputs``
    makes. A plain path is named relative to ``root`` when given (it must lie under it), else by its
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
    one_malloc_arena()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir)  # partial files of a run killed mid-write
    status_path = Path(status_path) if status_path is not None else output_dir / "status.tsv"
    settings = run_settings(model, size=size, jpeg_quality=jpeg_quality)
    previous = previous_status(status_path) if resume else {}
    results, jobs, n_resumed = _plan(inputs, output_dir, root, previous, settings)

    journal = StatusJournal(status_path)
    for r in results:
        if r is not None:
            journal.add(r)
    if n_resumed:
        log.info(
            "resuming: %d of %d images already done with the same model and options (%s)",
            n_resumed,
            len(inputs),
            status_path,
        )
    bar = tqdm(total=len(inputs), unit="img", disable=not progress, desc="colorize")
    bar.update(sum(r is not None for r in results))
    pipeline = _Pipeline(
        model,
        results,
        journal,
        bar,
        settings,
        size=size,
        max_pixels=max_pixels,
        jpeg_quality=jpeg_quality,
        batch_size=batch_size_for(model, batch_size),
        workers=max(1, int(workers or min(4, os.cpu_count() or 1))),
    )
    pipeline.run(jobs)
    bar.close()
    return _finish(results, inputs, journal, pipeline.stopped, n_resumed, output_dir)


def _plan(inputs, output_dir: Path, root, previous: dict, settings: str):
    """Each input's output name, and what needs no decoding: an input outside ``root``, an
    output another input claims or that would replace its input (failed rows), one an earlier
    run did with the same settings (``previous``; a resumed row). Returns (results, with None
    where a job remains; the jobs in input order; how many were resumed)."""
    results: list[Result | None] = [None] * len(inputs)
    jobs: list[tuple[int, Path, Path, str]] = []  # (index, source, destination, source stamp)
    claimed: dict[PurePath, str] = {}
    n_resumed = 0
    for i, item in enumerate(inputs):
        if isinstance(item, tuple):
            src, rel = Path(item[0]), PurePath(item[1])
            if len(item) > 2 and item[2]:  # refused by the folder listing: never opened
                results[i] = Result(str(src), None, "skipped", item[2])
                continue
        else:
            src = Path(item)
            if root is not None:
                try:
                    rel = PurePath(
                        Path(os.path.realpath(src)).relative_to(os.path.realpath(root)).as_posix()
                    )
                except ValueError:
                    results[i] = Result(
                        str(src), None, "failed", f"not under the input root {root}"
                    )
                    continue
            else:
                rel = PurePath(src.name)
        out_rel = output_relpath(rel)
        key = PurePath(out_rel.as_posix().lower())  # case-insensitive file systems clash too
        if key in claimed:
            results[i] = Result(
                str(src),
                None,
                "failed",
                f"output {out_rel} would overwrite the one from {claimed[key]}",
            )
            continue
        dst = output_dir / out_rel
        if os.path.realpath(dst) == os.path.realpath(src):  # realpath: no error on a link loop
            results[i] = Result(
                str(src),
                None,
                "failed",
                "the output would overwrite the input; choose another output folder",
            )
            continue
        claimed[key] = str(src)
        stamp = source_stamp(src)
        done = previous.get(printable_name(str(src)))
        if (
            done
            and stamp
            and done["source"] == stamp
            and done["settings"] == settings
            and done["output"] == printable_name(str(dst))
            and dst.is_file()
        ):
            results[i] = Result(str(src), str(dst), "ok", "", int(done["width"] or 0), int(done["height"] or 0),
                                stamp, settings, resumed=True)  # fmt: skip
            n_resumed += 1
            continue
        jobs.append((i, src, dst, stamp))
    return results, jobs, n_resumed


class _Pipeline:
    """Decode ahead (threads), predict in batches (the caller's thread), encode behind (threads),
    with at most ``batch_size + workers`` full-size images in flight: memory stays flat however
    many photos. Each finished file goes into ``results`` and the journal at once; a write that
    fails because the disk is full or read-only stops the run (``stopped`` says why)."""

    def __init__(
        self,
        model,
        results,
        journal,
        bar,
        settings,
        *,
        size,
        max_pixels,
        jpeg_quality,
        batch_size,
        workers,
    ):
        self.model, self.results, self.journal, self.bar, self.settings = (
            model,
            results,
            journal,
            bar,
            settings,
        )
        self.size, self.max_pixels, self.jpeg_quality = size, max_pixels, jpeg_quality
        self.batch_size, self.workers = batch_size, workers
        self.budget = batch_size + workers  # full-size images held at once, 2 bytes per pixel each
        self.stopped: str | None = None
        self.pending: deque[tuple[int, Path, Path, str, Future]] = deque()
        self.batch: list[tuple[int, Path, Path, str, _Decoded]] = []
        self.writes: dict[Future, int] = {}  # encode job -> its input's index

    def run(self, jobs: list[tuple[int, Path, Path, str]]) -> None:
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as self.decoders,
            ThreadPoolExecutor(self.workers, thread_name_prefix="encode") as self.encoders,
        ):
            todo = iter(jobs)
            self._refill(todo)
            while self.pending:
                i, src, dst, stamp, fut = self.pending.popleft()
                if self.stopped is not None:
                    fut.cancel()
                    continue
                try:
                    self.batch.append((i, src, dst, stamp, fut.result()))
                except ImageDecodeError as e:
                    self._finished(
                        i,
                        Result(
                            str(src), None, "failed", e.reason, source=stamp, settings=self.settings
                        ),
                    )
                except Exception as e:  # anything unexpected in one file is that file's problem
                    self._finished(
                        i,
                        Result(
                            str(src),
                            None,
                            "failed",
                            f"{type(e).__name__}: {e}",
                            source=stamp,
                            settings=self.settings,
                        ),
                    )
                if len(self.batch) == self.batch_size:
                    self._predict_batch()
                self._refill(todo)
            if self.batch and self.stopped is None:
                self._predict_batch()
            self._drain(0)

    def _finished(self, i: int, result: Result) -> None:
        self.results[i] = result
        self.journal.add(result)
        self.bar.update(1)
        if result.errno in FATAL_WRITE_ERRNOS and self.stopped is None:
            self.stopped = (
                f"not attempted: the run stopped after a write failed ({os.strerror(result.errno)})"
            )
            log.error(
                "stopping: cannot write the output of %s: %s",
                result.input,
                os.strerror(result.errno),
            )

    def _drain(self, limit: int) -> None:
        """Wait for encode jobs until at most ``limit`` are running."""
        while len(self.writes) > limit:
            done, _ = wait(self.writes, return_when=FIRST_COMPLETED)
            for fut in done:
                self._finished(self.writes.pop(fut), fut.result())

    def _refill(self, todo) -> None:
        """Start decoding the next files while the budget of images in flight allows."""
        while self.stopped is None:
            if len(self.pending) + len(self.batch) + len(self.writes) >= self.budget:
                if self.pending or not self.writes:
                    return
                self._drain(
                    len(self.writes) - 1
                )  # nothing decoded to batch: wait for a write to make room
                continue
            job = next(todo, None)
            if job is None:
                return
            self.pending.append(
                (*job, self.decoders.submit(_decode, job[1], self.size, self.max_pixels))
            )

    def _predict_batch(self) -> None:
        batch, self.batch = self.batch, []
        try:
            ab = predict_ab(self.model, np.stack([d.L_work for *_, d in batch]))
        except Exception as e:  # e.g. CUDA out of memory: these files fail, the run goes on
            log.exception("model failed on a batch of %d", len(batch))
            for i, src, _, stamp, d in batch:
                h, w = d.L_full.shape
                self._finished(
                    i,
                    Result(
                        str(src),
                        None,
                        "failed",
                        f"model failed: {type(e).__name__}: {e}",
                        w,
                        h,
                        stamp,
                        self.settings,
                    ),
                )
            return
        for (i, src, dst, stamp, d), a in zip(batch, ab):
            fut = self.encoders.submit(
                _encode, src, dst, d.L_full, a, self.jpeg_quality, stamp, self.settings
            )
            self.writes[fut] = i


def _finish(
    results, inputs, journal, stopped: str | None, n_resumed: int, output_dir: Path
) -> Results:
    """Every input's row (the ones never reached when the run stopped early say so), the
    complete status table, and the summary line."""
    final = Results(results)
    for i, r in enumerate(final):
        if r is None:  # never reached: the run stopped early
            final[i] = Result(
                str(inputs[i][0] if isinstance(inputs[i], tuple) else inputs[i]),
                None,
                "failed",
                stopped or "not attempted",
            )
    final.status_path = journal.finish(final)
    final.resumed = n_resumed
    final.stopped = stopped
    n_skipped = sum(r.status == "skipped" for r in final)
    n_failed = sum(not r.ok for r in final) - n_skipped
    log.info(
        "colorized %d of %d images into %s (%d failed, %d skipped, %d already done; status: %s)",
        len(final) - n_failed - n_skipped - n_resumed,
        len(final),
        output_dir,
        n_failed,
        n_skipped,
        n_resumed,
        final.status_path,
    )
    return final
