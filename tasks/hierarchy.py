"""A table that references itself (an employee's manager, a category's parent category): a forest, not a cycle.

The table's model learns, per row, how many rows report to it and the cluster of the row it reports to (`__null__`
for a root), as for any relation. Once its rows are drawn, each non-root row is hung from an earlier row of the
generated cluster with room left in its family size, so children-per-parent keeps its shape, the manager's kind
follows the report's, and every chain ends at a root: no row is its own ancestor.
"""

from __future__ import annotations

import numpy as np

NO_PARENT = -1


def _pick(pool: list[int], room: np.ndarray, rng: np.random.Generator) -> int:
    weights = room[pool].astype(float)
    return pool[int(rng.choice(len(pool), p=weights / weights.sum()))]


def hierarchy_parents(
    wanted: np.ndarray, labels: np.ndarray, sizes: np.ndarray, roots: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The row each row reports to (`NO_PARENT` for a root), acyclic by construction.

    Args:
        wanted: (n,) the cluster of the parent each row's model generated.
        labels: (n,) each row's own cluster.
        sizes: (n,) how many rows should report to each row.
        roots: (n,) True where the row reports to no one.
        rng: the draw's randomness.

    Returns:
        (n,) parent row indices. Rows are placed roots first, then by family size (managers before their reports);
        each takes a placed row of its wanted cluster with room left, else any placed row with room, else any placed
        row. With no root at all (a source whose top row references itself), the first row references itself.
    """
    n = wanted.size
    room = sizes.astype(np.int64).copy()
    order = np.lexsort((rng.random(n), -sizes, ~roots))  # roots first, then large families first, ties at random
    parents = np.full(n, NO_PARENT, dtype=np.int64)
    open_by_label: dict[object, list[int]] = {}  # placed rows per cluster, full ones pruned as they are met
    placed: list[int] = []
    open_rows: list[int] = []
    for row in order:
        if not roots[row]:
            pool = open_by_label[wanted[row]] = [p for p in open_by_label.get(wanted[row], []) if room[p] > 0]
            if not pool:
                pool = open_rows = [p for p in open_rows if room[p] > 0]
            fallback = int(rng.choice(placed)) if placed else int(row)  # no room left anywhere, or no row yet
            parent = _pick(pool, room, rng) if pool else fallback
            parents[row] = parent
            room[parent] -= 1
        placed.append(int(row))
        open_rows.append(int(row))
        open_by_label.setdefault(labels[row], []).append(int(row))
    return parents
