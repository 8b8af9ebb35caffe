"""Regenerate identifier columns in the source's format: unique, never a real value, reproducible under a seed.

Every regenerated value is a function of (seed, column, output row), never of how the output was cut into batches,
so a streamed output equals the one-shot output of the same seed. Integers continue past the largest real key; UUIDs
are version-4 UUIDs written as the source wrote them; patterned codes (`REF-####`) keep their literal characters and
draw the varying ones through an affine permutation of the pattern's value space, which makes them unique without
remembering the codes already given.
"""

from __future__ import annotations

import logging
import math
import uuid
import zlib
from typing import Any

import numpy as np
import pandas as pd

from synthgate.schemas.inference import PATTERN_CLASSES, infer_column, key_format
from synthgate.schemas.table import ColumnSchema

logger = logging.getLogger(__name__)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
FALLBACK_PATTERN = "SYN-#########"  # text keys whose values share no format


def column_key(seed: int, name: str, purpose: str) -> int:
    """A 64-bit key for one column and one use (keys, nulls, text) under the run seed."""
    return (seed * 0x9E3779B1 + zlib.crc32(f"{name}\0{purpose}".encode())) & 0xFFFFFFFFFFFFFFFF


def row_hash(key: int, rows: np.ndarray) -> np.ndarray:
    """SplitMix64 of (key + row): independent, uniformly spread 64-bit values per row (Steele et al., 2014)."""
    with np.errstate(over="ignore"):
        z = (rows.astype(np.uint64) + np.uint64(key)) * np.uint64(0x9E3779B97F4A7C15) & _MASK64
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9) & _MASK64
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB) & _MASK64
    return z ^ (z >> np.uint64(31))


def row_uniform(key: int, rows: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, one per row, from `row_hash`."""
    return (row_hash(key, rows) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def integer_keys(col: ColumnSchema, rows: np.ndarray, *, real: set[int]) -> np.ndarray:
    """Integers above every real key (below them when that would overflow the dtype), one per output row."""
    top = int(col.maximum) if col.maximum is not None else max(real, default=0)
    bottom = int(col.minimum) if col.minimum is not None else min(real, default=0)
    try:
        info = np.iinfo(np.dtype(col.dtype.lower()))
    except (TypeError, ValueError):  # a float column a user declared an identifier: keys are whole numbers
        info = np.iinfo(np.int64)
    if top + 1 + int(rows.max(initial=0)) < info.max:
        return top + 1 + rows.astype(np.int64)
    return bottom - 1 - rows.astype(np.int64)  # no room above: count down from below the smallest real key


def uuid_keys(col: ColumnSchema, rows: np.ndarray, *, seed: int, real: set[str]) -> list[str]:
    """Version-4 UUIDs, one per row, in the source's case and with or without hyphens."""
    hi = row_hash(column_key(seed, col.name, "uuid-hi"), rows)
    lo = row_hash(column_key(seed, col.name, "uuid-lo"), rows)
    out = []
    for h, low, row in zip(hi.tolist(), lo.tolist(), rows.tolist(), strict=True):
        value, attempt = uuid.UUID(int=(h << 64) | low, version=4), 0
        while _uuid_text(value, col.format) in real:  # 1 in 2**122: here for the guarantee, not the odds
            attempt += 1
            value = uuid.UUID(int=int(row_hash(column_key(seed, col.name, f"uuid{attempt}"), np.array([row]))[0]))
        out.append(_uuid_text(value, col.format))
    return out


def _uuid_text(value: uuid.UUID, fmt: str | None) -> str:
    text = value.hex if fmt in ("uuid-hex", "UUID-HEX") else str(value)
    return text.upper() if fmt in ("UUID", "UUID-HEX") else text


def pattern_keys(col: ColumnSchema, rows: np.ndarray, *, seed: int, real: set[str], total: int) -> list[str]:
    """Codes in the column's pattern (`REF-####`), unique over the output and never equal to a real code.

    Row `r` of an output of `total` rows takes position `r` of a permutation of the pattern's space; when that code
    is real it moves on to position `r + total`, then `r + 2 * total`: positions of different rows never meet.

    Args:
        col: the identifier column; `col.format` holds the pattern.
        rows: the output rows (global positions) to make codes for.
        seed: the run seed; with the column name it fixes the permutation.
        real: the real codes, never produced.
        total: rows of the whole output.
    """
    pattern = _widened(col.format or "#", 2 * total + len(real), col.name)
    radices = [len(PATTERN_CLASSES[c]) if c in PATTERN_CLASSES else 1 for c in pattern]
    space = math.prod(radices)
    rng = np.random.default_rng(column_key(seed, col.name, "pattern"))
    a = int(rng.integers(1, space))
    while math.gcd(a, space) != 1:
        a = a % (space - 1) + 1
    b = int(rng.integers(0, space))
    out = []
    for row in rows.tolist():
        position = row
        code = _decode(pattern, radices, (a * position + b) % space)
        while code in real:
            position += total
            if position >= space:
                raise ValueError(f"identifier {col.name!r}: pattern {pattern!r} has too few free codes")
            code = _decode(pattern, radices, (a * position + b) % space)
        out.append(code)
    return out


def _widened(pattern: str, needed: int, name: str) -> str:
    """The pattern with digits added to its last digit run until its space holds `needed` codes."""
    space = math.prod(len(PATTERN_CLASSES[c]) for c in pattern if c in PATTERN_CLASSES)
    widened = pattern
    while space < needed:
        cut = widened.rfind("#") + 1
        widened, space = widened[:cut] + "#" + widened[cut:], space * 10
    if widened != pattern:
        logger.warning("identifier %r: pattern %s is too small for the output; using %s", name, pattern, widened)
    return widened


def _decode(pattern: str, radices: list[int], index: int) -> str:
    chars = []
    for symbol, radix in zip(reversed(pattern), reversed(radices), strict=True):
        if radix == 1:
            chars.append(symbol)
            continue
        index, digit = divmod(index, radix)
        chars.append(PATTERN_CLASSES[symbol][digit])
    return "".join(reversed(chars))


def new_identifiers(
    col: ColumnSchema, rows: np.ndarray, *, seed: int, total: int, real: pd.Series | None = None
) -> pd.Series:
    """Fresh keys for an identifier column at output `rows`, in its format and dtype; none equals a value of `real`.

    Args:
        col: the identifier column.
        rows: global positions of the rows in the output (a batch of a streamed output starts past the earlier ones).
        seed: the run seed.
        total: rows of the whole output.
        real: the real column, read only to avoid its values.
    """
    real_values = set() if real is None else set(real.dropna().tolist())
    if col.dtype.lower().startswith(("int", "uint", "float")):
        return pd.Series(integer_keys(col, rows, real={int(v) for v in real_values})).astype(col.dtype)
    real_text = {str(v) for v in real_values}
    if col.format in ("uuid", "UUID", "uuid-hex", "UUID-HEX"):
        values = uuid_keys(col, rows, seed=seed, real=real_text)
    else:  # a key with no recognised format becomes a `SYN-` code of nine digits
        patterned = col if col.format else col.model_copy(update={"format": FALLBACK_PATTERN})
        values = pattern_keys(patterned, rows, seed=seed, real=real_text, total=total)
    return pd.Series(values, dtype=col.dtype)


def _key_schema(name: str, real: pd.Series) -> Any:
    """The key column's schema, with a letters-or-digits pattern for fixed-width codes (`9E`, `JFK`)."""
    col = infer_column(name, real)
    if col.format or pd.api.types.is_numeric_dtype(real):
        return col
    text = real.dropna().astype(str).tolist()
    pattern = key_format(text) if text else None
    if pattern is None and text and len({len(v) for v in text}) == 1:
        symbols = []
        for chars in zip(*text, strict=True):
            joined = "".join(set(chars))
            if joined.isdigit():
                symbols.append("#")
            elif all(c.isupper() or c.isdigit() for c in joined):
                symbols.append("@")
            elif all(c.islower() or c.isdigit() for c in joined):
                symbols.append("?")
            else:
                symbols = []
                break
        pattern = "".join(symbols) or None
    if pattern is not None and not all(c in PATTERN_CLASSES or not c.isalnum() for c in pattern):
        pattern = None
    return col.model_copy(update={"format": pattern, "dtype": "str" if col.dtype == "object" else col.dtype})


def regenerate_key(name: str, real: pd.Series, n: int, *, seed: int) -> pd.Series:
    """`n` fresh, unique keys in the real column's format and dtype; none equals a real key."""
    col = _key_schema(name, real)
    keys = new_identifiers(col, np.arange(n), seed=seed, total=n, real=real)
    if pd.api.types.is_numeric_dtype(real) and not pd.api.types.is_numeric_dtype(keys):
        keys = pd.to_numeric(keys)
    return keys.astype(real.dtype) if real.dtype != object else keys.astype(object)
