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


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A name word in any script's case: "Müller", "O'Brien", "Linke-Benthin", "McDonald"; not "JFK" or "intl".
_NAME_WORD = re.compile(r"^[^\W\d_][^\W\d_'’.-]*([-'’][^\W\d_]+)*\.?$")
_TITLES = _words("mr mrs ms miss dr dra prof sr sra frau herr mme mlle m ing dipl.-ing univ.prof pan pani sig sig.ra")
_SUFFIXES = _words("jr sr i ii iii iv md phd dds dvm mba b.sc m.sc b.a m.a b.eng")
# Lower-case particles inside a name: "Hendrik van de Ven", "Olivier Pelletier de la Bodin".
_PARTICLES = _words("van von der den de la le du da das dos di del y zu ten ter")
_ADDRESS = re.compile(
    r"^\d+\s+\w+(\s\w+)*(\s(Street|St\.|Avenue|Ave\.|Road|Rd\.|Lane|Way|Drive|Court|Suite|Apt\.))", re.I
)

# Words that make a capitalised phrase an organisation or a place, not a person: corporate suffixes, airlines and
# airports, institutions, geography. A person column holds them rarely (a surname Park or Field), a column of company,
# airport or hospital names mostly.
_ORGANISATION_WORDS = _words(
    """inc incorporated corp corporation llc llp ltd limited co company plc gmbh ag group holdings holding partners
    associates enterprises industries international intl services solutions systems technologies technology labs
    trust capital ventures consulting and air airlines airline airways lines aviation airport airfield airpark
    aerodrome heliport seaplane jetport field fld municipal muni regional rgnl county city memorial mem base afb nas
    station terminal harbor harbour port island lake river valley mount beach bay park creek springs center centre
    executive national state federal bank university college school academy institute hospital clinic medical
    foundation church museum library hotel restaurant store market society association club council department agency
    ministry"""
)
# The share of sampled values with an organisation word, a digit or an ampersand that makes a column organisation or
# place names; the share of values longer than four words that makes it titles or phrases
# (docs/decisions.md#organisation-names).
ORGANISATION_SHARE = 0.25
LONG_NAME_SHARE = 0.5

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


def looks_like_person_name(value: str) -> bool:
    """Two or more capitalised name words, with optional titles, particles and degrees, in any Latin-like script."""
    words = value.split()
    while words and (words[0].lower().rstrip(".") in _TITLES):
        words = words[1:]
    while words and words[-1].lower().rstrip(".") in _SUFFIXES:
        words = words[:-1]
    names = [w for w in words if w not in _PARTICLES]
    if len(names) < 2 or len(names) > 5 or (words and words[0] in _PARTICLES):
        return False
    return all(_NAME_WORD.match(w) and w[0].isupper() and not (len(w.rstrip(".")) > 1 and w.isupper()) for w in names)


def _organisation_word(value: str) -> bool:
    if "&" in value or any(ch.isdigit() for ch in value):
        return True
    return any(w.strip(".,()'\"").lower() in _ORGANISATION_WORDS for w in value.split())


def organisation_evidence(series: pd.Series) -> str | None:
    """Why a text column reads as organisation or place names (so not person names), or None.

    Args:
        series: the column's values (or a sample of them).

    Returns:
        The evidence in words, for the schema's reason: the share of values carrying organisation or place words,
        digits or ampersands, or the share of values longer than four words.
    """
    values = series.dropna().astype(str).str.strip()
    if values.empty:
        return None
    values = values.sample(_SAMPLE, random_state=0) if len(values) > _SAMPLE else values
    marked = float(values.map(_organisation_word).mean())
    if marked >= ORGANISATION_SHARE:
        return f"{marked:.0%} of values carry organisation or place words (Inc, Airport, Bank...) or digits"
    long = float((values.str.split().str.len() > 4).mean())
    if long >= LONG_NAME_SHARE:
        return f"{long:.0%} of values have more than four words"
    return None


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
    if (
        distinct >= 20
        and distinct >= 0.5 * len(values)
        and values.map(looks_like_person_name).mean() >= CONTENT_MATCH_SHARE
    ):
        return None if organisation_evidence(values) else PIIKind.PERSON_NAME
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
    if kind == PIIKind.PERSON_NAME and organisation_evidence(series) is not None:
        return None  # a `name` column of airlines or hospitals: the content outweighs the hint
    if kind is not None:
        return kind, f"name {name!r} says {kind.value.replace('_', ' ')}"
    return None
