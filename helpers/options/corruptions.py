"""Corrupted copies of test images (accuracy under shift), in the spirit of CIFAR-10-C.

CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) was made by ImageNet-C/create_c/make_cifar_c.py in
hendrycks/robustness. This module makes 11 of that script's 19 kinds with its per-severity
parameters (PARAMETERS), each through library calls: torch's seeded draws, torchvision's
transforms.v2.functional, PIL. brightness, saturate, gaussian_blur and elastic_transform are
approximate (PIL's 8-bit HSV, torchvision's kernels and borders); the others use the script's
operation and parameters, with other random draws. Only 8 kinds are among the benchmark's 15, so a
mean over these kinds is NOT comparable with published CIFAR-10-C means: that needs the same 15
kinds, made exactly.

All on the CPU. Each image of a random kind draws from its own generator, seeded from (seed, kind,
severity, the image's bytes): its corruption does not depend on the other images, their order or
the batch size. Library releases may still change the bytes: record `fingerprint` with results.
"""
from __future__ import annotations

import hashlib
import io
import time
from typing import Callable, Dict, Iterable, Iterator, List, Tuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ..evaluation import format_accuracy, interval_text
from ..plots import figure_title

SEVERITIES = (1, 2, 3, 4, 5)
SIZE = 32  # the script's parameters are for 32x32 images
EXACT = "as in CIFAR-10-C"
HSV = "approximate: PIL's 8-bit HSV (hue in 256 steps), not skimage's float HSV"
PARAMETERS = {  # the script's order: its benchmark kinds first, then its extras
    "gaussian_noise": {"values": (0.04, 0.06, 0.08, 0.09, 0.10), "fidelity": EXACT,
                       "source": "gaussian_noise(): std of normal noise added to [0, 1] pixels",
                       "library": "torch.randn(generator=g), added and clipped to [0, 1]"},
    "shot_noise": {"values": (500, 250, 100, 75, 50), "fidelity": EXACT,
                   "source": "shot_noise(): photons per unit intensity, Poisson(x * c) / c",
                   "library": "torch.poisson(x * c, generator=g) / c, clipped"},
    "impulse_noise": {"values": (0.01, 0.02, 0.03, 0.05, 0.07), "fidelity": EXACT,
                      "source": "impulse_noise(): share of values set to 0 or 1 "
                                "(skimage random_noise 's&p')",
                      "library": "torch.rand(generator=g): which values, then salt or pepper"},
    "brightness": {"values": (0.05, 0.1, 0.15, 0.2, 0.3), "fidelity": HSV,
                   "source": "brightness(): added to V of HSV, clipped to [0, 1]",
                   "library": "PIL Image.convert('HSV'), V band through Image.point, to 'RGB'"},
    "contrast": {"values": (0.75, 0.5, 0.4, 0.3, 0.15), "fidelity": EXACT,
                 "source": "contrast(): factor on the distance from each channel's image mean",
                 "library": "arithmetic: (x - m) * c + m, m = numpy mean of each channel"},
    "elastic_transform": {
        "values": ((0, 0, 2.56), (1.6, 6.4, 2.24), (2.56, 1.92, 1.92), (3.2, 1.28, 1.6),
                   (3.2, 0.96, 0.96)),
        "fidelity": "approximate: torchvision's bilinear resampling on a mirrored margin instead "
                    "of OpenCV's warpAffine and scipy's map_coordinates; the field's border "
                    "mirrored about the edge pixels, not about the image's edge; rounded to uint8",
        "source": "elastic_transform(): 32 * (alpha, sigma, affine): displacement px, "
                  "its smoothing px, affine jitter px",
        "library": "torchvision v2.functional perspective (the random affine), gaussian_blur "
                   "(the field), elastic; torch.nn.functional.pad(mode='reflect')"},
    "pixelate": {"values": (0.95, 0.9, 0.85, 0.75, 0.65), "fidelity": EXACT,
                 "source": "pixelate(): side kept, box down to int(32 * c) px and box up again",
                 "library": "PIL Image.resize(Image.BOX) down and up"},
    "jpeg_compression": {"values": (80, 65, 58, 50, 40), "fidelity": EXACT,
                         "source": "jpeg_compression(): PIL JPEG quality",
                         "library": "PIL Image.save('JPEG', quality=q), Image.open"},
    "speckle_noise": {"values": (0.06, 0.1, 0.12, 0.16, 0.2), "fidelity": EXACT,
                      "source": "speckle_noise(): std of normal noise times the pixel, x + x * n",
                      "library": "torch.randn(generator=g), x + x * n, clipped"},
    "gaussian_blur": {"values": (0.4, 0.6, 0.7, 0.8, 1), "fidelity": "approximate: torchvision's "
                      "kernel with mirrored borders, not skimage's with edge pixels repeated; "
                      "rounded, not truncated, to uint8",
                      "source": "gaussian_blur(): sigma px (skimage gaussian, truncate 4)",
                      "library": "torchvision v2.functional.gaussian_blur, kernel 2 * int(4 * "
                                 "sigma + 0.5) + 1"},
    "saturate": {"values": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), "fidelity": HSV,
                 "source": "saturate(): S of HSV becomes S * a + b, clipped to [0, 1]",
                 "library": "PIL Image.convert('HSV'), S band through Image.point, to 'RGB'"},
}
KINDS = tuple(PARAMETERS)
RANDOM_KINDS = ("gaussian_noise", "shot_noise", "impulse_noise", "elastic_transform",
                "speckle_noise")
PIL_KINDS = ("brightness", "pixelate", "jpeg_compression", "saturate")  # uint8 in and out
# Float kinds that go back to uint8 by rounding: torchvision's kernel and bilinear weights can sum
# to just under 1, and truncation would turn a flat 255 into 254 (it does for gaussian_blur at
# sigma 0.4). The other float kinds truncate, as the script's np.uint8 does.
ROUNDED = ("gaussian_blur", "elastic_transform")


def _generator(image: np.ndarray, kind: str, severity: int, seed: int) -> torch.Generator:
    # Seeding from the image's own bytes keeps its draws the same in any subset or batch size.
    digest = hashlib.sha256(f"{seed}:{kind}:{severity}:".encode() + image.tobytes()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _draw(gens, draw) -> torch.Tensor:
    return torch.stack([draw(g) for g in gens])


def _elastic(image: torch.Tensor, c, g: torch.Generator) -> torch.Tensor:
    """One (3, 32, 32) image: the script's random affine, then its smoothed random displacement."""
    alpha, sigma, jitter = c
    pad = SIZE // 2  # a mirrored margin, as the script's borders, not torchvision's black fill
    x = F.pad(image[None], [pad] * 4, mode="reflect")
    # The script moves three points (x, y) by up to `jitter` px; a fourth completing their
    # parallelogram makes torchvision's perspective that affine. + 0.5: torchvision puts pixel
    # centres at i + 0.5, OpenCV at i.
    start = torch.tensor([[26.0, 26.0], [26.0, 6.0], [6.0, 6.0]], dtype=torch.float64) + pad + 0.5
    end = start + jitter * (torch.rand(3, 2, generator=g, dtype=torch.float64) * 2 - 1)
    start, end = (torch.cat([p, p[:1] + p[2:] - p[1:2]]).tolist() for p in (start, end))
    x = TF.perspective(x, start, end, interpolation=TF.InterpolationMode.BILINEAR)
    if alpha:  # severity 1 is the affine alone
        field = torch.rand(1, 2, SIZE, SIZE, generator=g, dtype=torch.float64) * 2 - 1
        radius = int(3 * sigma + 0.5)  # skimage gaussian(truncate=3), as the script
        field = TF.gaussian_blur(field, [2 * radius + 1] * 2, [sigma, sigma]) * alpha
        # elastic takes (1, H, W, 2): (dx, dy) in units of half the padded side.
        x = TF.elastic(x, F.pad(field, [pad] * 4).permute(0, 2, 3, 1) * 2 / (SIZE + 2 * pad))
    return x[0, :, pad:-pad, pad:-pad]


def _float_kind(kind: str, x: torch.Tensor, c, gens) -> torch.Tensor:
    """x: float64 (N, 32, 32, 3) in [0, 1], as the script's x / 255."""
    shape = (SIZE, SIZE, 3)
    if kind in ("gaussian_noise", "speckle_noise"):
        noise = _draw(gens, lambda g: torch.randn(shape, generator=g, dtype=x.dtype)) * c
        return x + (noise if kind == "gaussian_noise" else x * noise)
    if kind == "shot_noise":
        return torch.stack([torch.poisson(i * c, generator=g) for i, g in zip(x, gens)]) / c
    if kind == "impulse_noise":  # skimage 's&p': each value hit with probability c, salt or pepper
        u = _draw(gens, lambda g: torch.rand((2,) + shape, generator=g, dtype=x.dtype))
        return torch.where(u[:, 0] < c, (u[:, 1] < 0.5).to(x.dtype), x)
    if kind == "contrast":  # numpy's mean as the script's: torch's sums in another order
        means = torch.from_numpy(x.numpy().mean(axis=(1, 2), keepdims=True))
        return (x - means) * c + means
    nchw = x.permute(0, 3, 1, 2)
    if kind == "gaussian_blur":
        radius = int(4 * c + 0.5)  # skimage gaussian's default truncate=4
        out = TF.gaussian_blur(nchw, [2 * radius + 1] * 2, [c, c])
    else:  # elastic_transform
        out = torch.stack([_elastic(image, c, g) for image, g in zip(nchw, gens)])
    return out.permute(0, 2, 3, 1)


def _pil_kind(kind: str, image: np.ndarray, c) -> np.ndarray:
    picture = Image.fromarray(image)
    if kind == "pixelate":
        side = int(SIZE * c)
        return np.asarray(picture.resize((side, side), Image.BOX).resize((SIZE, SIZE), Image.BOX))
    if kind == "jpeg_compression":
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=c)
        return np.asarray(Image.open(buffer).convert("RGB"))
    bands = list(picture.convert("HSV").split())
    if kind == "brightness":  # V + c on the 0..255 scale, clipped
        bands[2] = bands[2].point([min(255, round(v + 255 * c)) for v in range(256)])
    else:  # saturate: S * a + b; a grey pixel has hue 0, so b > 0 tints it red, as in the script
        a, b = c
        bands[1] = bands[1].point([min(255, round(s * a + 255 * b)) for s in range(256)])
    return np.asarray(Image.merge("HSV", bands).convert("RGB"))


def _check(kind: str, severity: int, images: np.ndarray) -> None:
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8
            and images.ndim == 4 and images.shape[1:] == (SIZE, SIZE, 3)):
        raise ValueError(f"images must be a uint8 array (N, {SIZE}, {SIZE}, 3), got "
                         f"{getattr(images, 'dtype', type(images))} {np.shape(images)}")
    if kind not in PARAMETERS:
        raise ValueError(f"unknown corruption {kind!r}; valid kinds: {', '.join(KINDS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
            or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupted copy of uint8 RGB images (N, 32, 32, 3), same shape and dtype; ValueError for a
    bad kind, severity or array."""
    _check(kind, severity, images)
    c = PARAMETERS[kind]["values"][severity - 1]
    if len(images) == 0:
        return images.copy()
    if kind in PIL_KINDS:
        return np.stack([_pil_kind(kind, image, c) for image in images])
    gens = [_generator(image, kind, severity, seed) for image in images] \
        if kind in RANDOM_KINDS else None
    x = torch.from_numpy(images.astype(np.float64) / 255.0)
    out = _float_kind(kind, x, c, gens).clamp(0, 1).mul(255).numpy()
    return (np.rint(out) if kind in ROUNDED else out).astype(np.uint8)


def corrupted_sets(images: np.ndarray, kinds: Iterable[str] = KINDS,
                   severities: Iterable[int] = SEVERITIES,
                   seed: int = 0) -> Iterator[Tuple[str, int, np.ndarray]]:
    """Lazily yield (kind, severity, corrupt(images, kind, severity, seed)), kinds outer;
    ValueError at the call for a bad kind, severity or array."""
    severities = tuple(severities)
    pairs = [(kind, severity) for kind in kinds for severity in severities]
    for kind, severity in pairs:
        _check(kind, severity, images)
    return ((kind, severity, corrupt(images, kind, severity, seed)) for kind, severity in pairs)


def fingerprint(sets: Iterable[Tuple[str, int, np.ndarray]]) -> str:
    """SHA-256 hex of (kind, severity, shape, uint8 bytes) of each set in order; ValueError
    for a non-uint8 array."""
    digest = hashlib.sha256()
    for kind, severity, images in sets:
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8):
            raise ValueError(f"{kind} {severity}: fingerprints are of uint8 arrays")
        digest.update(f"{kind}|{severity}|{images.shape}\n".encode())
        digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


# --- what a run with corruptions=True adds to the pipeline (helpers/stages.py) -----------------

CORRUPTION_SEED = 0  # one seed for every run, so that every network sees the same images


def accuracy_under_shift(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                         labels: np.ndarray, show: bool = True) -> dict:
    """The accuracy (percent) of `predict` ((N, 32, 32, 3) uint8 images -> (N,) labels) on
    corrupted copies of `images`, every kind at severities 1 to 5, made from CORRUPTION_SEED;
    what metrics.json records as "corruptions". `show`: a line per kind as it is measured."""
    accuracy: Dict[str, List[float]] = {kind: [] for kind in KINDS}
    started = time.perf_counter()

    def scored():
        """Each corrupted set, once its accuracy is measured (the fingerprint reads them all)."""
        for kind, severity, corrupted in corrupted_sets(images, seed=CORRUPTION_SEED):
            accuracy[kind].append(100 * float(np.mean(predict(corrupted) == labels)))
            if severity == SEVERITIES[-1] and show:
                print(f"under shift: {kind} at severities 1-5: "
                      + ", ".join(f"{value:.1f} %" for value in accuracy[kind]), flush=True)
            yield kind, severity, corrupted

    digest = fingerprint(scored())
    every = [value for values in accuracy.values() for value in values]
    return {"severities": list(SEVERITIES), "accuracy": accuracy,
            "mean_accuracy": float(np.mean(every)), "test_images": len(labels),
            "fingerprint": digest, "seed": CORRUPTION_SEED,
            "fidelity": {kind: PARAMETERS[kind]["fidelity"] for kind in accuracy},
            "seconds": time.perf_counter() - started}


def shift_table(shift: dict, clean_accuracy: float) -> str:
    """Accuracy on each kind of corrupted test images at each severity, with its 95 % interval,
    the clean accuracy and the mean, in Markdown; "approximate" kinds are marked."""
    n = shift["test_images"]
    severities = shift["severities"]
    lines = ["| corruption | " + " | ".join(f"severity {s}" for s in severities) + " |",
             "|---|" + "---|" * len(severities)]
    for kind, values in shift["accuracy"].items():
        exact = shift.get("fidelity", {}).get(kind, "").startswith("as in")
        mark = "" if exact else " (approximate)"
        lines.append(f"| {kind}{mark} | " + " | ".join(
            f"{value:.1f} % ({interval_text(value, n).split(', n')[0]})" for value in values)
            + " |")
    lines.append("| **mean of these kinds** | " + " | ".join(
        f"{np.mean([v[i] for v in shift['accuracy'].values()]):.1f} %"
        for i in range(len(severities))) + " |")
    return ("\n".join(lines) + f"\n\nClean: {format_accuracy(clean_accuracy, n)}; under shift, "
            f"mean over all kinds and severities {shift['mean_accuracy']:.1f} % (n = {n:,} images "
            f"each; fingerprint of the corrupted images {shift['fingerprint'][:12]}). The mean is "
            "over these kinds only: it is not comparable with published CIFAR-10-C means.")


def shift_figure(shift: dict, clean: float, images: str) -> plt.Figure:
    """Accuracy against severity for each kind of corruption in `shift` (accuracy_under_shift's
    record), with the clean accuracy as a line; `images` names the test images."""
    figure, axis = plt.subplots(figsize=(9, 5))
    markers = "osD^v<>phX*P"
    for index, (kind, values) in enumerate(shift["accuracy"].items()):
        axis.plot(shift["severities"], values, marker=markers[index % len(markers)], label=kind,
                  color=plt.get_cmap("tab20")(index))
    axis.axhline(clean, color="black", linestyle="--", label=f"clean {clean:.1f} %")
    axis.set(xlabel="severity", ylabel="accuracy (%)", xticks=list(shift["severities"]),
             ylim=(0, 100))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2, loc="lower left")
    figure_title(figure, f"Accuracy under shift: corrupted copies of the test images\n{images}",
                 fontsize=12)
    figure.tight_layout()
    return figure
