"""Logging set-up shared by the workflow's scripts and the CLI."""

from __future__ import annotations

import logging
import sys


def setup_logging(log_file=None, level=logging.INFO) -> None:
    """Log to stderr (seen on the console) and, for a Snakemake job, to its log file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)


def snakemake_log(snakemake) -> None:
    """``setup_logging`` for a Snakemake ``script:`` (its first log file, if any); an error
    that ends the script is written to the job's log too, not only to the console."""
    setup_logging(snakemake.log[0] if snakemake.log else None)

    def log_uncaught(exc_type, exc, tb):
        logging.getLogger("colorize").critical(
            "%s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb)
        )
        logging.shutdown()

    sys.excepthook = log_uncaught
