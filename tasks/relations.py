"""Read a whole database and find its keys: declared constraints, then a `relations.yaml`, then inference.

A source is a SQLAlchemy URL or a folder holding one CSV/Parquet file per table. Inference proposes a relation where a
column's name matches another table's key (`customer_id` -> `customers.customer_id`, or `customers.id`) and at least
`MIN_CONTAINMENT` of its values are among that key's values; it runs only when the source declares no relation and
no `relations.yaml` names one, because a person who wrote relations has said which links exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pandas as pd

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.inference import key_name_reason
from synthgate.schemas.relations import DatabaseSchema, Relation, TableKeys, load_relations
from synthgate.tasks.composite import SEPARATOR, composite_problems, tuple_values
from synthgate.tasks.reader import FILE_FORMATS, TableReader, is_sql_url, redact

logger = logging.getLogger(__name__)

RELATIONS_FILE = "relations.yaml"
MIN_CONTAINMENT = 0.9  # an inferred link may hold a few orphans (read as missing); fewer contained values is chance
EXAMPLES = 3
MAX_SHARED = 12  # columns named alike in two tables tried as a two-column key: 66 pairs at most
STAGE_PREFIX = "_synthgate_stage_"  # write-back leftovers are not tables of the source


@dataclass
class Database:
    """Every table of a source, read whole, with its keys and relations."""

    tables: dict[str, pd.DataFrame]
    schema: DatabaseSchema
    source: str


# ------------------------------------------------------------------------------------------------------ reading
def _sql_tables(url: str) -> tuple[dict[str, pd.DataFrame], DatabaseSchema]:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # unknown driver, malformed URL
        raise InvalidInputError(f"{redact(url)}: not a usable SQLAlchemy URL ({exc})") from exc
    try:
        inspector = sa.inspect(engine)
        names = [n for n in inspector.get_table_names() if not n.startswith(STAGE_PREFIX)]
        keys, relations = {}, []
        for name in names:
            keys[name] = TableKeys(primary_key=inspector.get_pk_constraint(name).get("constrained_columns") or [])
            for fk in inspector.get_foreign_keys(name):
                label = f"constraint {fk['name']!r}" if fk.get("name") else "a FOREIGN KEY constraint"
                relations.append(
                    Relation(
                        child=name,
                        columns=fk["constrained_columns"],
                        parent=fk["referred_table"],
                        parent_columns=fk["referred_columns"],
                        source="declared",
                        evidence=f"declared by {label} in {redact(url)}",
                    )
                )
    except sa.exc.OperationalError as exc:
        raise InvalidInputError(
            f"{redact(url)}: cannot reach the database to list its tables ({exc.orig}); check the host, port, "
            "credentials and that the server is running"
        ) from exc
    finally:
        engine.dispose()
    if not names:
        raise InvalidInputError(f"{redact(url)}: the database has no tables")
    tables = {name: TableReader(url, table=name).read() for name in names}
    return tables, DatabaseSchema(tables=keys, relations=relations)


def _folder_tables(folder: Path) -> dict[str, pd.DataFrame]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FILE_FORMATS and not p.name.startswith("."))
    if not files:
        raise InvalidInputError(
            f"{folder}: no table files; put one CSV or Parquet file per table in the folder (customers.csv, ...)"
        )
    stems = [p.stem for p in files]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise InvalidInputError(f"{folder}: tables {repeated} have two files each; keep one file per table")
    return {p.stem: TableReader(str(p)).read() for p in files}


def merge_schemas(declared: DatabaseSchema, written: DatabaseSchema | None) -> DatabaseSchema:
    """Declared relations first; a written file adds relations for columns no constraint covers, sets primary keys
    (a table it lists replaces the declared key: a person said so) and leaves out the relations its `ignore` names."""
    if written is None:
        return declared
    tables = {**declared.tables, **written.tables}
    covered = {(r.child, tuple(r.columns)) for r in declared.relations}
    extra = [r.model_copy(update={"source": "relations.yaml"}) for r in written.relations]
    relations = [*declared.relations, *(r for r in extra if (r.child, tuple(r.columns)) not in covered)]
    kept = [r for r in relations if not written.ignores(r)]
    for r in relations:
        if written.ignores(r):
            logger.info("relations: %s left out (ignore in %s)", r.name, RELATIONS_FILE)
    return DatabaseSchema(tables=tables, relations=kept, ignore=written.ignore, models=written.models)


def check_source(source: str) -> None:
    """Refuse, cheaply, a source that is neither a SQLAlchemy URL nor a folder."""
    if not is_sql_url(source) and not Path(source).is_dir():
        raise InvalidInputError(
            f"{source}: not a folder or a SQLAlchemy URL; give a folder with one CSV/Parquet file per table, or a URL "
            "such as sqlite:///shop.db"
        )


def read_database(source: str, *, relations_path: Path | None = None) -> Database:
    """Every table of `source` and its keys (declared, then written, then inferred); the source is not yet checked.

    Args:
        source: a SQLAlchemy URL, or a folder with one CSV/Parquet file per table.
        relations_path: a `relations.yaml`; default `SOURCE/relations.yaml` for a folder when it exists.

    Raises:
        InvalidInputError: an unreachable database, an empty or missing folder, or an invalid relations file.
    """
    check_source(source)
    if is_sql_url(source):
        tables, declared = _sql_tables(source)
    else:
        folder = Path(source)
        tables, declared = _folder_tables(folder), DatabaseSchema()
        if relations_path is None and (folder / RELATIONS_FILE).exists():
            relations_path = folder / RELATIONS_FILE
    written = load_relations(relations_path) if relations_path is not None else None
    if written is not None:
        written = written.model_copy(
            update={"relations": [r.model_copy(update={"evidence": r.evidence or f"written in {relations_path}"})
                                  for r in written.relations]}
        )  # fmt: skip
    schema = merge_schemas(declared, written)
    if not schema.relations:
        inferred = infer_relations(tables, schema)
        schema = inferred.model_copy(update={"relations": [r for r in inferred.relations if not schema.ignores(r)]})
    relations = [r if r.source == "inferred" else _with_containment(r, tables) for r in schema.relations]
    return Database(tables=tables, schema=schema.model_copy(update={"relations": relations}), source=redact(source))


def _with_containment(rel: Relation, tables: dict[str, pd.DataFrame]) -> Relation:
    """A declared or written relation's evidence, plus how much of the child column its parent holds."""
    child, parent = tables.get(rel.child), tables.get(rel.parent)
    if child is None or parent is None:
        return rel
    if not set(rel.columns) <= set(child.columns) or not set(rel.parent_columns) <= set(parent.columns):
        return rel
    share, n = containment(tuple_values(child, rel.columns), tuple_values(parent, rel.parent_columns))
    found = f"{share:.1%} of {n:,} non-missing values are in {rel.parent}.{'+'.join(rel.parent_columns)}"
    return rel.model_copy(update={"evidence": f"{rel.evidence}; {found}"})


# ---------------------------------------------------------------------------------------------------- inference
def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith(("ses", "xes")):
        return name[:-2]
    return name[:-1] if name.endswith("s") else name


def _unique_key(series: pd.Series) -> bool:
    return len(series) > 0 and series.notna().all() and series.is_unique


def infer_primary_key(name: str, frame: pd.DataFrame) -> list[str]:
    """A unique, complete column whose name reads as a key (`id`, `customer_id`, `code`), the table's own first."""
    candidates = [c for c in frame.columns if key_name_reason(str(c)) and _unique_key(frame[c])]
    own = [c for c in candidates if c in ("id", f"{_singular(name)}_id")]
    return [(own or candidates)[0]] if candidates else []


def _comparable(series: pd.Series) -> pd.Series:
    """Values of a key as one type, so an integer column can be matched against a float or text copy of it."""
    values = series.dropna()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    return values.astype(str)


def containment(child: pd.Series, parent: pd.Series) -> tuple[float, int]:
    """Share of the child's non-missing values found in the parent column, and how many there are."""
    values = _comparable(child)
    if values.empty:
        return 0.0, 0
    return float(values.isin(set(_comparable(parent))).mean()), len(values)


def _name_matches(column: str, parent: str, key: str) -> bool:
    return column == key or (key == "id" and column == f"{_singular(parent)}_id")


def infer_relations(tables: dict[str, pd.DataFrame], schema: DatabaseSchema) -> DatabaseSchema:
    """Fill missing primary keys and propose relations by name and containment, each with its evidence."""
    keys = {name: schema.primary_key(name) or infer_primary_key(name, frame) for name, frame in tables.items()}
    relations = []
    for child, frame in tables.items():
        for column in frame.columns:
            for parent, key in keys.items():
                if parent == child or len(key) != 1 or not _name_matches(str(column), parent, key[0]):
                    continue
                share, n = containment(frame[column], tables[parent][key[0]])
                if n == 0 or share < MIN_CONTAINMENT:
                    continue
                evidence = f"name {column!r} matches {parent}.{key[0]}; {share:.1%} of its {n:,} non-missing values "
                relations.append(
                    _inferred(child, [str(column)], parent, key, share, evidence + f"are in {parent}.{key[0]}")
                )
    for parent in [p for p, k in keys.items() if not k]:
        for child in tables:
            found = _composite_relation(child, parent, tables) if child != parent else None
            if found is not None:
                keys[parent] = found.parent_columns
                relations.append(found)
                break
    return DatabaseSchema(tables={n: TableKeys(primary_key=k) for n, k in keys.items()}, relations=relations)


def _composite_relation(child: str, parent: str, tables: dict[str, pd.DataFrame]) -> Relation | None:
    """A two-column key of a table with no one-column key, shared by name with a child whose pairs it holds.

    Only pairs are tried: both names must match, the pair must be unique and complete in the parent, and
    `MIN_CONTAINMENT` of the child's pairs must be among the parent's; longer keys are left to relations.yaml.
    """
    shared = [c for c in tables[parent].columns if c in tables[child].columns][:MAX_SHARED]
    for pair in combinations(shared, 2):
        columns = [str(c) for c in pair]
        parent_key = tuple_values(tables[parent], columns)
        if not _unique_key(parent_key):
            continue
        share, n = containment(tuple_values(tables[child], columns), parent_key)
        if n == 0 or share < MIN_CONTAINMENT:
            continue
        evidence = (
            f"{parent} has no one-column key; {'+'.join(columns)} is unique there and named alike in {child}; "
            f"{share:.1%} of its {n:,} complete pairs are in {parent}"
        )
        return _inferred(child, columns, parent, columns, share, evidence)
    return None


def _inferred(
    child: str, columns: list[str], parent: str, parent_columns: list[str], share: float, evidence: str
) -> Relation:
    """An inferred relation: orphans (values not found in the parent) are an error when there are none, else read as
    missing, and the evidence says how many."""
    orphans = "" if share == 1 else f"; the {1 - share:.1%} not found are read as missing"
    return Relation(
        child=child,
        columns=columns,
        parent=parent,
        parent_columns=parent_columns,
        on_orphans="error" if share == 1 else "null",
        source="inferred",
        evidence=evidence + orphans,
    )


# ------------------------------------------------------------------------------------------------------- checks
def _examples(values: pd.Series) -> str:
    return ", ".join(repr(v) for v in values.drop_duplicates().head(EXAMPLES).tolist())


def _columns(table: str, columns: list[str]) -> str:
    return f"column {columns[0]!r}" if len(columns) == 1 else f"columns {columns}"


def check_database(db: Database) -> Database:
    """Check what synthesis relies on, and apply each relation's orphan policy; every problem is reported at once.

    Raises:
        InvalidInputError: an unknown table or column, a composite key of a shape synthesis refuses
            (`tasks.composite.composite_problems`), a cycle, a key with repeats or missing values, or child keys
            absent from their parent (relations with `on_orphans: error`); each message names the table, column,
            counts, examples and the fix.
    """
    problems: list[str] = []
    schema, tables = db.schema, {k: v.copy() for k, v in db.tables.items()}
    for name in schema.tables:
        pk = schema.primary_key(name)
        absent = [c for c in pk if name in tables and c not in tables[name].columns]
        problems += [f"table {name!r}: primary key column {c!r} is not a column of the table" for c in absent]
        if len(pk) > 1 and name in tables and not absent:
            values = tuple_values(tables[name], pk)
            if not _unique_key(values):
                problems.append(
                    f"table {name!r}: its primary key {pk} is not unique and complete ({int(values.isna().sum())} rows "
                    f"miss a part, {int(values.duplicated(keep=False).sum())} rows repeat a combination). Fix: name "
                    f"a unique combination under `tables: {{{name}: {{primary_key: [...]}}}}` in {RELATIONS_FILE}"
                )
    for rel in schema.relations:
        missing = [t for t in (rel.child, rel.parent) if t not in tables]
        if missing:
            problems.append(f"relation {rel.name}: no table {missing}; tables are {sorted(tables)}")
            continue
        absent = [f"{rel.child}.{c}" for c in rel.columns if c not in tables[rel.child].columns]
        absent += [f"{rel.parent}.{c}" for c in rel.parent_columns if c not in tables[rel.parent].columns]
        if absent:
            problems.append(f"relation {rel.name}: no column {absent}. Fix: correct the names in {RELATIONS_FILE}")
            continue
        parent_key = tuple_values(tables[rel.parent], rel.parent_columns)
        if not _unique_key(parent_key):
            repeats = parent_key[parent_key.duplicated(keep=False) & parent_key.notna()]
            problems.append(
                f"table {rel.parent!r}, {_columns(rel.parent, rel.parent_columns)}: referenced by {rel.name} but not "
                f"a key ({parent_key.isna().sum()} missing, {repeats.nunique()} repeated values, e.g. "
                f"{_examples(repeats)}). Fix: reference a unique, complete column"
            )
            continue
        child = tuple_values(tables[rel.child], rel.columns)
        orphan = (child.notna() & ~child.isin(set(parent_key))).to_numpy()
        if not orphan.any():
            continue
        if rel.on_orphans == "null":
            logger.warning("%s: %d child keys absent from the parent are read as missing", rel.name, orphan.sum())
            fks = {r.columns[0] for r in schema.relations_of(rel.child) if len(r.columns) == 1}
            # a tuple with one missing part references nothing (SQL's MATCH SIMPLE): parts that are keys of their own
            # (flights.origin -> airports) keep their value
            masked = [c for c in rel.columns if c not in fks] or rel.columns
            for col in masked:
                tables[rel.child][col] = tables[rel.child][col].mask(orphan)
            continue
        shown = child[orphan].str.replace(SEPARATOR, ", ") if len(rel.columns) > 1 else child[orphan]
        problems.append(
            f"table {rel.child!r}, {_columns(rel.child, rel.columns)}: {int(orphan.sum()):,} of {len(child):,} rows "
            f"hold keys absent from {rel.parent}.{'+'.join(rel.parent_columns)} (e.g. {_examples(shown)}), so "
            f"{rel.name} does not hold. Fix: repair or delete those rows, or set `on_orphans: null` for this relation "
            f"in {RELATIONS_FILE} to read them as missing"
        )
    problems += composite_problems(schema, tables)
    try:
        table_order(schema, list(tables))
    except InvalidInputError as exc:
        problems.append(str(exc))
    if problems:
        raise InvalidInputError(f"{db.source}: the database's keys do not hold:\n  - " + "\n  - ".join(problems))
    return Database(tables=tables, schema=schema, source=db.source)


def table_order(schema: DatabaseSchema, names: list[str]) -> list[str]:
    """Tables with every parent before its children (Kahn's algorithm, stable in `names` order).

    Raises:
        InvalidInputError: the relations form a cycle between tables.
    """
    parents = {n: {r.parent for r in schema.relations_of(n) if r.parent != n and r.parent in names} for n in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and parents[n] <= set(order)]
        if not ready:
            stuck = sorted(set(names) - set(order))
            raise InvalidInputError(
                f"the relations between tables {stuck} form a cycle; parents must come before children. Fix: name one "
                f"relation of the cycle under `ignore:` in {RELATIONS_FILE}"
            )
        order.extend(ready)
    return order
