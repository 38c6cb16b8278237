"""``make test-gpu-path``: run every gpu-profile code path on the CPU, at a tiny scale, offline.

1. builds tiny copies of CUB-200-2011, ILSVRC 2012 (val and train), Oxford-IIIT Pet, Caltech-101 and
   Flowers-102 in their published layouts (greyscale, CMYK and a truncated JPEG among them) and
   randomly initialised stand-in weights where torchvision looks for its cached downloads
   (``tests/fixtures_real.py``), in a temporary ``$CAMLIB_DATA`` / ``$TORCH_HOME``;
2. executes every lesson (``coursekit``'s executor, as ``make course`` does) and every recipe of
   ``camlib.recipes`` (``python -m camlib.recipes``) with ``CAMLIB_PROFILE=gpu CAMLIB_SCALE=tiny
   CAMLIB_DEVICE=cpu``, two at a time;
3. fails when a lesson errs, a recipe exits non-zero, or any output holds
   ``camlib.config.REAL_DATA_SKIP_MARKER`` (a real-dataset cell skipped for lack of data or weights).

At tiny scale the synthetic parts run at the smoke profile's sizes (their claims are asserted, as in
``make test``); claims on real data are printed as "reported, not asserted" (a handful of fixture
images and random weights prove nothing). ``python tools/gpu_path.py [--keep DIR] [--only 03 04 recipes]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def _outputs_text(nb) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            if "text" in o:
                parts.append(o["text"])
            for key in ("text/plain",):
                if key in o.get("data", {}):
                    parts.append(o["data"][key])
            if o.get("output_type") == "error":
                parts.append(f"{o.get('ename')}: {o.get('evalue')}")
    return "\n".join(parts)


def run_lesson(path: Path, out: Path) -> dict:
    import nbformat

    from camlib.config import REAL_DATA_SKIP_MARKER
    from coursekit.course import execute_lesson

    t = time.perf_counter()
    run = execute_lesson(path, out, profile="gpu", timeout=900)
    text = _outputs_text(nbformat.read(out / path.name, as_version=4))
    skips = [line for line in text.splitlines() if REAL_DATA_SKIP_MARKER in line]
    return {"job": path.stem, "ok": run.ok and not skips, "seconds": round(time.perf_counter() - t, 1),
            "error": run.error, "skips": skips,
            "reported": [line for line in text.splitlines() if "reported, not asserted" in line]}


def run_recipes(out: Path) -> dict:
    from camlib.config import REAL_DATA_SKIP_MARKER
    from camlib.recipes import RECIPES

    t, rows, ok = time.perf_counter(), [], True
    for name in RECIPES:
        t1 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "camlib.recipes", "--recipe", name, "--profile", "gpu",
                            "--no-progress", "--json", str(out / f"recipe-{name}.json")],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
        (out / f"recipe-{name}.log").write_text(p.stdout + p.stderr)
        good = p.returncode == 0 and REAL_DATA_SKIP_MARKER not in p.stdout + p.stderr
        if good:
            rep = json.loads((out / f"recipe-{name}.json").read_text())
            good = rep["steps"] > 0 and rep["n_val"] > 0
            what = f"{rep['steps']} steps on {rep['n_train']} images, eval on {rep['n_val']}"
        else:
            what = (p.stderr.strip().splitlines() or ["?"])[-1]
        rows.append(f"{name}: {'ok' if good else 'FAILED'} in {time.perf_counter() - t1:.0f} s ({what})")
        ok &= good
    return {"job": "recipes", "ok": ok, "seconds": round(time.perf_counter() - t, 1), "error": "", "skips": [],
            "reported": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", default=None, help="build everything in this folder and keep it (default: a temp dir)")
    ap.add_argument("--only", nargs="*", default=None, help="lesson numbers and/or 'recipes'")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="gpu-path-") if a.keep is None else None
    root = Path(a.keep) if a.keep else Path(tmp.name)
    data, torch_home, out = root / "data", root / "torch", root / "out"
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(CAMLIB_PROFILE="gpu", CAMLIB_SCALE="tiny", CAMLIB_DEVICE="cpu", CAMLIB_REAL_DATA="1",
                      CAMLIB_DATA=str(data), TORCH_HOME=str(torch_home), MPLBACKEND="Agg",
                      OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                      PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    from fixtures_real import make_gpu_path_fixtures
    make_gpu_path_fixtures(data, torch_home)
    print(f"fixtures in {root} ({time.perf_counter() - start:.0f} s)", flush=True)

    lessons = sorted((REPO / "lessons").glob("[0-9][0-9]_*.ipynb"))
    # the longest first, so that two workers finish together
    order = ["04", "05", "03", "06", "01", "02", "00"]
    lessons.sort(key=lambda p: order.index(p.name[:2]) if p.name[:2] in order else 99)
    jobs = [("lesson", p) for p in lessons if a.only is None or p.name[:2] in a.only]
    if a.only is None or "recipes" in a.only:
        jobs.insert(1, ("recipes", None))

    def do(job):
        kind, p = job
        try:
            r = run_recipes(out) if kind == "recipes" else run_lesson(p, out)
        except Exception as e:  # noqa: BLE001 - reported as this job's failure
            r = {"job": kind if p is None else p.stem, "ok": False, "seconds": 0, "error": repr(e), "skips": [],
                 "reported": []}
        print(f"  {r['job']}: {'ok' if r['ok'] else 'FAILED'} in {r['seconds']:.0f} s"
              + (f" -- {r['error']}" if r["error"] else ""), flush=True)
        return r

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        results = list(pool.map(do, jobs))
    failed = False
    print(f"\nmake test-gpu-path: CAMLIB_PROFILE=gpu CAMLIB_SCALE=tiny CAMLIB_DEVICE=cpu, outputs in {out}")
    for r in results:
        failed |= not r["ok"]
        print(f"{r['job']:>22}: {'ok' if r['ok'] else 'FAILED'} ({r['seconds']:.0f} s)"
              + (f" -- {r['error']}" if r["error"] else ""))
        for line in r["skips"]:
            print(f"{'':>24}skipped for lack of data or weights: {line}")
        for line in r["reported"]:
            print(f"{'':>24}{line}")
    print(f"wall time {time.perf_counter() - start:.0f} s; {'FAILED' if failed else 'every gpu path ran'}")
    if tmp is not None and not failed:
        tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
