"""The ``colorize`` command: ``predict`` (photos -> colour photos, all or one ``--chunk`` of
them), ``gather-status`` (the chunks' status tables -> one), ``evaluate`` (test shards),
``export`` (a checkpoint -> ONNX), ``info`` (what a checkpoint is).

Exit status: 0 when at least one image was colorized (files that could not be read are listed
in the status file, not fatal), 1 when none could be, 2 for a usage error (bad option, missing
checkpoint, ``-o`` equal to the input folder), 3 when the run stopped early (disk full or
read-only: the status table lists what was not attempted; rerun to finish).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path

from . import __version__

log = logging.getLogger("colorize.cli")

EXIT_INCOMPLETE = 3  # a run stopped early (disk full, read-only): some photos were not attempted


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _quality(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be 1..100, got {value}")
    return value


def _chunk(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N): chunk K of N, K = 1..N."""
    from .chunks import check_chunk

    m = re.fullmatch(r"(\d+)/(\d+)", text.strip(), re.ASCII)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N (e.g. 3/8: the third of 8 chunks)")
    k, n = int(m.group(1)), int(m.group(2))
    try:
        check_chunk(k, n)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text}: {e}") from None
    return k, n


PREDICT_SIZE_HELP = (
    "square working size the model sees; the lightness is resized to PX x PX, the predicted "
    "colour resized back (default: the size recorded in the checkpoint, else 256)"
)


def _add_model_options(p: argparse.ArgumentParser, size_help: str = PREDICT_SIZE_HELP) -> None:
    p.add_argument(
        "--model",
        "-m",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="trained checkpoint (checkpoint.pt or best.pt written by training, or a .onnx from "
        "'colorize export', run with onnxruntime; default: the model that ships with colorize, an "
        "ImageNet-pretrained EfficientNet-Lite0 U-Net; see its card, src/colorize/shipped/MODEL_CARD.md)",
    )
    p.add_argument("--size", type=_positive_int, default=None, metavar="PX", help=size_help)
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="images per forward pass (default: 16 on CUDA, 4 on CPU); lower it if memory runs out",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the model runs: auto = CUDA when a GPU works, else CPU (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="threads decoding inputs ahead of the model, and as many encoding outputs "
        "(default: 4, or the number of CPU cores if fewer)",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bar and only warnings on stderr"
    )


def version_text() -> str:
    """What ``colorize --version`` prints: the package version, then the shipped model's name,
    weights digest and the colorize that trained it (``shipped.identity``)."""
    from .shipped import identity

    lines = [f"colorize {__version__}"]
    try:
        model = identity()
    except (OSError, ImportError, ValueError) as e:  # a broken installation says so
        lines.append(f"shipped model: unavailable ({e})")
    else:
        lines.append(
            f"shipped model: {model['name']} (weights sha256 {model['weights_sha256']}; "
            f"trained with colorize {model['trained_with'] or 'unknown'})"
        )
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """``--version``: like argparse's, with the text made only when asked for (it opens the
    shipped model)."""

    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None
    ):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``colorize`` command line: one sub-command per task (declarative: every option and its help)."""
    parser = argparse.ArgumentParser(
        prog="colorize",
        description="Colorize grayscale photos with a trained model (image-colorization pipeline).",
        epilog="Run 'colorize COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--version",
        action=VersionAction,
        help="print the package version and the shipped model's name and weights digest",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "predict",
        help="colorize image files or folders at full resolution",
        description="Colorize image files at their full resolution: the model predicts colour from the "
        "lightness at --size, the colour is resized back and combined with the original "
        "lightness. Outputs keep their names (relative to an input folder) and extension "
        "(formats OpenCV cannot write become .png). Unreadable files are listed with the "
        "reason in the status file and do not stop the run.",
        epilog="Exit status: 0 if at least one image was colorized (or --chunk selects none of the "
        "inputs), 1 if none, 2 on a usage error (a bad option, an unusable --model, -o equal to an "
        "input folder), 3 if the run stopped early (disk full or read-only: rerun to finish).",
    )
    _add_model_options(p)
    p.add_argument(
        "--output",
        "-o",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder for the colorized images (created if missing)",
    )
    p.add_argument(
        "--recursive",
        "-r",
        action="store_true",
        help="also colorize images in sub-folders of INPUT folders, keeping the sub-folder layout",
    )
    p.add_argument(
        "--follow-links",
        action="store_true",
        help="also follow symbolic links in INPUT folders whose target lies outside the folder "
        "(by default such a link gets a 'skipped' row and its target is never opened; links "
        "inside the folder are always followed; broken links, link loops, fifos and hidden "
        "files ('.name.jpg') get a 'skipped' row; a file named on the command line is always tried)",
    )
    p.add_argument(
        "--status",
        type=Path,
        default=None,
        metavar="TSV",
        help="where to write the per-file status table (input, status, output, width, height, "
        "reason) (default: DIR/status.tsv; with --chunk K/N: DIR/status.chunk-K-of-N.tsv)",
    )
    p.add_argument(
        "--chunk",
        type=_chunk,
        default=None,
        metavar="K/N",
        help="colorize only chunk K of N of the inputs (K = 1..N), for N jobs sharing one --output, "
        "e.g. a SLURM array --array=1-N with --chunk $SLURM_ARRAY_TASK_ID/N: a photo's chunk is a "
        "hash of its relative name, as in the workflow's colorize.chunks, so adding photos changes "
        "few chunks; each chunk writes its own status table; 'colorize gather-status' merges them",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=None,
        metavar="N",
        help="refuse images with more pixels than this, checked from the header before "
        "decoding (default: 100000000)",
    )
    p.add_argument(
        "--jpeg-quality",
        type=_quality,
        default=95,
        metavar="Q",
        help="quality of JPEG outputs, 1..100 (default: %(default)s)",
    )
    p.add_argument(
        "--chroma-gain",
        type=float,
        default=None,
        metavar="G",
        help="multiply the predicted colour's chroma by G (models with the regression head: mse "
        "or l1): 1 = as predicted; 1.15-1.3 paints more vividly at a small cost in accuracy "
        "(docs/models-and-quality.md, 'The shipped model', measures it) (default: the "
        "checkpoint's, 1 for the shipped model)",
    )
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip images the status table of an earlier run into the same place lists as done, "
        "when the input, the model and the options are unchanged and the output is still there; "
        "--no-resume redoes every image (default: resume)",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files and/or folders; a folder contributes its files with an image "
        "extension (jpg, png, tif, bmp, webp, gif, ...)",
    )
    p.set_defaults(func=cmd_predict, command_parser=p)

    g = sub.add_parser(
        "gather-status",
        help="merge the status tables of 'predict --chunk' runs into one",
        description="Merge the status tables that 'colorize predict --chunk K/N' runs wrote into one table "
        "of every input, in path order: what one run over all the inputs writes. Tables named "
        "status.chunk-K-of-N.tsv must be all N chunks of one N; an input listed twice is an error.",
        epilog="Exit status: 0 if at least one image was colorized, 1 if none, 2 on a usage error "
        "(a missing chunk, a file that is not a status table).",
    )
    g.add_argument(
        "--output",
        "-o",
        required=True,
        type=Path,
        metavar="TSV",
        help="the table to write, e.g. DIR/status.tsv",
    )
    g.add_argument(
        "tables",
        nargs="+",
        type=Path,
        metavar="TABLE",
        help="the chunks' status tables, e.g. DIR/status.chunk-*-of-8.tsv",
    )
    g.add_argument("--quiet", "-q", action="store_true", help=argparse.SUPPRESS)
    g.set_defaults(func=cmd_gather_status, command_parser=g)

    e = sub.add_parser(
        "evaluate",
        help="score a model and the gray baseline on test shards",
        description="Per-image PSNR, SSIM, colorfulness, chroma, ab-error AuC and vivid hits of a model and of the "
        "gray baseline (ab = 0) on HDF5 test shards; writes a per-image and a summary TSV.",
    )
    _add_model_options(
        e,
        "working size: the shards' images are resized to PX x PX for the model and the "
        "prediction resized back (default: the shards' own size)",
    )
    e.add_argument(
        "--per-image",
        required=True,
        type=Path,
        metavar="TSV",
        help="per-image metrics table to write",
    )
    e.add_argument(
        "--summary",
        required=True,
        type=Path,
        metavar="TSV",
        help="summary table to write: mean per method and PSNR minus the gray baseline's",
    )
    e.add_argument(
        "--by-source",
        type=Path,
        default=None,
        metavar="TSV",
        help="also write the summary per source: an image's source is the first folder of its "
        "path (the source name in a multi-source dataset)",
    )
    e.add_argument(
        "--name", default="model", help="the model's name in the tables (default: %(default)s)"
    )
    e.add_argument("shards", nargs="+", type=Path, metavar="SHARD", help="test shards (.h5)")
    e.set_defaults(func=cmd_evaluate, command_parser=e)

    x = sub.add_parser(
        "export",
        help="write a checkpoint as an ONNX model (runs without PyTorch)",
        description="Export a checkpoint's inference path (normalised L in, normalised ab out; dynamic "
        "batch, height and width; ONNX opset 17) with its working size and model card as metadata. "
        "'colorize predict --model OUT.onnx' runs it with onnxruntime, without importing PyTorch.",
    )
    x.add_argument(
        "--model",
        "-m",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="checkpoint to export (default: the shipped model)",
    )
    x.add_argument(
        "--onnx", required=True, type=Path, metavar="OUT.onnx", help="the ONNX file to write"
    )
    x.add_argument("--quiet", "-q", action="store_true", help="only warnings on stderr")
    x.set_defaults(func=cmd_export, command_parser=x, device="cpu", size=None)

    i = sub.add_parser(
        "info",
        help="print what a checkpoint is: its model card",
        description="Print the model card stored in a checkpoint (or a .onnx): architecture, parameters, "
        "training data, budget, device, time and the metrics at the end of training.",
    )
    i.add_argument(
        "model",
        nargs="?",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="checkpoint or .onnx (default: the shipped model)",
    )
    i.add_argument("--quiet", "-q", action="store_true", help=argparse.SUPPRESS)
    i.set_defaults(func=cmd_info, command_parser=i)
    return parser


def _fail(parser, message: str):
    """A bad input or output named on the command line: one line on stderr, exit status 2."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _load(args, parser, files: bool = False):
    """The model of ``--model`` (default: the shipped one) and its working size; ``files``: as
    file inference runs it (``shipped.load_for_inference``: on a CPU, the shipped model and any
    .onnx file in onnxruntime, without importing PyTorch)."""
    from .runtime import CheckpointError, working_size
    from .shipped import load_for_inference, resolve_checkpoint

    if args.model is None:
        try:
            args.model = resolve_checkpoint(None)
        except FileNotFoundError as e:
            _fail(parser, f"no --model given and {e}")
    if not args.model.is_file():
        _fail(parser, f"--model {args.model}: no such file")
    if args.model.suffix.lower() == ".onnx" and args.device == "cuda":
        log.warning(
            "%s runs with onnxruntime on the CPU; --device cuda applies to PyTorch checkpoints",
            args.model,
        )
    try:
        if files:
            model, ckpt = load_for_inference(
                args.model, args.device, getattr(args, "chroma_gain", None)
            )
        else:
            from .checkpoint import load_model

            model, ckpt = load_model(args.model, args.device)
    except ImportError as e:
        _fail(parser, f"--model {e}")
    except CheckpointError as e:
        _fail(parser, f"--model {e}")
    except Exception as e:
        _fail(parser, f"--model {args.model}: cannot load checkpoint ({type(e).__name__}: {e})")
    return model, args.size or working_size(ckpt), ckpt


def _writable(parser, *folders: Path) -> None:
    """Fail now (exit 2, one line) if an output folder cannot be written, not after the model work."""
    from .infer import OutputNotWritable, check_writable

    for folder in dict.fromkeys(folders):
        try:
            check_writable(folder)
        except OutputNotWritable as e:
            _fail(parser, f"output: {e}")


SKIPPED_SHOWN = 10  # skipped files named one per line; the rest are counted by reason


def _print_skipped(skipped, status_path) -> None:
    """Each skipped file on stderr, but a folder of 5,000 hidden ``._IMG_*.jpg`` copies gives
    ``SKIPPED_SHOWN`` lines and then one line counting the rest by reason (all are in the table)."""
    for r in skipped[:SKIPPED_SHOWN]:
        print(f"skipped: {r.input}: {r.reason}", file=sys.stderr)
    rest = skipped[SKIPPED_SHOWN:]
    if rest:
        kinds = Counter(r.reason.split(" (")[0] for r in rest)
        counted = ", ".join(f"{kind}: {n:,}" for kind, n in kinds.most_common())
        print(
            f"skipped: {len(rest):,} more ({counted}); every one is in {status_path}",
            file=sys.stderr,
        )


def cmd_predict(args, parser) -> int:
    """``colorize predict``: colorize photos and folders at full resolution; the exit status says how it went."""
    from .chunks import chunk_status_name, select_chunk
    from .imageio import DEFAULT_MAX_PIXELS
    from .infer import collect_inputs, colorize_files, one_malloc_arena

    status = args.status or args.output / (
        chunk_status_name(*args.chunk) if args.chunk else "status.tsv"
    )
    _writable(parser, args.output, status.parent)
    one_malloc_arena()  # before torch or onnxruntime start their threads (loading the model)
    model, size, _ = _load(args, parser, files=True)
    if args.chroma_gain is not None:
        head = getattr(model, "head", None)
        if head is None:
            _fail(
                parser,
                f"--chroma-gain: {args.model} is an ONNX model, whose decoding was fixed at export "
                "(export a checkpoint whose chroma_gain is set)",
            )
        if not hasattr(head, "chroma_gain"):
            _fail(
                parser,
                f"--chroma-gain: {args.model} has a {type(head).__name__}, not the regression "
                "head of mse or l1 (zhang models are tuned with their temperature)",
            )
        if not 0.5 <= args.chroma_gain <= 3:
            _fail(parser, f"--chroma-gain: {args.chroma_gain} is outside 0.5..3")
        model.head.chroma_gain = args.chroma_gain
    if any(Path(i).is_dir() and Path(i).resolve() == args.output.resolve() for i in args.inputs):
        _fail(
            parser,
            f"-o {args.output} is the input folder: the colorized images would replace the photos; "
            "choose another output folder",
        )
    inputs = collect_inputs(
        args.inputs, recursive=args.recursive, exclude=[args.output], follow_links=args.follow_links
    )
    if not inputs:
        print(f"colorize: no images found in {' '.join(args.inputs)}", file=sys.stderr)
        return 1
    chunk_note = ""
    if args.chunk:
        chunk_note = f" in chunk {args.chunk[0]}/{args.chunk[1]} ({len(inputs)} in all)"
        inputs = select_chunk(inputs, *args.chunk)
    results = colorize_files(
        model, inputs, args.output, size=size, batch_size=args.batch_size, workers=args.workers,
        progress=not args.quiet and sys.stderr.isatty(), status_path=status,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, jpeg_quality=args.jpeg_quality, resume=args.resume,
    )  # fmt: skip
    failed = [r for r in results if r.status == "failed"]
    skipped = [r for r in results if r.status == "skipped"]
    n_ok = len(results) - len(failed) - len(skipped)
    for r in failed:
        print(f"failed: {r.input}: {r.reason}", file=sys.stderr)
    _print_skipped(skipped, results.status_path)
    if results.stopped:
        print(
            f"stopped early: {results.stopped.removeprefix('not attempted: ')}; make room and run the same "
            "command again: what is done is skipped",
            file=sys.stderr,
        )
    done_before = f" ({results.resumed} already done)" if results.resumed else ""
    print(
        f"colorized {n_ok} of {len(results)} images{chunk_note} into {args.output}{done_before}; "
        f"{len(failed)} failed; {len(skipped)} skipped; status: {results.status_path}"
    )
    if results.stopped:
        return EXIT_INCOMPLETE
    return 0 if n_ok or not inputs else 1


def cmd_gather_status(args, parser) -> int:
    """``colorize gather-status``: the status tables of the chunks of one run, as one table."""
    from .chunks import GatherError, gather_status

    _writable(parser, args.output.parent)
    try:
        rows = gather_status(args.tables, args.output)
    except GatherError as e:
        _fail(parser, str(e))
    n_ok = sum(r["status"] == "ok" for r in rows)
    n_skipped = sum(r["status"] == "skipped" for r in rows)
    print(
        f"gathered {len(rows)} images from {len(args.tables)} tables into {args.output}: {n_ok} colorized, "
        f"{len(rows) - n_ok - n_skipped} failed, {n_skipped} skipped"
    )
    return 0 if n_ok else 1


def cmd_evaluate(args, parser) -> int:
    """``colorize evaluate``: score a model against the true colours and against gray on a folder."""
    from .evaluate import evaluate_shards
    from .shards import ShardError, check_shard

    for shard in args.shards:
        try:
            check_shard(shard)
        except ShardError as e:
            _fail(parser, f"SHARD {e}")
    _writable(
        parser,
        args.per_image.parent,
        args.summary.parent,
        *([args.by_source.parent] if args.by_source else []),
    )
    model, _, _ = _load(args, parser)
    _, summary = evaluate_shards(
        model,
        args.shards,
        args.per_image,
        args.summary,
        method=args.name,
        size=args.size,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.quiet and sys.stderr.isatty(),
        by_source_path=args.by_source,
    )
    for row in summary:
        print(
            f"{row['method']}: {row['n_images']} images, PSNR {row['psnr']:.2f} dB "
            f"({row['psnr_minus_gray']:+.2f} vs gray), SSIM {row['ssim']:.4f}, AuC {row['auc']:.4f}, "
            f"vivid hits {100 * row['vivid_hits_image_mean']:.1f} % per image "
            f"({100 * row['vivid_hits_pooled']:.1f} % pooled)"
        )
    return 0


def cmd_export(args, parser) -> int:
    """``colorize export``: a checkpoint as a self-contained file (TorchScript or ONNX)."""
    from .export import export_onnx

    if args.model is not None and args.model.suffix.lower() == ".onnx":
        _fail(parser, f"--model {args.model} is already an ONNX model")
    if args.onnx.suffix.lower() != ".onnx":
        _fail(parser, f"--onnx {args.onnx}: the file name must end in .onnx")
    _writable(parser, args.onnx.parent)
    model, _, ckpt = _load(args, parser)
    if importlib.util.find_spec("onnx") is None:
        _fail(parser, "exporting needs the onnx package: pip install -e .[onnx] (pinned in envs/)")
    path = export_onnx(model, ckpt, args.onnx)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; input L_norm (batch, 1, H, W), output ab_norm "
        f"(batch, 2, H, W), working size {ckpt.get('image_size') or '-'})"
    )
    return 0


def cmd_info(args, parser) -> int:
    """``colorize info``: what a checkpoint or ONNX file is (model, data, training, card)."""
    from .checkpoint import CheckpointError, describe, load_model, read_checkpoint
    from .shipped import resolve_checkpoint

    path = resolve_checkpoint(args.model)
    if not path.is_file():
        _fail(parser, f"CHECKPOINT {path}: no such file")
    try:
        ckpt = (
            load_model(path, "cpu")[1] if path.suffix.lower() == ".onnx" else read_checkpoint(path)
        )
    except (CheckpointError, ImportError) as e:
        _fail(parser, f"CHECKPOINT {e}")
    rows = describe(ckpt)
    width = max(len(k) for k, _ in rows)
    print(f"{path}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``colorize`` command: parse ``argv`` and run the sub-command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return args.func(args, args.command_parser)


if __name__ == "__main__":
    sys.exit(main())
