"""How long a GPU run should take: estimates, marked as such, for a Colab T4, an A100 and an H100.

One measurement underlies them all: ResNet50-CAM trains at about **3,200 images/s on one H100**
(bf16, channels_last, decoded images cached; measured once, given in the developers' guide). The
other GPUs are scaled from it by their relative ResNet-50 mixed-precision *training* throughput in
public benchmarks (NVIDIA's published per-GPU figures: an A100 reaches roughly 0.7 of an H100, a T4
roughly 0.08 — about 250 images/s, and without native bf16 it trains in fp16 with a loss scaler).
VGG16-GAP and GoogLeNet-GAP use the H100 rates given with it; other networks are scaled by their
forward cost relative to ResNet-50. None
of this was measured on those GPUs: every figure printed from here says "estimate".

Data loading is the other half: a Colab runtime has 2 CPU cores (about 300 JPEGs/s decoded and
resized per core), so an uncached pass over a real dataset costs ``images / 600`` seconds there,
however fast the GPU. The course caches decoded images once (``camlib.data.cache``).
Introduced in lesson 00; used by the lessons' "what to try on a GPU" notes and the instructor's guide.
"""

from __future__ import annotations

#: Training images/s of the model alone on one H100 (bf16, channels_last): the figures the
#: developers were given (ResNet50-CAM measured; the others given with it). ``camlib.recipes`` uses
#: these too: one table of rates.
H100_IMAGES_PER_S = {"resnet50_cam": 3200.0, "vgg16_gap": 3300.0, "googlenet_gap": 5600.0}
H100_RESNET50_IMAGES_PER_S = H100_IMAGES_PER_S["resnet50_cam"]
#: Training throughput relative to an H100 (ResNet-50, mixed precision; public benchmarks, not ours).
GPU_SPEED = {"H100": 1.0, "A100": 0.7, "T4": 0.08}
#: For networks without a given rate: forward cost relative to ResNet-50 at 224 px (GFLOPs ratio;
#: AlexNet-GAP as cut by the paper's surgery, with the 1024-unit conv; the lessons' small CNN at 64 px).
RELATIVE_COST = {"alexnet_gap": 0.3, "small_cnn_64": 0.01}
#: JPEGs decoded and resized per second by one CPU core (measured once, developers' guide).
DECODE_PER_CORE = 300.0
#: A small network is limited by per-step overhead (kernel launches, Python), not by FLOPs:
#: assume at least this many seconds per optimizer step on any GPU.
MIN_STEP_SECONDS = 0.004


def train_seconds(model: str, images: int, gpu: str, *, steps: int | None = None) -> float:
    """Estimated seconds to train ``model`` on ``images`` images (all epochs) on ``gpu``."""
    if gpu not in GPU_SPEED:
        raise ValueError(f"gpu must be one of {sorted(GPU_SPEED)}, got {gpu!r}")
    known = {**H100_IMAGES_PER_S, **{m: H100_RESNET50_IMAGES_PER_S / c for m, c in RELATIVE_COST.items()}}
    if model not in known:
        raise ValueError(f"model must be one of {sorted(known)}, got {model!r}")
    if images < 0 or (steps is not None and steps < 0):
        raise ValueError(f"images and steps must be >= 0, got {images}, {steps}")
    rate = known[model] * GPU_SPEED[gpu]
    return max(images / rate, (steps or 0) * MIN_STEP_SECONDS)


def decode_seconds(images: int, cores: int = 2) -> float:
    """Estimated seconds to decode and resize ``images`` JPEGs once on ``cores`` CPU cores."""
    if images < 0 or cores < 1:
        raise ValueError(f"expected images >= 0 and cores >= 1, got {images}, {cores}")
    return images / (DECODE_PER_CORE * cores)


def describe(seconds_by_gpu: dict[str, float]) -> str:
    """``"about 12 min on a Colab T4, 1.4 min on an A100 (estimates)"``."""
    def fmt(s: float) -> str:
        return f"{s / 60:.0f} min" if s >= 600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"

    parts = [f"{fmt(s)} on {'a Colab T4' if g == 'T4' else 'an ' + g if g[0] in 'AH' else g}"
             for g, s in seconds_by_gpu.items()]
    return "about " + ", ".join(parts) + " (estimates scaled from one H100 measurement, not measured on these GPUs)"


def estimate(model: str, images: int, *, steps: int | None = None, decode: int = 0,
             gpus: tuple[str, ...] = ("T4", "A100")) -> dict[str, float]:
    """Seconds per GPU for a run: training ``images`` images of ``model`` plus decoding ``decode`` JPEGs once."""
    return {g: train_seconds(model, images, g, steps=steps) + decode_seconds(decode) for g in gpus}
