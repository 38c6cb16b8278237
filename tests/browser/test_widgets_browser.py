"""Widgets in a real browser: JupyterLab on loopback, headless Chromium, a slider moved by keyboard.

nbval runs each explorer headless with its default values, which proves the Python side; only a
browser shows that the widget front end renders and that moving a control redraws the figure.
This test starts JupyterLab (127.0.0.1, a random token, a temporary root holding a copy of the
notebook so autosave never writes into the repository), opens the notebook in Debian's
``chromium`` driven by Playwright, runs every cell up to the explorer cell, presses the arrow key
on the explorer's first slider and waits until the figure's PNG bytes change.

Targets are (notebook, cell) pairs: the cell is a tag (``explorer``) or an index. Add lessons to
``TARGETS`` (or set ``CAMLIB_BROWSER_TARGETS="lessons/02_cam_derivation.ipynb:explorer,..."``);
lessons run under ``CAMLIB_PROFILE=smoke`` (override with the environment).

Needs: ``apt-get install -y chromium`` and ``pip install playwright`` (not ``playwright install``,
whose browser download fails here). Run: ``pytest -m browser tests/browser -s`` (``-s`` prints
the timings).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHROMIUM = os.environ.get("CAMLIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

TARGETS: list[tuple[Path, str | int]] = [
    (HERE / "explorer_fixture.ipynb", "explorer"),
    (REPO / "lessons" / "00_introduction.ipynb", "explorer"),   # cheap to reach: no training before it
]
for item in filter(None, os.environ.get("CAMLIB_BROWSER_TARGETS", "").split(",")):
    nb_path, _, cell = item.rpartition(":")
    TARGETS.append((REPO / nb_path, int(cell) if cell.isdigit() else cell))


def _missing() -> str:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cell_index(nb_path: Path, cell: str | int) -> int:
    cells = nbformat.read(nb_path, as_version=4).cells
    if isinstance(cell, int):
        if not 0 <= cell < len(cells):
            raise ValueError(f"{nb_path.name} has {len(cells)} cells; cell index {cell} is out of range")
        return cell
    tagged = [i for i, c in enumerate(cells) if cell in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"expected one cell tagged {cell!r} in {nb_path.name}, found {len(tagged)}")
    return tagged[0]


class JupyterLab:
    """A JupyterLab server on loopback with a token, rooted in ``root``, with private settings."""

    def __init__(self, root: Path):
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(16)
        settings = root.parent / "lab-settings"
        for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                               "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                                               "checkForUpdates": False}}.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(root.parent / "lab-workspaces"),
                   JUPYTER_RUNTIME_DIR=str(root.parent / "runtime"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
        env.setdefault("CAMLIB_PROFILE", "smoke")
        self.log = open(root.parent / "jupyterlab.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
             "--LabApp.expose_app_in_browser=True"] + (["--allow-root"] if os.geteuid() == 0 else []),
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the server shuts its kernels down
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test started
                self.proc.wait(5)
        self.log.close()


RUN_UP_TO = """async (index) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  panel.content.activeCellIndex = index;
  if (index > 0) { await app.commands.execute('notebook:run-all-above'); }
  panel.content.activeCellIndex = index;
  await app.commands.execute('notebook:run-cell');
}"""


def explore_in_browser(nb_path: Path, cell: str | int, workdir: Path, presses: int = 2,
                       timeout_s: float = 240) -> dict[str, float]:
    """Open ``nb_path`` in JupyterLab in headless Chromium, run it up to ``cell``, move the slider.

    Returns timings in seconds; raises AssertionError when the slider does not change the figure.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    index = _cell_index(nb_path, cell)
    root = workdir / "root"
    root.mkdir()
    shutil.copy(nb_path, root / nb_path.name)
    times, t0 = {}, time.perf_counter()
    lab = JupyterLab(root)
    try:
        lab.wait_ready()
        times["server_start"] = time.perf_counter() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(timeout_s * 1000)
                t = time.perf_counter()
                page.goto(f"{lab.url}/lab/tree/{nb_path.name}?token={lab.token}")
                page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                       " && window.jupyterapp.shell.currentWidget.sessionContext")
                times["page_open"] = time.perf_counter() - t
                t = time.perf_counter()
                page.evaluate(RUN_UP_TO, index)
                target = page.locator(".jp-Notebook .jp-Cell").nth(index)
                handle = target.locator(".widget-slider .noUi-handle").first
                image = target.locator(".jp-OutputArea-output img").first
                image.wait_for(state="visible")
                times["run_to_explorer"] = time.perf_counter() - t
                readout = target.locator(".widget-readout").first
                before_value, before_png = readout.inner_text(), image.get_attribute("src")
                t = time.perf_counter()
                handle.focus()
                for _ in range(presses):
                    handle.press("ArrowRight")
                try:  # the figure is redrawn (a new <img>, or new bytes in the old one)
                    page.wait_for_function("([el, old]) => !el.isConnected || el.getAttribute('src') !== old",
                                           arg=[image.element_handle(), before_png], timeout=30_000)
                except PlaywrightTimeout:
                    pass  # nothing was redrawn: the comparison below says so
                page.wait_for_function(
                    "(cell) => { const img = cell.querySelector('.jp-OutputArea-output img');"
                    " return img && img.complete && img.naturalWidth > 0; }", arg=target.element_handle())
                after_png = target.locator(".jp-OutputArea-output img").first.get_attribute("src")
                times["slider_to_new_figure"] = time.perf_counter() - t
                after_value = readout.inner_text()
            finally:
                browser.close()
    finally:
        lab.stop()
    times["total"] = time.perf_counter() - t0
    assert after_value != before_value, f"the slider did not move (readout stayed {before_value!r})"
    assert before_png.startswith("data:image/png") and after_png.startswith("data:image/png")
    before_hash, after_hash = (hashlib.sha1(png.encode()).hexdigest()[:12] for png in (before_png, after_png))
    assert after_hash != before_hash, f"moving the slider did not change the figure's image bytes (sha1 {after_hash})"
    return times


@pytest.mark.parametrize("nb_path,cell", TARGETS, ids=[f"{p.stem}:{c}" for p, c in TARGETS])
def test_slider_redraws_the_figure(nb_path, cell, tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    times = explore_in_browser(nb_path, cell, tmp_path)
    print(f"\n{nb_path.name} [{cell}]: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
