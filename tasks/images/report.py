"""One self-contained HTML report of an image run: verdict banner, metric table, real-vs-synthetic grids, VAE strip.

Images are embedded as base64 PNG and the styling is inline, so the file opens offline, from an e-mail or a CI
artifact, with nothing beside it. Small images are scaled up with nearest-neighbour so 8x8 digits stay legible.
"""

from __future__ import annotations

import base64
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

TILE_MIN_PX = 48  # smallest displayed tile side; upscaling factor is an integer so pixels stay square
PER_ROW = 8


def strip_png(images: np.ndarray, *, gap: int = 2) -> str:
    """(n, C, H, W) images in [0, 1] -> one horizontal strip as a base64 PNG string."""
    if len(images) == 0:
        return ""
    c, h, w = images.shape[1:]
    scale = max(1, math.ceil(TILE_MIN_PX / max(h, w)))
    tiles = [Image.fromarray(to_uint8(img)).resize((w * scale, h * scale), Image.Resampling.NEAREST) for img in images]
    mode = "L" if c == 1 else "RGB"
    strip = Image.new(mode, (len(tiles) * (w * scale + gap) - gap, h * scale), color=255 if mode == "L" else (255,) * 3)
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (w * scale + gap), 0))
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else "<em>none</em>"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _metric_rows(gates: GateResult) -> str:
    rows = []
    for m in gates.metrics:
        verdict = {True: "pass", False: "FAIL", None: "info"}[m.passed]
        op = ">=" if m.direction == "min" else "<="
        threshold = f"{op} {_fmt(m.threshold)}" if m.threshold is not None else "none"
        rows.append(
            f'<tr class="{verdict.lower()}"><td>{html.escape(m.name)}</td><td>{m.group}</td><td>{_fmt(m.value)}</td>'
            f"<td>{threshold}</td><td>{verdict}</td><td>{html.escape(m.description)}</td></tr>"
        )
    return "\n".join(rows)


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
    passed = gates.passed
    banner = (
        '<div class="banner ok">PUBLISHED: every gated check passed</div>'
        if passed
        else f'<div class="banner bad">REFUSED: {html.escape(", ".join(gates.failing))}; nothing was published</div>'
    )
    grid_rows = []
    for k, name in enumerate(classes):
        real = real_images[real_labels == k][:PER_ROW]
        syn = synthetic_images[synthetic_labels == k][:PER_ROW]
        acc = (per_class_accuracy or {}).get(name)
        grid_rows.append(
            f"<tr><th>{html.escape(name)}</th><td>{_img(strip_png(real), f'real {name}')}</td>"
            f"<td>{_img(strip_png(syn), f'synthetic {name}')}</td><td>{_fmt(acc)}</td></tr>"
        )
    interp = ""
    if interpolations:
        items = "".join(
            f"<div><p>{html.escape(caption)}</p>{_img(strip_png(strip), caption)}</div>"
            for caption, strip in interpolations
        )
        interp = f"<h2>VAE latent interpolation</h2>{items}"
    facts_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in facts.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in gates.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
.banner {{ padding: .8em 1em; font-weight: bold; font-size: 1.2em; border-radius: 4px; }}
.ok {{ background: #d8f5d8; }} .bad {{ background: #f8d4d4; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: middle; }}
tr.fail td {{ background: #fde8e8; }} tr.pass td:nth-child(5) {{ color: #1a7f1a; }}
img {{ image-rendering: pixelated; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{banner}
<h2>Gates</h2>
<table><tr><th>metric</th><th>group</th><th>value</th><th>threshold</th><th>verdict</th><th>what it measures</th></tr>
{_metric_rows(gates)}
</table>
{f"<ul>{notes}</ul>" if notes else ""}
<h2>Real (holdout) vs synthetic, per class</h2>
<table><tr><th>class</th><th>real</th><th>synthetic</th><th>classifier accuracy on synthetic</th></tr>
{"".join(grid_rows)}
</table>
{interp}
<h2>Run</h2>
<table>{facts_rows}</table>
</body></html>
"""


def write_report(path: Path, report_html: str) -> Path:
    """Write the report (UTF-8); the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html, encoding="utf-8")
    return path


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
