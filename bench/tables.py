"""Generated mixed-type tables for benchmarks: correlated numbers, categories that shift them, missing values."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd


def mixed_table(n_rows: int, n_columns: int = 12, *, seed: int = 0) -> pd.DataFrame:
    """A table with about two thirds continuous and one third categorical columns and planted dependencies.

    Each categorical column shifts the mean of some continuous columns, the continuous columns share a random
    correlation structure, and 2% of the values of every other continuous column are missing.
    """
    rng = np.random.default_rng(seed)
    n_cat = max(1, n_columns // 3)
    n_num = n_columns - n_cat
    cats = {f"cat_{j}": rng.integers(0, 3 + j % 5, n_rows) for j in range(n_cat)}
    loadings = rng.normal(size=(n_num, 3))
    latent = rng.normal(size=(n_rows, 3))
    numbers = latent @ loadings.T + 0.5 * rng.normal(size=(n_rows, n_num))
    for j, codes in enumerate(cats.values()):
        numbers[:, j % n_num] += 1.5 * codes  # category-dependent mean shift
    frame = pd.DataFrame({f"num_{i}": numbers[:, i].round(3) * 10 + 100 for i in range(n_num)})
    for i in range(0, n_num, 2):
        frame.loc[rng.random(n_rows) < 0.02, f"num_{i}"] = np.nan
    for name, codes in cats.items():
        frame[name] = pd.Series(np.array([f"level_{c}" for c in range(codes.max() + 1)])[codes], dtype="str")
    return frame


def train_and_fresh(n_rows: int, n_columns: int, n_fresh: int, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A training table and unseen rows from the same distribution, for scoring.

    `mixed_table` draws its loadings and shifts from the seed, so a table with another seed is another distribution:
    fresh rows must be cut from the same draw.
    """
    full = mixed_table(n_rows + n_fresh, n_columns, seed=seed)
    return full.iloc[:n_rows].reset_index(drop=True), full.iloc[n_rows:].reset_index(drop=True)


# A city always lies in one state (a fixed combination a synthesizer should keep).
_CITIES = {
    "CA": ["Los Angeles", "San Diego", "Sacramento", "Fresno"],
    "TX": ["Houston", "Austin", "Dallas", "El Paso"],
    "NY": ["New York", "Buffalo", "Albany"],
    "FL": ["Miami", "Orlando", "Tampa"],
    "IL": ["Chicago", "Springfield"],
    "WA": ["Seattle", "Spokane", "Tacoma"],
}
_SEGMENTS = ("consumer", "small_business", "enterprise")
_INCOME_BY_SEGMENT = {"consumer": 48_000.0, "small_business": 85_000.0, "enterprise": 160_000.0}


def crm_table(n_rows: int = 3000, *, seed: int = 0) -> pd.DataFrame:
    """A CRM export as a data team hands it over: keys, PII, money with cents, dates as text, sparse codes, notes.

    Columns depend on each other the way customer data does: income follows the segment, the balance and the credit
    score follow income, order count follows tenure and segment, `last_login` is never before `signup_date`, and each
    city lies in exactly one state. Names, e-mails, phones and addresses come from Faker under `seed`.

    Args:
        n_rows: rows to build.
        seed: seeds numpy and Faker, so the table is the same for the same arguments.

    Returns:
        20 columns: `customer_id` (int64, unique), `account_ref` (uuid4 text), `name`, `email`, `phone`, `address`,
        `state`, `city`, `country` (constant), `segment`, `annual_income` and `account_balance` (2 decimals, all
        distinct), `credit_score` (int), `signup_date` (text `%Y-%m-%d`), `last_login` (text `%Y-%m-%d %H:%M:%S`),
        `order_count` (int), `is_active` and `newsletter_opt_in` (bool), `referral_code` (`REF-1234`, ~85% null),
        `notes` (free text, some null).
    """
    from faker import Faker

    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    fake.unique.clear()
    segment = rng.choice(_SEGMENTS, size=n_rows, p=[0.6, 0.3, 0.1])
    income_mean = np.array([_INCOME_BY_SEGMENT[s] for s in segment])
    income = _distinct_cents(income_mean * rng.lognormal(0.0, 0.3, n_rows), rng)
    balance = _distinct_cents(income * rng.beta(2, 8, n_rows) * 0.4 + rng.normal(0, 300, n_rows).clip(-250), rng)
    credit = (560 + 110 * np.log(income / 30_000).clip(0) + rng.normal(0, 45, n_rows)).clip(300, 850).round()
    signup = pd.Timestamp("2018-01-01") + pd.to_timedelta(rng.integers(0, 6 * 365, n_rows), unit="D")
    tenure_days = (pd.Timestamp("2024-06-30") - signup).days.to_numpy()
    since_login = pd.to_timedelta((rng.random(n_rows) * tenure_days * 86_400).astype(np.int64), unit="s")
    last_login = pd.Timestamp("2024-06-30 23:59:59") - since_login
    active = (tenure_days - since_login.days.to_numpy()) > 0.3 * tenure_days
    per_year = {"consumer": 3.0, "small_business": 8.0, "enterprise": 20.0}
    orders = rng.poisson(np.array([per_year[s] for s in segment]) * tenure_days / 365 * (0.4 + 0.6 * active))
    state = rng.choice(list(_CITIES), size=n_rows, p=[0.3, 0.2, 0.2, 0.12, 0.1, 0.08])
    city = [_CITIES[s][rng.integers(len(_CITIES[s]))] for s in state]
    referral = [f"REF-{rng.integers(1000, 10_000)}" if rng.random() < 0.15 else None for _ in range(n_rows)]
    notes = [None if rng.random() < 0.3 else fake.sentence(nb_words=int(rng.integers(4, 16))) for _ in range(n_rows)]
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(100_001, 100_001 + n_rows, dtype=np.int64)[rng.permutation(n_rows)],
            "account_ref": [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n_rows)],
            "name": [fake.name() for _ in range(n_rows)],
            "email": [fake.unique.email() for _ in range(n_rows)],
            "phone": [fake.phone_number() for _ in range(n_rows)],
            "address": [fake.street_address() for _ in range(n_rows)],
            "state": state,
            "city": city,
            "country": "US",
            "segment": segment,
            "annual_income": income,
            "account_balance": balance,
            "credit_score": credit.astype(np.int64),
            "signup_date": signup.strftime("%Y-%m-%d"),
            "last_login": last_login.strftime("%Y-%m-%d %H:%M:%S"),
            "order_count": orders.astype(np.int64),
            "is_active": active,
            "newsletter_opt_in": rng.random(n_rows) < np.where(segment == "consumer", 0.35, 0.6),
            "referral_code": referral,
            "notes": notes,
        }
    )
    text = frame.select_dtypes(exclude=["number", "bool"]).columns
    frame[text] = frame[text].astype("str")  # the dtype `pd.read_csv` gives text columns
    return frame


def _distinct_cents(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round to cents and nudge the few collisions by a cent, so every value is distinct (as in a real ledger)."""
    cents = np.round(values * 100).astype(np.int64)
    while True:
        _, first = np.unique(cents, return_index=True)
        dupes = np.setdiff1d(np.arange(len(cents)), first)
        if dupes.size == 0:
            return cents / 100.0
        cents[dupes] += rng.integers(1, 50, dupes.size)


ACCOUNT_OPENERS = (
    "Customer called about the invoice.",
    "Spoke with the account owner.",
    "Follow-up on last week's ticket.",
    "Billing question raised by chat.",
)
CHURN_PHRASE = "asked to cancel the subscription"


def account_notes_table(n_rows: int = 400, *, seed: int = 0) -> pd.DataFrame:
    """Customer accounts with an agent's note whose wording depends on the row, with contact details inside.

    Each note opens with one of a few sentences, then says the customer asked to cancel (churned rows) or renewed
    (the rest), and a third of the notes end with a real-looking e-mail or phone number; 15% of notes are missing.

    Returns:
        `plan` (text category), `churned` (bool), `tenure_months` (int64), `notes` (free text, some null).
    """
    from faker import Faker

    rng = np.random.default_rng(seed)
    fake = Faker()
    fake.seed_instance(seed)
    churned = rng.random(n_rows) < 0.4
    notes: list[str | None] = []
    for lost in churned:
        if rng.random() < 0.15:
            notes.append(None)
            continue
        parts = [ACCOUNT_OPENERS[rng.integers(len(ACCOUNT_OPENERS))]]
        parts.append(f"They {CHURN_PHRASE}." if lost else "They renewed for another year.")
        contact = rng.random()
        if contact < 0.3:
            parts.append(f"Reach them at {fake.email()}.")
        elif contact < 0.6:
            parts.append(f"Call back on {fake.phone_number()}.")
        notes.append(" ".join(parts))
    return pd.DataFrame(
        {
            "plan": rng.choice(["basic", "pro", "team"], n_rows),
            "churned": churned,
            "tenure_months": rng.integers(1, 60, n_rows).astype(np.int64),
            "notes": pd.Series(notes, dtype="str"),
        }
    )
