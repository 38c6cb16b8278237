"""Images/s for forward + the top-5 classes' CAMs + their boxes, against the forward pass and two libraries.

One model, one batch, one device for everything: torchvision's ResNet (GAP + fc, so plain CAM
applies; random weights unless ``--weights``) and a :class:`camlib.models.CAMNet` view of the *same*
modules. Timed, median of ``--repeats`` after a warm-up:

* **forward** -- ``model(x)`` alone (the floor);
* **camlib maps** -- one forward returning logits and features, the five best classes' maps by one
  einsum (``camlib.cam.cams``), upsampled to the input size;
* **camlib maps + boxes** -- the same, then every map's box by the paper's rule
  (``camlib.localize.boxes_from_maps``: >= 20% of the max, largest component);
* **torchcam CAM** -- torchcam's ``CAM`` extractor (hooks on layer4 and fc): one forward, then one
  extractor call per rank k = 1..5 (one class per image per call), maps at feature resolution;
* **pytorch-grad-cam GradCAM** -- ``GradCAM`` on ``layer4[-1]``, one call (forward + backward) per
  rank k = 1..5, maps upsampled to the input size by the library.

The maps must agree after the same normalization (ReLU, then min-max per map at feature resolution,
then bilinear upsampling): torchcam's raw maps equal camlib's; Grad-CAM on a GAP network is CAM up
to a positive factor. Targets: camlib (maps + boxes) within 1.15x of forward-only, at least
torchcam's speed, >= 3x pytorch-grad-cam's.

CPU here:  python benchmarks/cam_throughput.py              (resnet18, batch 8, 224 px)
GPU:       python benchmarks/cam_throughput.py --device cuda --model resnet50 --batch 64 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camlib import cam, localize  # noqa: E402
from camlib.models import CAMNet  # noqa: E402


def camnet_view(tv: nn.Module) -> CAMNet:
    """A CAMNet over torchvision ResNet ``tv``'s own modules (shared weights, nothing copied)."""
    trunk = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3, tv.layer4)
    net = CAMNet(trunk, tv.fc.in_features, tv.fc.out_features, "gap", name="resnet-view")
    net.classifier = tv.fc
    return net


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(methods: dict, device, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and process-CPU seconds of each method, run round-robin ``repeats`` times after a
    warm-up (interleaving keeps a shared machine's drifting load from favouring one method)."""
    for fn in methods.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in methods}
    cpu: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            _sync(device)
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def norm_then_up(maps: torch.Tensor, size: int) -> torch.Tensor:
    """ReLU, min-max per map, bilinear to ``size`` (pytorch-grad-cam's order of operations)."""
    m = cam.normalize(maps.float().clamp_min(0), "minmax")
    return cam.upsample(m, size)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--weights", default=None, help="torchvision weights, e.g. DEFAULT (downloads)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--topk", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=["wall", "cpu"], default=None,
                    help="which time the ratios use (default: wall on CUDA, process CPU time on the CPU)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    import torchvision
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import CAM as TorchCAM

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    tv = getattr(torchvision.models, a.model)(weights=a.weights).to(device).eval()
    net = camnet_view(tv).eval()
    x = torch.randn(a.batch, 3, a.size, a.size, device=device)
    k, B, S = a.topk, a.batch, a.size
    print(f"cam_throughput: {a.model} ({'random weights' if a.weights is None else a.weights}), batch {B}, "
          f"{S}px, top-{k} maps per image, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)"))

    with torch.no_grad():
        classes = tv(x).topk(k, dim=1).indices                       # (B, k), fixed for every method

    def forward():
        with torch.no_grad():
            return tv(x)

    def camlib_maps():
        with torch.no_grad():
            return cam.cams(net, x, topk=k, size=(S, S))

    def camlib_boxes():
        with torch.no_grad():
            logits, maps, cls = cam.cams(net, x, topk=k, size=(S, S))
            return localize.boxes_from_maps(maps.flatten(0, 1)).view(B, k, 4), maps, cls

    extractor = TorchCAM(tv, target_layer="layer4", fc_layer="fc", input_shape=(3, S, S))

    def torchcam_maps():
        with torch.no_grad():
            scores = tv(x)
        return torch.stack([extractor(classes[:, j].tolist(), scores, normalized=False)[0] for j in range(k)], 1)

    gradcam = GradCAM(model=tv, target_layers=[tv.layer4[-1]])

    def gradcam_maps():
        return [gradcam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes[:, j]])
                for j in range(k)]

    wall, cpu = timed({"forward": forward, "camlib maps": camlib_maps, "camlib maps + boxes": camlib_boxes,
                       "torchcam CAM": torchcam_maps, "pytorch-grad-cam GradCAM": gradcam_maps}, device, a.repeats)
    clock = a.clock or ("wall" if device.type == "cuda" else "cpu")
    t = wall if clock == "wall" else cpu

    # the same maps?
    boxes, ours_up, cls = camlib_boxes()
    assert torch.equal(cls.cpu(), classes.cpu())
    with torch.no_grad():
        ours = cam.class_activation_maps(net(x).features, net.classifier.weight, classes)   # (B, k, h, w)
    tc = torchcam_maps().detach()
    d_torchcam = float((norm_then_up(tc, S) - norm_then_up(ours, S)).abs().max())
    gc = torch.from_numpy(__import__("numpy").stack(gradcam_maps(), 1)).to(device)  # (B, k, S, S), in [0, 1]
    d_gradcam = float((gc - norm_then_up(ours, S)).abs().max())
    raw_close = torch.allclose(tc, ours, rtol=1e-4, atol=1e-4 * float(ours.abs().max()))

    print(f"  medians of {a.repeats} interleaved runs; ratios use the {clock} clock"
          + (" (process CPU time: robust to other jobs on a shared CPU)" if clock == "cpu" else ""))
    print(f"  {'method':28s} {'wall s':>8s} {'cpu s':>8s} {'images/s':>9s} {'x forward':>10s}")
    for name in t:
        print(f"  {name:28s} {wall[name]:8.3f} {cpu[name]:8.3f} {B / t[name]:9.1f} {t[name] / t['forward']:10.2f}")
    full = t["camlib maps + boxes"]
    print(f"  maps agree after ReLU + min-max + upsampling: torchcam max |diff| = {d_torchcam:.2e} "
          f"(raw maps equal: {raw_close}), pytorch-grad-cam max |diff| = {d_gradcam:.2e}")
    print(f"  ratio camlib (maps + boxes) / forward        = {full / t['forward']:.2f}   (target <= 1.15)")
    print(f"  ratio camlib speed / torchcam speed          = {t['torchcam CAM'] / full:.2f}   (target >= 1)")
    print(f"  ratio camlib speed / pytorch-grad-cam speed  = {t['pytorch-grad-cam GradCAM'] / full:.2f}   (target >= 3)")
    print(f"  boxes: {tuple(boxes.shape)} pixel-edge (x1, y1, x2, y2), e.g. {boxes[0, 0].tolist()}")
    if a.json:
        import json
        from pathlib import Path
        Path(a.json).write_text(json.dumps({
            "benchmark": "cam_throughput", "model": a.model, "batch": B, "size": S, "topk": k, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "clock": clock, "seconds": {n: t[n] for n in t}, "images_per_s": {n: B / t[n] for n in t},
            "ratio_camlib_over_forward": full / t["forward"],
            "ratio_torchcam_time_over_camlib": t["torchcam CAM"] / full,
            "ratio_gradcam_time_over_camlib": t["pytorch-grad-cam GradCAM"] / full,
            "max_diff_torchcam": d_torchcam, "max_diff_gradcam": d_gradcam}, indent=2))
    if d_torchcam > 1e-3 or d_gradcam > 0.05:
        print("  WARNING: the methods' maps disagree more than expected")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
