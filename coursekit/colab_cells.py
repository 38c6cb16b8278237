"""The two cells every lesson starts with: an "Open in Colab" badge and a guarded set-up cell.

Both must contain the repository's address literally, so they are *generated* from
:data:`camlib.REPO_URL` (the one place it is written) by ``python -m coursekit sync-colab``, which
calls :func:`apply_colab_cells` on each lesson source. Course tooling: students never import this.

Why ``pip install "camlib @ git+URL"`` keeps Colab's torch: ``pyproject.toml`` asks only for
``torch>=...`` / ``torchvision>=...`` / ``ipywidgets>=...``, which Colab's preinstalled versions
satisfy (the floors are tested: ``make test-compat``), so pip leaves them alone. To make that a
guarantee rather than a hope, the cell passes pip a constraints file that pins the packages in
:data:`KEEP` to the versions already installed (``torch==2.x.y+cu12z``, ``ipywidgets==7.7.1``):
should a future requirement ask for another version, pip stops with a conflict instead of silently
downloading gigabytes and breaking Colab's CUDA build, or upgrading the widgets past what Colab's
front end renders.
"""

from __future__ import annotations

import re
from typing import Any

from camlib.colab import DRIVE_DATA_DIR

#: What the set-up cell never lets pip replace on Colab (the constraints file pins what is installed).
KEEP = ("torch", "torchvision", "ipywidgets")

BADGE_TAG = "colab-badge"
SETUP_TAG = "colab-setup"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def github_slug(repo_url: str) -> str:
    """``owner/name`` of a GitHub repository URL (``https://github.com/owner/name[.git]``)."""
    m = re.fullmatch(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?", repo_url or "")
    if not m:
        raise ValueError(f"expected a GitHub URL like https://github.com/owner/name, got {repo_url!r}")
    return f"{m.group(1)}/{m.group(2)}"


def _repo_url(repo_url: str | None) -> str:
    if repo_url is None:
        from camlib import REPO_URL
        repo_url = REPO_URL
    github_slug(repo_url)  # validates
    return repo_url.rstrip("/")


def colab_url(filename: str, repo_url: str | None = None, branch: str = "main") -> str:
    """The address that opens ``lessons/<filename>`` of the repository in Colab."""
    if not filename.endswith(".ipynb") or "/" in filename:
        raise ValueError(f"expected a notebook file name like '01_gap_vs_gmp.ipynb', got {filename!r}")
    slug = github_slug(_repo_url(repo_url))
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/lessons/{filename}"


def badge_source(filename: str, repo_url: str | None = None) -> str:
    """Markdown of the first cell: the badge, and what to do first on Colab."""
    return (
        f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(filename, repo_url)})\n"
        "\n"
        "On Colab, pick a GPU runtime (*Runtime → Change runtime type*) and run the set-up cell "
        "below first. Elsewhere that cell does nothing."
    )


def setup_source(repo_url: str | None = None) -> str:
    """Python of the second cell: a no-op off Colab; on Colab installs camlib, widgets, Drive."""
    url = _repo_url(repo_url)
    return f'''#@title Colab set-up (does nothing outside Colab)
# Written by `python -m coursekit sync-colab`; edit coursekit/colab_cells.py, not this cell.
# Tick USE_DRIVE to keep datasets and checkpoints on Google Drive, so a disconnect loses no training
# (decoded-image caches stay on this runtime's fast local disk: see camlib.config.cache_dir).
USE_DRIVE = False  #@param {{type:"boolean"}}

import sys
if "google.colab" in sys.modules:
    import importlib.util, os, subprocess
    if importlib.util.find_spec("camlib") is None:
        # Pin what Colab already has: pip must never replace it (see coursekit/colab_cells.py).
        from importlib.metadata import distributions
        KEEP = {KEEP!r}
        have = {{(d.metadata["Name"] or "").lower(): d.version for d in distributions()}}
        with open("/tmp/keep-colab-torch.txt", "w") as fh:
            fh.write("".join(f"{{p}}=={{have[p]}}\\n" for p in KEEP if p in have))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "/tmp/keep-colab-torch.txt",
                        "camlib @ git+{url}"], check=True)
    from google.colab import output
    output.enable_custom_widget_manager()
    if USE_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
        os.environ["CAMLIB_DATA"] = "{DRIVE_DATA_DIR}"
        os.makedirs(os.environ["CAMLIB_DATA"], exist_ok=True)'''


def _cell(kind: str, source: str, tag: str, old: Any, with_id: bool) -> Any:
    import nbformat

    cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [tag]
    if kind == "code":
        cell.metadata["cellView"] = "form"  # Colab shows the title and the USE_DRIVE checkbox
    if with_id:
        cell["id"] = old.get("id", tag) if old is not None else tag
    else:
        cell.pop("id", None)
    return cell


def _same(a: Any, b: Any) -> bool:
    keys = ("cell_type", "source", "metadata", "id")
    return all(a.get(k) == b.get(k) for k in keys) and a.get("outputs", []) == b.get("outputs", [])


def apply_colab_cells(nb: Any, filename: str, repo_url: str | None = None) -> bool:
    """Make ``nb``'s first two cells the badge and set-up cells; return whether ``nb`` changed.

    Cells already tagged ``colab-badge`` / ``colab-setup`` anywhere in the notebook are replaced
    (keeping their ids); every other cell is left exactly as it was.
    """
    if not hasattr(nb, "cells"):
        raise ValueError(f"expected an nbformat notebook, got {type(nb).__name__}")
    with_id = (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5)

    def tagged(cell: Any, tag: str) -> bool:
        return tag in cell.get("metadata", {}).get("tags", [])

    old_badge = next((c for c in nb.cells if tagged(c, BADGE_TAG)), None)
    old_setup = next((c for c in nb.cells if tagged(c, SETUP_TAG)), None)
    want = [_cell("markdown", badge_source(filename, repo_url), BADGE_TAG, old_badge, with_id),
            _cell("code", setup_source(repo_url), SETUP_TAG, old_setup, with_id)]
    if len(nb.cells) >= 2 and all(_same(a, b) for a, b in zip(nb.cells[:2], want)):
        return False
    rest = [c for c in nb.cells if not (tagged(c, BADGE_TAG) or tagged(c, SETUP_TAG))]
    nb.cells = want + rest
    return True
