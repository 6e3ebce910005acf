"""colorize.plots: the report's figures are real PNGs of the right size showing the data given,
written atomically in the format the extension names, without pyplot."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from colorize.plots import grid_figure, plot_history, save_figure, select_indices

# BGR, as cv2 reads them
RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)
YELLOW, CYAN, MAGENTA = (0, 255, 255), (255, 255, 0), (255, 0, 255)
TAB_BLUE, TAB_ORANGE, TAB_GREEN = (180, 119, 31), (14, 127, 255), (44, 160, 44)


def solid(bgr, size: int = 24) -> np.ndarray:
    """An RGB tile of one colour (the figures take RGB)."""
    return np.full((size, size, 3), bgr[::-1], np.uint8)


def pixels_near(img: np.ndarray, bgr, tol: int = 12) -> np.ndarray:
    """A mask of the pixels within ``tol`` of a colour in every channel."""
    return (np.abs(img.astype(int) - np.array(bgr)) <= tol).all(axis=2)


@pytest.mark.parametrize("total", [1, 2, 3, 7, 10, 100, 1001])
@pytest.mark.parametrize("n", [1, 2, 3, 8, 50])
def test_select_indices_spreads_evenly_from_first_to_last(total, n):
    picked = select_indices(total, n)
    assert picked == sorted(set(picked)) and len(picked) == min(n, total)
    assert picked[0] == 0 and all(0 <= i < total for i in picked)
    if min(n, total) >= 2:
        assert picked[-1] == total - 1
        gaps = np.diff(picked)
        assert gaps.max() - gaps.min() <= 1  # even: no two gaps differ by more than one
    assert select_indices(total, n) == picked  # no seed, no state


def test_select_indices_of_nothing():
    assert select_indices(0, 5) == select_indices(5, 0) == select_indices(-3, 2) == []


def test_a_grid_puts_each_image_in_its_column_and_row(tmp_path):
    columns = {
        "Grayscale": [solid(RED), solid(GREEN), solid(BLUE)],
        "Predicted": [solid(YELLOW), solid(CYAN), solid(MAGENTA)],
    }
    long_name = "holidays/1962/a rather long folder name/photo_0001.jpg"
    fig = grid_figure(columns, ["first.jpg", long_name], tile_inches=2.0, dpi=64)
    path = save_figure(fig, tmp_path / "grid.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[2] == 3
    height, width = img.shape[:2]
    assert width == 2 * 2 * 64 and abs(height - (3 * 2 + 0.35) * 64) < 1  # tiles + title strip

    axes = np.array(fig.axes).reshape(3, 2)  # rows x columns, as drawn
    assert [ax.get_title() for ax in axes[0]] == ["Grayscale", "Predicted"]
    assert [ax.get_title() for ax in axes[1:].ravel()] == [""] * 4
    labels = [ax.get_ylabel() for ax in axes[:, 0]]
    assert labels == ["first.jpg", "…" + long_name[-27:], ""]  # long names keep their end
    assert len(labels[1]) == 28 and all(ax.get_ylabel() == "" for ax in axes[:, 1])

    expected = [[RED, YELLOW], [GREEN, CYAN], [BLUE, MAGENTA]]
    for r in range(3):
        for c in range(2):
            box = axes[r, c].get_position()  # figure fraction, y upwards
            x, y = int(box.x0 * width + box.width * width / 2), int((1 - box.y0) * height)
            y -= int(box.height * height / 2)
            centre = img[y - 5 : y + 5, x - 5 : x + 5]
            assert pixels_near(centre, expected[r][c], tol=2).all(), (r, c, centre[5, 5])
    # the tiles fill most of the figure, the rest is the white page
    tiles = sum(pixels_near(img, bgr, tol=2).sum() for row in expected for bgr in row)
    assert tiles > 0.6 * width * height


@pytest.mark.parametrize(
    "ext, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF"), (".svg", b"<?xml")]
)
def test_a_figure_is_saved_in_the_format_its_extension_names(tmp_path, ext, magic):
    out = save_figure(grid_figure({"A": [solid(RED)]}), tmp_path / f"grid{ext}")
    assert out == tmp_path / f"grid{ext}" and out.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [f"grid{ext}"]


def test_a_figure_that_cannot_be_saved_leaves_the_old_file_and_no_temporary(tmp_path):
    old = tmp_path / "grid.nope"
    old.write_bytes(b"the previous figure")
    with pytest.raises(ValueError, match="nope"):  # matplotlib knows no such format
        save_figure(grid_figure({"A": [solid(RED)]}), old)
    assert old.read_bytes() == b"the previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.nope"]


def history(train_loss, val_loss, val_psnr) -> list[dict]:
    return [
        {"epoch": e + 1, "train_loss": t, "val_loss": v, "val_psnr": p}
        for e, (t, v, p) in enumerate(zip(train_loss, val_loss, val_psnr))
    ]


def curve_height(img: np.ndarray, bgr, x0: int, x1: int) -> float:
    """Mean row of a colour's pixels between columns x0 and x1 (smaller is higher up)."""
    rows, _ = np.nonzero(pixels_near(img[:, x0:x1], bgr))
    assert rows.size, f"no {bgr} pixels in columns {x0}..{x1}"
    return float(rows.mean())


def test_the_loss_curve_draws_each_series_where_its_values_are(tmp_path):
    falling = plot_history(
        history([1.0, 0.5, 0.2, 0.1], [1.2, 0.6, 0.3, 0.2], [18.0, 20.0, 23.0, 25.0]),
        tmp_path / "falling.png",
        title="unet",
    )
    rising = plot_history(
        history([0.1, 0.2, 0.5, 1.0], [0.2, 0.3, 0.6, 1.2], [25.0, 23.0, 20.0, 18.0]),
        tmp_path / "rising.png",
    )
    for path in (falling, rising):
        img = cv2.imread(str(path))
        assert img is not None and img.shape == (400, 700, 3)  # 7 x 4 inches at 100 dpi
    # left and right of the legend (upper centre): loss falls, PSNR rises, and the reverse
    left, right = (90, 200), (520, 620)
    img = cv2.imread(str(falling))
    for colour in (TAB_BLUE, TAB_ORANGE):
        assert curve_height(img, colour, *left) < curve_height(img, colour, *right)
    assert curve_height(img, TAB_GREEN, *left) > curve_height(img, TAB_GREEN, *right)
    img = cv2.imread(str(rising))
    for colour in (TAB_BLUE, TAB_ORANGE):
        assert curve_height(img, colour, *left) > curve_height(img, colour, *right)
    assert curve_height(img, TAB_GREEN, *left) < curve_height(img, TAB_GREEN, *right)


def test_a_loss_curve_with_missing_values_is_drawn(tmp_path):
    """An epoch without validation (None) is a gap, not an error; a title is drawn at the top."""
    rows = history([1.0, 0.5, 0.2], [None, 0.6, None], [None, None, 21.0])
    with_title = cv2.imread(str(plot_history(rows, tmp_path / "a.png", title="effnet_unet")))
    without = cv2.imread(str(plot_history(rows, tmp_path / "b.png")))
    assert with_title.shape == without.shape == (400, 700, 3)
    assert pixels_near(with_title, TAB_BLUE).sum() > 200  # the train loss line
    differ = (with_title != without).any(axis=2)
    assert differ[:40].any()  # the title's strip


def test_figures_are_drawn_without_pyplot(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from colorize.plots import grid_figure, plot_history, save_figure
        save_figure(grid_figure({{"A": [np.zeros((8, 8, 3), np.uint8)]}}), {str(tmp_path / "g.png")!r})
        plot_history([{{"epoch": 1, "train_loss": 1.0}}], {str(tmp_path / "h.png")!r})
        print("matplotlib.pyplot" in sys.modules)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert (tmp_path / "g.png").stat().st_size > 0 and (tmp_path / "h.png").stat().st_size > 0
