"""Figures say what they show: maps get a colorbar of their values, boxes a legend (camlib.viz);
camlib's progress bars obey one switch; the course build's HTML pages carry their own MathJax."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from camlib import config, viz  # noqa: E402


def _colorbars(fig):
    """The colorbar axes of a figure (show_map puts each in an inset beside its panel)."""
    return [c for a in fig.axes for c in [a, *a.child_axes] if hasattr(c, "_colorbar")]


def _legend_texts(ax):
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def test_show_map_keeps_the_values_and_shows_them_in_a_colorbar():
    img = torch.zeros(3, 16, 16, dtype=torch.uint8)
    weak = torch.full((16, 16), -3.0)                  # the image's size: drawn as it is
    weak[1, 2] = -1.0                                  # a weak map: low values everywhere
    fig, ax = plt.subplots()
    viz.show_map(img, weak, ax=ax)
    overlay = ax.get_images()[-1]
    lo, hi = overlay.get_clim()
    assert lo == pytest.approx(-3.0) and hi == pytest.approx(-1.0)   # not silently rescaled to [0, 1]
    bars = _colorbars(fig)
    assert len(bars) == 1 and bars[0].get_ylabel() == "map value"
    plt.close(fig)


def test_show_map_says_when_it_normalizes():
    fig, ax = plt.subplots()
    viz.show_map(torch.zeros(3, 8, 8), torch.rand(2, 2) * 50, ax=ax, normalize=True)
    assert ax.get_images()[-1].get_clim() == (0.0, 1.0)
    assert "min-max" in _colorbars(fig)[0].get_ylabel()
    with pytest.raises(ValueError, match="normalize=True or vmin/vmax"):
        viz.show_map(torch.zeros(3, 8, 8), torch.rand(2, 2), ax=ax, normalize=True, vmin=0.0)
    plt.close(fig)


def test_boxes_get_a_legend_naming_ground_truth_and_map_box():
    fig, axes = plt.subplots(1, 3)
    img = np.zeros((20, 20, 3), np.uint8)
    viz.show_map(img, None, ax=axes[0], boxes=[(1, 1, 9, 9), (2, 2, 10, 10)])
    assert _legend_texts(axes[0]) == ["ground truth", "box from the map"]
    viz.show_map(img, None, ax=axes[1], boxes=[(1, 1, 9, 9)], box_labels=["tripod, drawn by hand"])
    assert _legend_texts(axes[1]) == ["tripod, drawn by hand"]
    viz.show_map(img, None, ax=axes[2], boxes=[(1, 1, 9, 9)], legend=False)
    assert _legend_texts(axes[2]) == []
    assert not _colorbars(fig)                        # no map, no colorbar
    with pytest.raises(ValueError, match="2 boxes but only 1 box_labels"):
        viz.show_map(img, None, ax=axes[2], boxes=[(1, 1, 9, 9)] * 2, box_labels=["one"])
    plt.close(fig)


def test_a_figure_names_the_same_boxes_once():
    fig, axes = plt.subplots(2, 3)
    img = np.zeros((20, 20, 3), np.uint8)
    for ax in axes.flat:                               # a hand-made grid, as the lessons draw them
        viz.show_map(img, None, ax=ax, boxes=[(1, 1, 9, 9), (2, 2, 10, 10)])
    assert [bool(_legend_texts(ax)) for ax in axes.flat] == [True] + [False] * 5
    viz.show_map(img, None, ax=axes[1, 2], boxes=[(1, 1, 9, 9)], box_labels=["tripod"])  # other boxes: named
    assert _legend_texts(axes[1, 2]) == ["tripod"]
    viz.show_map(img, None, ax=axes[1, 1], boxes=[(1, 1, 9, 9), (2, 2, 10, 10)], legend=True)
    assert _legend_texts(axes[1, 1]) == ["ground truth", "box from the map"]
    plt.close(fig)


def test_grid_puts_all_maps_on_one_scale_with_a_colorbar_per_row_and_one_legend():
    imgs = torch.zeros(6, 3, 8, 8, dtype=torch.uint8)
    maps = torch.arange(6, dtype=torch.float32).view(6, 1, 1).expand(6, 2, 2).clone()
    fig = viz.grid(imgs, maps, boxes=[[(0, 0, 4, 4)]] * 6, ncols=3)
    panels = fig.axes
    assert {p.get_images()[-1].get_clim() for p in panels} == {(0.0, 5.0)}
    assert len(_colorbars(fig)) == 2                  # two rows
    assert sum(bool(_legend_texts(p)) for p in panels) == 1
    plt.close(fig)


@pytest.mark.parametrize("value, drawn", [("", True), ("1", True), ("0", False), ("off", False)])
def test_progress_bars_obey_camlib_progress(monkeypatch, value, drawn):
    monkeypatch.setenv("CAMLIB_PROGRESS", value)
    bar = config.progress_bar(range(3), desc="x")
    assert bar.disable is (not drawn)
    assert list(bar) == [0, 1, 2]                     # a disabled bar still iterates
    assert config.progress_bar(range(3), disable=True).disable is True


def test_progress_switch_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("CAMLIB_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="CAMLIB_PROGRESS must be 1 or 0"):
        config.progress_bar(range(3))


def test_course_build_turns_progress_bars_off_in_its_kernels():
    from coursekit.course import kernel_env
    assert kernel_env("00", "smoke", None)["CAMLIB_PROGRESS"] == "0"


def test_camlib_draws_no_tqdm_bar_of_its_own():
    """Every camlib bar goes through config.progress_bar (one switch): no other tqdm import."""
    from pathlib import Path
    import camlib
    root = Path(camlib.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "config.py" and "tqdm" in p.read_text(encoding="utf-8")]
    assert offenders == []


@pytest.mark.slow
def test_preprocess_takes_read_only_photos_without_a_warning():
    code = ("import numpy as np, warnings; warnings.simplefilter('error')\n"
            "from camlib.models import preprocess_imagenet\n"
            "a = np.zeros((8, 8, 3), np.uint8); a.flags.writeable = False\n"
            "print(tuple(preprocess_imagenet(a, size=4).shape))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "(1, 3, 4, 4)" in r.stdout, r.stderr[-800:]


def test_course_pages_load_mathjax_from_next_to_them(tmp_path):
    pytest.importorskip("jupyter_server_mathjax")
    import nbformat
    from nbconvert import HTMLExporter

    from coursekit.course import mathjax_url
    url = mathjax_url(tmp_path, echo=lambda m: None)
    assert not url.startswith("http") and (tmp_path / url.split("?")[0]).is_file()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$$M_c = \\sum_k w_k^c f_k$$")])
    html, _ = HTMLExporter(mathjax_url=url).from_notebook_node(nb)
    assert url in html and "cdnjs.cloudflare.com/ajax/libs/mathjax" not in html
