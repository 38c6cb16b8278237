"""Training images/s of camlib's pipeline against the model's own ceiling and a plain JPEG pipeline.

A stand-in for CUB-200-2011 (JPEGs of about 500 x 375, in ImageFolder layout, written to a temp
folder) is trained three ways, with the same model, batch, mixed precision and channels_last:

* **ceiling** -- random tensors already on the device: the model alone (nothing can beat it);
* **camlib** -- the images decoded once into a cache (``camlib.data.cache``, built beforehand and
  timed apart), uint8 batches gathered in a background thread, copied to the device and
  cropped/flipped/normalized there (``GPUAugment``), trained by ``camlib.train.fit``;
* **plain** -- torchvision ``ImageFolder`` + ``DataLoader`` (``--workers`` processes, default 2 as on
  Colab) decoding every JPEG every epoch: Resize(256) -> RandomCrop(224) -> flip -> ToTensor ->
  Normalize (Choe et al. 2020's training transform).

It prints images/s for each and the ratios camlib/ceiling and camlib/plain, measured in one run.
Targets on an H100 (ResNet50-CAM at 224): camlib >= 0.85 of the ceiling and >= 3x plain.

CPU here (small):  python benchmarks/train_throughput.py
GPU (CUB-sized):   python benchmarks/train_throughput.py --device cuda --n 5994 --batch 64 --steps 60 --warmup 15
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camlib import models, train  # noqa: E402
from camlib.data import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from camlib.data.augment import GPUAugment  # noqa: E402
from camlib.data.cache import cached  # noqa: E402


def write_jpegs(root: Path, n: int, classes: int, seed: int = 0) -> None:
    """``n`` JPEGs of about 500 x 375 (CUB's typical size), smooth colour fields plus noise, q=90."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = int(rng.integers(440, 501)), int(rng.integers(330, 376))
        if rng.random() < 0.3:
            w, h = h, w                                     # some portrait images, as in CUB
        low = rng.uniform(0, 255, (h // 24 + 2, w // 24 + 2, 3)).astype(np.float32)
        img = np.asarray(Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        d = root / f"class_{i % classes:03d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"img_{i:05d}.jpg", quality=90)


class FolderDicts(torch.utils.data.Dataset):
    """An ImageFolder as ``{"image": PIL, "label"}`` dicts (what the cache reads)."""

    def __init__(self, root: Path):
        from torchvision.datasets import ImageFolder
        self.folder = ImageFolder(str(root))
        self.samples, self.class_names, self.root = self.folder.samples, self.folder.classes, str(root)

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, i):
        img, label = self.folder[i]
        return {"image": img, "label": label}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Ceiling:
    """Forward + backward + SGD step on random tensors already on the device: the model alone."""

    def __init__(self, model, device, batch, size, classes, amp):
        self.model = model.to(device).to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.dtype, self.device = train.amp_dtype(device, amp), device
        self.x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, classes, (batch,), device=device)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = F.cross_entropy(self.model(self.x).logits.float(), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


class Plain:
    """torchvision ImageFolder + DataLoader decoding every JPEG in ``workers`` processes."""

    def __init__(self, model, device, folder, batch, size, classes, amp, workers):
        from torchvision import datasets, transforms
        tf = transforms.Compose([transforms.Resize((256, 256)), transforms.RandomCrop(size),
                                 transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                 transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        ds = datasets.ImageFolder(str(folder), transform=tf)
        self.loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                                  drop_last=True, pin_memory=device.type == "cuda",
                                                  persistent_workers=workers > 0)
        self.model = model.to(device).to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.dtype, self.device, self.classes = train.amp_dtype(device, amp), device, classes
        self.it = iter(self.loader)

    def run(self, steps: int) -> None:
        # a fresh pass: batches the workers decoded while other pipelines were timed do not count
        # (the first batch's latency does, as at the start of every epoch)
        self.it = iter(self.loader)
        done = 0
        while done < steps:
            try:
                x, y = next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                continue
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = (y % self.classes).to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = F.cross_entropy(self.model(x).logits.float(), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            done += 1


class Camlib:
    """camlib.train.fit on the cache, GPU-side augmentation (GPUAugment, Resize 256 -> crop + flip)."""

    def __init__(self, model, device, data, batch, size, amp, compile_):
        self.model, self.data, self.seed = model, data, 0
        self.kw = dict(batch_size=batch, lr=1e-4, optimizer="sgd", schedule="constant", amp=amp, device=device,
                       progress=False, augment=GPUAugment.like(data, size, mode="crop"), compile=compile_)

    def run(self, steps: int) -> None:
        self.seed += 1                        # other batches each round
        train.fit(self.model, self.data, steps=steps, seed=self.seed, **self.kw)


def measure(pipes: dict, device, batch: int, steps: int, warmup: int, rounds: int) -> dict[str, list[float]]:
    """Images/s of each pipeline in ``rounds`` interleaved rounds (a shared machine's load drifts)."""
    for p in pipes.values():
        if warmup:
            p.run(warmup)
    rates: dict[str, list[float]] = {k: [] for k in pipes}
    for _ in range(rounds):
        for name, p in pipes.items():
            _sync(device)
            t0 = time.perf_counter()
            p.run(steps)
            _sync(device)
            rates[name].append(steps * batch / (time.perf_counter() - t0))
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50_cam", help="a camlib.models builder")
    ap.add_argument("--n", type=int, default=48, help="JPEGs in the stand-in dataset (CUB train: 5994)")
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--size", type=int, default=224, help="training crop")
    ap.add_argument("--cache-size", type=int, default=256, help="side of the cached images")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per pipeline and round")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the best counts")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain pipeline")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--compile", action="store_true", help="torch.compile in camlib's pipeline")
    ap.add_argument("--data-on-device", action="store_true", help="move the uint8 cache to the device first")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    base = models.build(a.model, num_classes=a.classes)
    what = (f"{a.model} at {a.size}px, batch {a.batch}, amp={train.amp_dtype(device, a.amp)}, channels_last, "
            f"{a.rounds} rounds of {a.steps} timed steps after {a.warmup} warm-up, device {device}"
            + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)"))
    print(f"train_throughput: {what}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        t = time.perf_counter()
        write_jpegs(folder, a.n, min(a.classes, a.n))
        print(f"  wrote {a.n} JPEGs (~500x375) in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        data = cached(FolderDicts(folder), a.cache_size, root=Path(tmp) / "cache", progress=False)
        build = time.perf_counter() - t
        print(f"  cache build (once, {os.cpu_count()} cores): {build:.1f} s = {a.n / build:.0f} images/s decoded")
        if a.data_on_device:
            data = data.to(device)
        pipes = {"ceiling": Ceiling(copy.deepcopy(base), device, a.batch, a.size, a.classes, a.amp),
                 "camlib": Camlib(copy.deepcopy(base), device, data, a.batch, a.size, a.amp, a.compile),
                 "plain": Plain(copy.deepcopy(base), device, folder, a.batch, a.size, min(a.classes, a.n), a.amp,
                                a.workers)}
        rates = measure(pipes, device, a.batch, a.steps, a.warmup, a.rounds)
    labels = {"ceiling": "ceiling (random tensors on the device)", "camlib": "camlib (cache + on-device augment)",
              "plain": f"plain ImageFolder + DataLoader({a.workers})"}
    best = {k: max(v) for k, v in rates.items()}
    print(f"  images/s, best of {a.rounds} interleaved rounds (all rounds in brackets):")
    for k, v in rates.items():
        print(f"  {labels[k]:42s} {best[k]:9.2f}   [{', '.join(f'{r:.2f}' for r in v)}]")
    print(f"  ratio camlib / ceiling = {best['camlib'] / best['ceiling']:.3f}   (target on an H100: >= 0.85)")
    print(f"  ratio camlib / plain   = {best['camlib'] / best['plain']:.2f}    (target on an H100: >= 3)")
    if a.json:
        a.json.write_text(json.dumps({
            "benchmark": "train_throughput", "setup": what, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "images_per_s_best": best, "images_per_s_rounds": rates, "cache_build_images_per_s": a.n / build,
            "ratio_camlib_over_ceiling": best["camlib"] / best["ceiling"],
            "ratio_camlib_over_plain": best["camlib"] / best["plain"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
