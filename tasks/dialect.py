"""How a CSV file was written: its text encoding and field separator, detected from a prefix of the file.

Spreadsheet exports differ by locale: Excel in Western Europe saves cp1252 text separated by `;`, other tools write
UTF-8 with or without a byte-order mark, tabs or pipes. Reading only a prefix keeps detection fast on large files;
`--encoding` and `--sep` override either guess (docs/decisions.md#csv-dialect).
"""

from __future__ import annotations

import codecs
import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from synthgate.schemas.errors import InvalidInputError

logger = logging.getLogger(__name__)

SNIFF_BYTES = 1 << 20  # prefix read for detection: enough for hundreds of rows of a wide table, instant to read
SEPARATORS = ",;\t|"
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"))
_BOMS += ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_SEP_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass(frozen=True)
class CsvDialect:
    """The encoding and separator a CSV file is read with, and whether each was detected or given."""

    encoding: str
    sep: str
    encoding_detected: bool = True
    sep_detected: bool = True

    def describe(self) -> str:
        enc = f"encoding {self.encoding} ({'detected' if self.encoding_detected else 'given'})"
        sep = f"separator {_SEP_NAMES.get(self.sep, repr(self.sep))} ({'detected' if self.sep_detected else 'given'})"
        return f"{enc}, {sep}"


def detect_encoding(prefix: bytes) -> str:
    """The encoding of a file starting with `prefix`: a byte-order mark, else UTF-8 if the bytes are valid UTF-8,
    else cp1252 (Windows western European, what Excel writes there), else latin-1 (decodes any byte).

    A statistical detector (charset_normalizer) named cp1250 for cp1252 exports and cp1006 for short ones, which
    garbles accented names; a valid-UTF-8 test is exact, and cp1252 covers latin-1's printable characters.
    """
    for bom, name in _BOMS:
        if prefix.startswith(bom):
            return name
    try:
        codecs.getincrementaldecoder("utf-8")().decode(prefix, final=False)  # a character cut at the end is fine
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        prefix.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def detect_separator(text: str) -> str:
    """The field separator of CSV `text` (one of `,` `;` tab `|`), by csv.Sniffer; a comma if nothing fits."""
    cut = text.rfind("\n")
    sample = text[:cut] if cut > 0 else text  # whole lines only: a cut row would skew the counts
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except csv.Error:  # one column, or no consistent separator: pandas' default
        return ","


def sniff_csv(path: str | Path, *, encoding: str | None = None, sep: str | None = None) -> CsvDialect:
    """Detect what was not given of `path`'s encoding and separator, from its first `SNIFF_BYTES` bytes.

    Raises:
        InvalidInputError: `encoding` is not a codec Python knows, or the file cannot be decoded with it.
    """
    with open(path, "rb") as handle:
        prefix = handle.read(SNIFF_BYTES)
    chosen = encoding or detect_encoding(prefix)
    try:
        codec = codecs.lookup(chosen)
    except LookupError as exc:
        raise InvalidInputError(
            f"{path}: unknown encoding {chosen!r}; give a Python codec name such as utf-8, cp1252 or latin-1"
        ) from exc
    if sep is None:
        text = codec.incrementaldecoder(errors="replace").decode(prefix, final=False)
        found = detect_separator(text)
    else:
        found = _unescape(sep)
    dialect = CsvDialect(chosen, found, encoding_detected=encoding is None, sep_detected=sep is None)
    logger.info("csv: %s: %s", path, dialect.describe())
    return dialect


def header_names(path: str | Path, dialect: CsvDialect) -> list[str]:
    """The header row's names exactly as written (pandas renames a repeated `a` to `a.1`, hiding duplicates)."""
    with open(path, encoding=dialect.encoding, errors="replace", newline="") as handle:
        return next(csv.reader(handle, delimiter=dialect.sep), [])


def _unescape(sep: str) -> str:
    """`--sep '\\t'` or `--sep tab` as typed in a shell means a tab character."""
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    value = named.get(sep.lower(), sep)
    if len(value) != 1:
        raise InvalidInputError(f"separator {sep!r} must be one character, e.g. ',' ';' '|' or 'tab'")
    return value
