"""Free-text columns: a row-conditioned text model, personal data scrubbed before training, memorisation measured."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from bench.tables import ACCOUNT_OPENERS, CHURN_PHRASE, account_notes_table
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.text import TextConfig, TextModel
from synthgate.models.text_tokens import PUBLIC_CHARACTERS, Vocabulary
from synthgate.schemas.errors import InvalidInputError, NotFittedError
from synthgate.schemas.table import infer_schema
from synthgate.tasks.text_columns import columns_to_synthesize, synthesize_text, text_actions
from synthgate.tasks.text_fidelity import text_fidelity
from synthgate.tasks.text_memory import longest_shared_ngrams, memorisation
from synthgate.tasks.text_privacy import (
    EMAIL,
    ID,
    NAME,
    PHONE,
    PLACEHOLDERS,
    URL,
    _holds_real,
    fill,
    scrub,
    scrub_column,
)

EMAILS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
PHONES = re.compile(r"(?:\+|\b00)?\(?\d[\d().\s-]{5,}\d(?:\s?x\d+)?")


# ------------------------------------------------------------------------------------------------ scrubbing
def test_scrub_replaces_contacts_ids_links_and_titled_names_but_keeps_dates_and_amounts():
    # Act
    text, found = scrub(
        "Dr. Jane Smith paid $120.50 on 2024-01-03 for order ORD-123456; mail jane.s@corp.example.com, "
        "call (555) 123-4567 x89 or see https://corp.example.com/t?id=7"
    )

    # Assert
    assert text == (f"{NAME} paid $120.50 on 2024-01-03 for order {ID}; mail {EMAIL}, call {PHONE} or see {URL}")
    assert {"jane.s@corp.example.com", "Dr. Jane Smith", "ORD-123456"} <= set(found)


def test_scrub_column_removes_the_rows_own_pii_values():
    # Arrange
    texts = pd.Series(["Talked to Ann Lee about fees", None])
    known = pd.DataFrame({"full_name": ["Ann Lee", "Bo Chen"]})

    # Act
    out, found = scrub_column(texts, known)

    # Assert
    assert out == [f"Talked to {NAME} about fees", None] and found == {"Ann Lee"}


def test_fill_puts_fakes_in_placeholders_and_replaces_contacts_the_model_spelled_out():
    # Arrange
    sampled = [f"Mail {EMAIL} or call {PHONE}.", "Call 555-201-3344 now.", None]
    real = {"555-201-3344"}

    # Act
    out = fill(sampled, seed=3, avoid=real)

    # Assert
    assert out[2] is None
    assert not any(p in t for t in out[:2] for p in PLACEHOLDERS)
    assert EMAILS.search(out[0]) and "555-201-3344" not in out[1] and PHONES.search(out[1])
    assert out == fill(sampled, seed=3, avoid=real)  # fakes follow the seed
    assert _holds_real("bjohnson@example.net", {"johnson@example.net"})  # a fake may not wrap a real value either


# ------------------------------------------------------------------------------------------------ memorisation
def test_longest_shared_ngram_counts_words_shared_with_one_training_text():
    # Arrange
    train = ["the cat sat on the mat", "a dog ran far away"]

    # Act
    runs = longest_shared_ngrams(["the cat sat far away", "nothing here", "a dog ran far away"], train)

    # Assert
    assert runs.tolist() == [3, 0, 5]  # "far away" and "the cat sat" are in different texts: the longest is 3


def test_memorisation_puts_synthetic_rates_beside_the_holdout_rates():
    # Act
    figures = memorisation(["a b c", "d e f", None], ["a b c", "x y"], ["a b c", "d e x", None])

    # Assert
    assert figures["synthetic_exact_share"] == 0.5 and figures["holdout_exact_share"] == 0.5
    assert figures["synthetic_ngram_max"] == 3 and figures["holdout_ngram_max"] == 3


def test_text_fidelity_is_zero_distance_for_the_same_texts_and_large_for_others():
    # Arrange
    real = ["they asked to cancel", "they renewed today", None]

    # Act
    same = text_fidelity(real, list(reversed(real)))
    other = text_fidelity(real, ["completely different words here"])

    # Assert
    assert same == {"length_ks": 0.0, "vocabulary_overlap": 1.0, "bigram_distance": 0.0}
    assert other["bigram_distance"] == 1.0 and other["vocabulary_overlap"] == 0.0 and other["length_ks"] > 0


# ------------------------------------------------------------------------------------------------ actions
def test_text_actions_default_to_synthesize_and_fall_back_to_fake_with_a_note():
    # Arrange
    short = [f"free text value number {i} of some moderate length" for i in range(30)]
    frame = pd.DataFrame({"short": short, "long": [f"word {i} " * 200 for i in range(30)]})
    schema = infer_schema(frame)

    # Act
    actions, notes = text_actions(schema, frame)
    private, private_notes = text_actions(schema, frame, {"long": "drop"}, private=True)
    asked, _ = text_actions(schema, frame, {"short": "synthesize"}, private=True)

    # Assert
    assert actions == {"short": "synthesize", "long": "fake"} and "mean length" in notes[0]
    assert private == {"short": "fake", "long": "drop"} and "--text short=synthesize" in private_notes[0]
    assert asked["short"] == "synthesize"
    assert columns_to_synthesize(schema, frame, {"short": "synthesize"}) == ["short"]  # these get a DP budget
    assert columns_to_synthesize(schema, frame, None) == []
    with pytest.raises(InvalidInputError, match="not free-text columns"):
        text_actions(schema, frame, {"nope": "fake"})


# ------------------------------------------------------------------------------------------------ vocabulary
def test_vocabulary_keeps_frequent_words_whole_and_spells_rare_ones():
    # Arrange
    texts = [f"The account was closed by {EMAIL} on {day}" for day in ("Monday", "Tuesday")] * 5 + ["Zyzzyva here"]

    # Act
    vocab = Vocabulary.learn(texts, placeholders=PLACEHOLDERS, min_char_count=1, min_word_rows=5, max_words=100)
    ids = vocab.encode(texts, max_tokens=256)

    # Assert
    assert {" account", " closed", " Monday"} <= set(vocab.tokens) and " here" not in vocab.tokens
    assert len(ids[0]) == 10  # The, account, was, closed, by, " ", <EMAIL>, on, Monday, <eos>
    assert [vocab.decode(i) for i in ids] == texts
    assert vocab.decode(vocab.encode([None], 8)[0]) is None


def test_vocabulary_makes_a_sentence_many_texts_share_one_token():
    # Arrange
    texts = [f"Spoke with the owner. They renewed. Ticket {n} closed" for n in range(10)]
    texts += ["Spoke with the owner. A unique remark follows."]

    # Act
    vocab = Vocabulary.learn(
        texts, placeholders=PLACEHOLDERS, min_char_count=1, min_word_rows=5, max_words=100, max_phrases=10
    )
    ids = vocab.encode(texts, max_tokens=256)

    # Assert
    assert {"Spoke with the owner.", " They renewed.", " Ticket", " closed"} <= set(vocab.tokens)
    assert not [t for t in vocab.tokens if "remark" in t or "Ticket " in t or ("closed" in t and len(t) > 7)]
    assert len(ids[0]) == 7  # two sentence tokens, Ticket, " ", 0, closed, then <eos>
    assert [vocab.decode(i) for i in ids] == texts


def test_private_vocabulary_never_keeps_a_word_of_a_single_text():
    # Arrange
    texts = ["renewed for another year"] * 3000 + ["secretword"]

    # Act
    vocab = Vocabulary.private(
        texts, placeholders=(), epsilon=4.0, delta=1e-6, max_words=100, generator=torch.Generator().manual_seed(0)
    )

    # Assert
    assert {" another", " year"} <= set(vocab.tokens) and "secretword" not in vocab.tokens
    assert set(PUBLIC_CHARACTERS) <= set(vocab.tokens)


# ------------------------------------------------------------------------------------------------ model
@pytest.fixture(scope="module")
def tiny_model() -> TextModel:
    texts = ["ab", "abc", None, "ba"] * 10
    conditions = torch.arange(40, dtype=torch.float32).reshape(-1, 1) % 2
    return TextModel(TextConfig(min_steps=3, max_steps=3, hidden=8, embed=4)).fit(texts, conditions=conditions)


def test_text_model_follows_the_model_contract(tiny_model, tmp_path):
    # Arrange
    conditions = torch.zeros((20, 1))

    # Act
    a = tiny_model.sample(20, conditions=conditions, generator=torch.Generator().manual_seed(1))
    b = tiny_model.sample(20, conditions=conditions, generator=torch.Generator().manual_seed(1))
    tiny_model.save(tmp_path / "text")
    loaded = TextModel.load(tmp_path / "text")

    # Assert
    assert a == b and len(a) == 20
    assert loaded.sample(20, conditions=conditions, generator=torch.Generator().manual_seed(1)) == a
    with pytest.raises(NotFittedError):
        TextModel().sample(2)
    with pytest.raises(InvalidInputError, match="width"):
        tiny_model.sample(2, conditions=torch.zeros((2, 3)))


@pytest.fixture(scope="module")
def notes_run() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = account_notes_table(500, seed=1)
    train, holdout = frame.iloc[:400].reset_index(drop=True), frame.iloc[400:].reset_index(drop=True)
    schema = infer_schema(train)
    encoder = TableEncoder(schema).fit(train[[c.name for c in schema.modelled]])
    # Stand-in synthetic rows: the tabular columns redrawn, so the text part is judged on its own.
    # 1000 draws: the missing share's standard error (~0.012) stays well inside the 0.05 tolerance.
    synthetic = train.sample(1000, replace=True, random_state=2).reset_index(drop=True)
    outcome = synthesize_text(synthetic, train, holdout, schema, encoder, seed=0)
    return frame, synthetic, outcome


def test_synthetic_notes_keep_missing_share_openers_and_row_dependence(notes_run):
    # Arrange
    frame, synthetic, outcome = notes_run
    texts = outcome.frame["notes"]

    # Act
    kept = texts.dropna()
    opens = kept.map(lambda t: t.startswith(ACCOUNT_OPENERS)).mean()
    says = texts.map(lambda t: isinstance(t, str) and CHURN_PHRASE in t).to_numpy()
    churned = synthetic["churned"].to_numpy()

    # Assert
    assert abs(texts.isna().mean() - frame["notes"].isna().mean()) < 0.05
    assert opens >= 0.8
    assert says[churned].mean() >= 3 * max(says[~churned].mean(), 1 / len(texts))


def test_no_real_email_or_phone_reaches_the_synthetic_notes(notes_run):
    # Arrange
    frame, _, outcome = notes_run
    out = outcome.frame
    real = set()
    for text in frame["notes"].dropna():
        real |= set(EMAILS.findall(text)) | {p.strip() for p in PHONES.findall(text)}

    # Act
    leaked = [t for t in out["notes"].dropna() if any(r in t for r in real)]

    # Assert
    assert real and not leaked
    assert out["notes"].dropna().str.contains("@").any()  # the contacts are there, as fakes
    assert np.isin(out.columns, frame.columns).all()
    shown = outcome.examples["notes"]["real"] + outcome.examples["notes"]["synthetic"]
    assert len(shown) == 10 and not [t for t in shown if any(r in t for r in real)]  # the report's examples too


def test_synthetic_notes_follow_the_churn_flag_per_category(notes_run):
    # Arrange
    _, _, outcome = notes_run

    # Act
    metric = next(m for m in outcome.metrics if m.name == "text_category_similarity[notes]")
    churned = metric.details["columns"]["churned"]

    # Assert
    assert metric.passed is None  # information only
    assert churned["similarity"] > churned["shuffled"] + 0.03  # the texts follow the row, not just the column


def test_report_shows_text_examples_side_by_side_escaped():
    # Arrange
    from synthgate.tasks.report import _text_section

    # Act
    html = _text_section({"notes": {"real": [f"Mail {EMAIL} <b>"], "synthetic": ["Call 555-0100", "Renewed."]}})

    # Assert
    assert "&lt;EMAIL&gt;" in html and "&lt;b&gt;" in html and html.count("<tr>") == 3
    assert _text_section({}) == ""


def test_synthetic_notes_read_like_the_holdout(notes_run):
    # Arrange
    frame, _, outcome = notes_run
    held = frame["notes"].iloc[400:].tolist()
    out = outcome.frame

    # Act
    figures = text_fidelity(held, out["notes"].tolist())

    # Assert
    assert figures["vocabulary_overlap"] >= 0.8 and figures["bigram_distance"] <= 0.5


def test_cli_text_option_parses_actions_and_names_the_fix():
    # Arrange
    from synthgate.flows.cli import _parse_text

    # Act
    parsed = _parse_text(["notes=fake", "subject = drop"])

    # Assert
    assert parsed == {"notes": "fake", "subject": "drop"}
    with pytest.raises(InvalidInputError, match="COLUMN=synthesize"):
        _parse_text(["notes=rewrite"])


def test_fake_keeps_the_faker_text_and_drop_removes_the_column():
    # Arrange
    frame = account_notes_table(60, seed=4)
    schema = infer_schema(frame)
    train, holdout = frame.iloc[:50], frame.iloc[50:]

    # Act
    kept = synthesize_text(frame, train, holdout, schema, None, seed=0, overrides={"notes": "fake"})
    dropped = synthesize_text(frame, train, holdout, schema, None, seed=0, overrides={"notes": "drop"})

    # Assert
    assert kept.frame.equals(frame) and not kept.metrics and kept.actions == {"notes": "fake"}
    assert list(dropped.frame.columns) == ["plan", "churned", "tenure_months"]


# ------------------------------------------------------------------------------------------------ privacy
def test_budget_split_sets_text_columns_aside_and_counts_them_in_the_spent_epsilon():
    # Arrange
    from synthgate.tasks.dp_preprocess import TEXT_SHARE, prepare_training

    frame = account_notes_table(300, seed=5)

    # Act
    prepared = prepare_training(
        frame, infer_schema(frame), model="gmm", epsilon=2.0, delta=None, rare_k=None, public_schema=False,
        text_columns=["notes"],
    )  # fmt: skip
    eps, _ = prepared.text_budget["notes"]

    # Assert
    assert eps == pytest.approx(TEXT_SHARE * 2.0)
    assert prepared.private.preprocess_epsilon + prepared.private.train_epsilon == pytest.approx(2.0 - eps)
    assert prepared.spent(None)[0] == pytest.approx(2.0)
    assert any("text columns ['notes']" in n for n in prepared.notes)


@pytest.mark.slow
def test_private_text_model_spends_at_most_its_budget_and_reports_it():
    # Arrange
    frame = account_notes_table(300, seed=6)
    texts, _ = scrub_column(frame["notes"])
    cfg = TextConfig(epsilon=2.0, delta=1e-5, dp_epochs=1, hidden=16, embed=8, max_tokens=40)

    # Act
    model = TextModel(cfg, placeholders=PLACEHOLDERS).fit(texts)
    sampled = model.sample(50, generator=torch.Generator().manual_seed(0))

    # Assert
    assert model.privacy_["epsilon"] <= 2.0 + 1e-6 and model.privacy_["steps"] >= 1
    assert len(sampled) == 50
    assert all(t in PUBLIC_CHARACTERS or len(t) > 1 for t in model.vocab_)  # public characters, released words
