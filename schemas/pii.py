"""Detect columns that hold personal data, by column name and by content.

Name rules catch the obvious (`email`, `phone_number`, `last_name`, `ssn`); content rules catch the columns a user
named `contact` or `col_7`. Both are cheap: names are tokenised once and content rules look at a bounded sample.
"""

from __future__ import annotations

import re
from enum import StrEnum

import pandas as pd


class PIIKind(StrEnum):
    """What kind of personal data a column holds."""

    EMAIL = "email"
    PHONE = "phone"
    PERSON_NAME = "person_name"
    NATIONAL_ID = "national_id"
    ADDRESS = "address"
    FREE_TEXT = "free_text"


_EMAIL = re.compile(r"^[\w.+'-]+@[\w-]+(\.[\w-]+)+$")
_PHONE = re.compile(r"^(\+|00)?[\d\s().x-]{7,}$")
_NATIONAL_ID = re.compile(r"^(\d{3}-\d{2}-\d{4}|[A-Z]{2}\d{6}[A-D]|\d{9,11}|[A-Z]\d{7,8})$")
_PERSON_NAME = re.compile(
    r"^(Mr\.|Mrs\.|Ms\.|Dr\.|Miss)?\s?[A-Z][a-z'’-]+(\s[A-Z][a-z'’.-]*)+(\s(Jr\.|Sr\.|I{1,3}|IV|MD|PhD|DDS|DVM))?$"
)
_ADDRESS = re.compile(
    r"^\d+\s+\w+(\s\w+)*(\s(Street|St\.|Avenue|Ave\.|Road|Rd\.|Lane|Way|Drive|Court|Suite|Apt\.))", re.I
)

_NAME_TOKENS = {
    PIIKind.EMAIL: ({"email", "mail", "e-mail", "emailaddress"}, set()),
    PIIKind.PHONE: ({"phone", "telephone", "tel", "mobile", "cell", "fax", "msisdn", "phonenumber"}, set()),
    PIIKind.NATIONAL_ID: ({"ssn", "nin", "passport", "sin", "nino", "tin", "nationalid", "taxid"}, set()),
    PIIKind.ADDRESS: ({"address", "street", "addr"}, set()),
}
_NAME_PARTS = {"first", "last", "full", "given", "family", "middle", "maiden", "person", "patient", "customer", "user"}

# The share of non-null values that must match a content rule before a column is flagged.
CONTENT_MATCH_SHARE = 0.8
_SAMPLE = 500


def _tokens(column: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", column)
    return [t for t in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if t]


def pii_from_name(column: str) -> PIIKind | None:
    """Flag a column by its name alone (`customer_email`, `lastName`, `SSN`)."""
    tokens = _tokens(column)
    joined = "".join(tokens)
    for kind, (words, _) in _NAME_TOKENS.items():
        if any(t in words for t in tokens) or joined in words:
            return kind
    if joined in {"name", "fullname", "surname", "firstname", "lastname", "forename"} or "surname" in tokens:
        return PIIKind.PERSON_NAME
    if "name" in tokens and any(t in _NAME_PARTS for t in tokens):
        return PIIKind.PERSON_NAME
    if joined in {"nationalid", "socialsecuritynumber", "socialsecurity", "idnumber", "taxnumber"}:
        return PIIKind.NATIONAL_ID
    return None


def _share(values: pd.Series, pattern: re.Pattern[str]) -> float:
    if values.empty:
        return 0.0
    return float(values.map(lambda v: bool(pattern.match(v))).mean())


def pii_from_content(series: pd.Series) -> PIIKind | None:
    """Flag a string column whose values look like emails, phones, national IDs, person names or addresses."""
    values = series.dropna()
    if values.empty or not (pd.api.types.is_string_dtype(values) or values.dtype == object):
        return None
    values = values.astype(str).str.strip()
    values = values.sample(min(len(values), _SAMPLE), random_state=0) if len(values) > _SAMPLE else values
    if _share(values, _EMAIL) >= CONTENT_MATCH_SHARE:
        return PIIKind.EMAIL
    if _share(values, _NATIONAL_ID) >= CONTENT_MATCH_SHARE and values.nunique() > 0.9 * len(values):
        return PIIKind.NATIONAL_ID
    digits = values.str.count(r"\d")
    if _share(values, _PHONE) >= CONTENT_MATCH_SHARE and (digits >= 7).mean() >= CONTENT_MATCH_SHARE:
        return PIIKind.PHONE
    if _share(values, _ADDRESS) >= CONTENT_MATCH_SHARE:
        return PIIKind.ADDRESS
    # Names: mostly distinct "Capitalised Words". A category such as "Adelie Penguin" repeats, so it is not flagged.
    distinct = values.nunique()
    if distinct >= 20 and distinct >= 0.5 * len(values) and _share(values, _PERSON_NAME) >= CONTENT_MATCH_SHARE:
        return PIIKind.PERSON_NAME
    return None


def detect_pii(name: str, series: pd.Series) -> PIIKind | None:
    """Content first (it is evidence), then the name (a hint that also covers empty or odd-looking columns)."""
    found = explain_pii(name, series)
    return None if found is None else found[0]


_CONTENT_WORDS = {
    PIIKind.EMAIL: "e-mail addresses",
    PIIKind.PHONE: "phone numbers",
    PIIKind.PERSON_NAME: "person names",
    PIIKind.NATIONAL_ID: "national id numbers",
    PIIKind.ADDRESS: "street addresses",
}


def explain_pii(name: str, series: pd.Series) -> tuple[PIIKind, str] | None:
    """`detect_pii` with the evidence in words, for the schema's one-line reason a person can check."""
    kind = pii_from_content(series)
    if kind is not None:
        return kind, f"{int(CONTENT_MATCH_SHARE * 100)}%+ of sampled values look like {_CONTENT_WORDS[kind]}"
    kind = pii_from_name(name)
    if kind is not None:
        return kind, f"name {name!r} says {kind.value.replace('_', ' ')}"
    return None
