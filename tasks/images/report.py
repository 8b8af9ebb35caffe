"""One self-contained HTML report of an image run: verdict banner, metric table, real-vs-synthetic grids, VAE strip.

Images are embedded as base64 PNG and the styling is the table report's (`tasks/report_html.py`), so the file opens offline, from an e-mail or a CI
artifact, with nothing beside it. Small images are scaled up with nearest-neighbour so 8x8 digits stay legible.
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)

from synthgate.schemas.gates import GateResult
from synthgate.tasks.images.publish import to_uint8
from synthgate.tasks.report_html import banner, fmt, kv_table, metric_table, page, png_uri, write_html

TILE_MIN_PX = 48  # smallest displayed tile side; upscaling factor is an integer so pixels stay square
PER_ROW = 8


def strip_png(images: np.ndarray, *, gap: int = 2) -> bytes:
    """(n, C, H, W) images in [0, 1] -> one horizontal strip as PNG bytes (empty for no images)."""
    if len(images) == 0:
        return b""
    c, h, w = images.shape[1:]
    scale = max(1, math.ceil(TILE_MIN_PX / max(h, w)))
    tiles = [Image.fromarray(to_uint8(img)).resize((w * scale, h * scale), Image.Resampling.NEAREST) for img in images]
    mode = "L" if c == 1 else "RGB"
    strip = Image.new(mode, (len(tiles) * (w * scale + gap) - gap, h * scale), color=255 if mode == "L" else (255,) * 3)
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (w * scale + gap), 0))
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img class="pixels" alt="{html.escape(alt)}" src="{png_uri(png)}">' if png else "<em>none</em>"


def build_report(
    *,
    title: str,
    gates: GateResult,
    classes: list[str],
    real_images: np.ndarray,
    real_labels: np.ndarray,
    synthetic_images: np.ndarray,
    synthetic_labels: np.ndarray,
    facts: dict[str, Any],
    interpolations: list[tuple[str, np.ndarray]] | None = None,
    per_class_accuracy: dict[str, float] | None = None,
) -> str:
    """The report as one HTML string; `facts` is a flat dict shown as a table (model, seed, counts, timings...)."""
    grid_rows = []
    for k, name in enumerate(classes):
        real = real_images[real_labels == k][:PER_ROW]
        syn = synthetic_images[synthetic_labels == k][:PER_ROW]
        acc = (per_class_accuracy or {}).get(name)
        grid_rows.append(
            f"<tr><th>{html.escape(name)}</th><td>{_img(strip_png(real), f'real {name}')}</td>"
            f"<td>{_img(strip_png(syn), f'synthetic {name}')}</td><td class='num'>{fmt(acc)}</td></tr>"
        )
    interp = ""
    if interpolations:
        items = "".join(
            f"<div><p>{html.escape(caption)}</p>{_img(strip_png(strip), caption)}</div>"
            for caption, strip in interpolations
        )
        interp = f"<h2>VAE latent interpolation</h2>{items}"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in gates.notes)
    body = f"""{banner(gates, what="synthetic image set")}
<h2>Gates</h2>
{metric_table(gates)}
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Real (holdout) vs synthetic, per class</h2>
<table><tr><th>class</th><th>real</th><th>synthetic</th><th>classifier accuracy on synthetic</th></tr>
{"".join(grid_rows)}
</table>
{interp}
<h2>Run</h2>
{kv_table(facts)}"""
    return page(title, body)


def write_report(path: Path, report_html: str) -> Path:
    """Write the report atomically; the folder is created if needed."""
    return write_html(path, report_html)


def vae_interpolations(
    model: Any, images: np.ndarray, labels: np.ndarray, classes: list[str], *, steps: int = 10
) -> list[tuple[str, np.ndarray]]:
    """Up to three strips from a model with `interpolate` (the VAE): within one class, and across two class pairs."""
    import torch

    if not hasattr(model, "interpolate") or len(classes) == 0:
        return []
    first = {k: int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)}
    second = {k: int(np.flatnonzero(labels == k)[-1]) for k in np.unique(labels)}
    ks = sorted(first)
    pairs = [(ks[0], first[ks[0]], ks[0], second[ks[0]])]
    if len(ks) > 1:
        pairs.append((ks[0], first[ks[0]], ks[1], first[ks[1]]))
    if len(ks) > 3:
        pairs.append((ks[2], first[ks[2]], ks[3], first[ks[3]]))
    strips = []
    for ka, ia, kb, ib in pairs:
        strip = model.interpolate(torch.from_numpy(images[ia]), ka, torch.from_numpy(images[ib]), kb, steps=steps)
        strips.append((f"{classes[ka]} -> {classes[kb]}", strip.numpy()))
    return strips


write_report_task = task(name="write-image-report", cache_policy=NO_CACHE)(write_report)
