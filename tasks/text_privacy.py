"""Keep personal data out of free text: typed placeholders before training, fakes after sampling.

Notes written by people carry e-mails, phone numbers, account numbers, links and names. A text model must never see
them, so `scrub` replaces each by a typed placeholder (`<EMAIL>`) before training; the model learns where such values
go, not what they are. After sampling, `fill` scrubs the synthetic text once more (the model may spell out something
that looks like a phone number character by character) and puts a Faker value of the placeholder's type in each place,
never one equal to a real value found in the source.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

EMAIL, URL, PHONE, ID, NAME = "<EMAIL>", "<URL>", "<PHONE>", "<ID>", "<NAME>"
PLACEHOLDERS = (EMAIL, URL, PHONE, ID, NAME)

# Order matters: an e-mail or a link contains digits a phone pattern would take, a phone contains a digit run.
# Each with what it cannot match without: that plain search skips the pattern's slower scan on most texts.
_DIGIT = re.compile(r"\d")
_PATTERNS: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    (EMAIL, re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+"), re.compile("@")),
    (URL, re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.I), re.compile(r"://|www\.", re.I)),
    (ID, re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), _DIGIT),  # US social security number
    (PHONE, re.compile(r"(?:\+|\b00)?\(?\d[\d().\s-]{5,}\d(?:\s?(?:x|ext\.?)\s?\d+)?"), _DIGIT),
    (ID, re.compile(r"\b[A-Z]{0,4}-?\d{5,}\b"), _DIGIT),  # account, order and card numbers
    (NAME, re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?"), re.compile("Mr|Ms|Miss|Dr")),
)
_MIN_PHONE_DIGITS = 7
_DATE = re.compile(r"^(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$")
_PLACEHOLDER_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")")
_FAKER_METHOD = {EMAIL: "email", URL: "url", PHONE: "phone_number", ID: "bothify", NAME: "name"}


def _is_value(kind: str, match: str) -> bool:
    """Whether a pattern hit is the value: a phone needs seven digits and is not a date, so dates and amounts stay."""
    if kind != PHONE:
        return True
    return sum(ch.isdigit() for ch in match) >= _MIN_PHONE_DIGITS and not _DATE.match(match.strip())


def scrub(text: str, *, known: Iterable[str] = ()) -> tuple[str, list[str]]:
    """`text` with personal values replaced by typed placeholders, and the real values found.

    Args:
        text: one free-text value.
        known: values that must go whatever they look like, e.g. the same row's name column (the PII detector's
            columns), replaced by `<NAME>`.

    Returns:
        `(scrubbed, found)`: found lists the real values removed, so the output can be checked against them.
    """
    found: list[str] = []
    for value in sorted({k for k in known if isinstance(k, str) and len(k) >= 3}, key=len, reverse=True):
        if value in text:
            found.append(value)
            text = text.replace(value, NAME)
    for kind, pattern, needs in _PATTERNS:
        if not needs.search(text):
            continue

        def swap(match: re.Match[str], kind: str = kind) -> str:
            if not _is_value(kind, match.group(0)):
                return match.group(0)
            found.append(match.group(0))
            return kind

        text = pattern.sub(swap, text)
    return text, found


def scrub_column(texts: pd.Series, known: pd.DataFrame | None = None) -> tuple[list[str | None], set[str]]:
    """Scrub a whole column; `known` holds the same rows' PII columns, whose values are removed where they appear.

    Returns:
        `(texts, found)`: the scrubbed texts (None for missing) and every real value removed.
    """
    out: list[str | None] = []
    found: set[str] = set()
    rows = known.astype(object).to_numpy().tolist() if known is not None and known.shape[1] else None
    for i, value in enumerate(texts.tolist()):
        if not isinstance(value, str):
            out.append(None)
            continue
        clean, hits = scrub(value, known=[str(v) for v in rows[i] if isinstance(v, str)] if rows else ())
        out.append(clean)
        found.update(hits)
    return out, found


@functools.cache
def _faker() -> Any:
    from faker import Faker

    return Faker(use_weighting=False)


def _fake(kind: str, key: str, seed: int) -> str:
    fake = _faker()
    fake.seed_instance(int.from_bytes(hashlib.sha256(f"{seed}:{kind}:{key}".encode()).digest()[:8], "big"))
    if kind == ID:
        return str(fake.bothify("########"))
    return str(getattr(fake, _FAKER_METHOD[kind])())


def _holds_real(value: str, avoid: set[str] | _RealValues) -> bool:
    """Whether a real value is part of `value`: `bjohnson@example.net` holds the real `johnson@example.net`."""
    return (avoid if isinstance(avoid, _RealValues) else _RealValues(avoid)).within(value)


class _RealValues:
    """Real values of at least three characters, by their first three, so a fake is checked in one pass over it."""

    def __init__(self, values: Iterable[str]) -> None:
        self.by_prefix: dict[str, list[str]] = {}
        for value in values:
            if len(value) >= 3:
                self.by_prefix.setdefault(value[:3], []).append(value)

    def within(self, text: str) -> bool:
        starts = self.by_prefix
        return any(text.startswith(v, i) for i in range(len(text) - 2) for v in starts.get(text[i : i + 3], ()))


def fill(texts: list[str | None], *, seed: int, avoid: set[str], rows: Iterable[int] | None = None) -> list[str | None]:
    """Synthetic texts with every placeholder, and anything that looks like personal data, replaced by a fake.

    Args:
        texts: sampled texts (None for missing).
        seed: the run seed; a row's fakes depend on (seed, row, position) only.
        avoid: real values found by `scrub_column`; no fake equals or contains one.
        rows: output row numbers (default 0..n-1), so streamed batches draw different fakes.
    """
    rows = list(rows) if rows is not None else list(range(len(texts)))
    real = _RealValues(avoid)
    out: list[str | None] = []
    scrubbed: dict[str, list[str]] = {}  # sampled texts repeat: each distinct one is scrubbed and split once
    for row, text in zip(rows, texts, strict=True):
        if text is None:
            out.append(None)
            continue
        if text not in scrubbed:  # what the model spelled out itself is replaced too
            scrubbed[text] = _PLACEHOLDER_SPLIT.split(scrub(text)[0])
        pieces = list(scrubbed[text])
        for i in range(1, len(pieces), 2):
            value, attempt = _fake(pieces[i], f"{row}:{i}", seed), 0
            while real.within(value) and attempt < 50:
                attempt += 1
                value = _fake(pieces[i], f"{row}:{i}#{attempt}", seed)
            pieces[i] = value
        out.append("".join(pieces))
    return out
