"""A tree-structured graphical model over coarse tokens: fitted from noisy marginals, sampled exactly, with evidence.

For a tree (or forest), the joint distribution is fixed by the 1-way marginals of its nodes and the 2-way marginals of
its edges: p(x) = prod_roots p(x_r) prod_edges p(x_child | x_parent). Noisy measurements of those marginals disagree
with one another, so each edge's noisy table is clipped at zero and fitted to the (better measured) 1-way marginals of
its two ends by iterative proportional fitting, which makes the whole set consistent; this is what Private-PGM's
estimation does on a tree (McKenna et al. 2019), in closed form per edge.

Sampling is ancestral. Rows with evidence (columns fixed to tokens, or to a set of allowed tokens) are drawn exactly
from the conditional distribution: messages are sent from the evidence towards each root (belief propagation), then
every node is drawn given its parent and the evidence below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IPF_ITERATIONS = 50


@dataclass
class TreeModel:
    """A forest over coarse tokens.

    Attributes:
        parent: (c,) parent of each node, -1 at roots.
        order: nodes in an order where every parent precedes its children.
        marginals: per node, its 1-way distribution over coarse tokens.
        conditionals: per node, (k_parent, k_node) p(node | parent); None at roots.
    """

    parent: np.ndarray
    order: list[int]
    marginals: list[np.ndarray]
    conditionals: list[np.ndarray | None]

    @classmethod
    def fit(cls, parent: np.ndarray, marginals: list[np.ndarray], edge_tables: dict[int, np.ndarray]) -> TreeModel:
        """Build the model from 1-way masses and, per non-root node, its noisy (k_parent, k_node) table."""
        marginals = [_normalise(m) for m in marginals]
        conditionals: list[np.ndarray | None] = [None] * len(marginals)
        for node, table in edge_tables.items():
            joint = fit_margins(table, marginals[parent[node]], marginals[node])
            conditionals[node] = _rows_normalised(joint, marginals[node])
        return cls(np.asarray(parent), topological_order(parent), marginals, conditionals)

    def sample(self, n: int, rng: np.random.Generator, allowed: list[np.ndarray | None] | None = None) -> np.ndarray:
        """(n, c) coarse tokens; `allowed[j]` is None (free) or (n, k_j) 0/1 evidence on node j."""
        c = len(self.marginals)
        allowed = allowed or [None] * c
        below = self._messages(n, allowed)
        out = np.zeros((n, c), dtype=np.int64)
        for node in self.order:
            p = self.parent[node]
            if p < 0:
                prob = np.broadcast_to(self.marginals[node], (n, self.marginals[node].size))
            else:
                prob = self.conditionals[node][out[:, p]]
            if below[node] is not None:
                prob = prob * below[node]
                impossible = prob.sum(1) == 0  # evidence the model gives no mass: drawn from the evidence alone
                prob[impossible] = below[node][impossible]
            out[:, node] = _draw(prob, rng)
        return out

    def log_prob(self, tokens: np.ndarray) -> np.ndarray:
        """(n, c) per-node log-probability of coarse token rows: log p(root) or log p(node | parent)."""
        out = np.zeros(tokens.shape, dtype=np.float64)
        for node in range(len(self.marginals)):
            p = self.parent[node]
            prob = (
                self.marginals[node][tokens[:, node]]
                if p < 0
                else self.conditionals[node][tokens[:, p], tokens[:, node]]
            )
            out[:, node] = np.log(np.maximum(prob, 1e-300))
        return out

    def _messages(self, n: int, allowed: list[np.ndarray | None]) -> list[np.ndarray | None]:
        """Per node, the (n, k) likelihood of the evidence in its subtree given each of its tokens (None: no evidence
        below, all ones)."""
        below: list[np.ndarray | None] = [None if a is None else a.astype(np.float64) for a in allowed]
        for node in reversed(self.order):
            p = self.parent[node]
            if p < 0 or below[node] is None:
                continue
            message = below[node] @ self.conditionals[node].T  # (n, k_parent)
            message /= np.maximum(message.max(1, keepdims=True), 1e-300)  # scale only: keeps products finite
            below[p] = message if below[p] is None else below[p] * message
        return below


def topological_order(parent: np.ndarray) -> list[int]:
    """Nodes ordered so that every parent comes before its children."""
    children: dict[int, list[int]] = {}
    for node, p in enumerate(parent):
        children.setdefault(int(p), []).append(node)
    order, stack = [], list(reversed(children.get(-1, [])))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children.get(node, [])))
    return order


def fit_margins(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The joint closest (in KL, by IPF) to the clipped noisy `table` with row sums `rows` and column sums `cols`."""
    joint = np.maximum(table, 0.0) + 1e-9
    joint /= joint.sum()
    for _ in range(IPF_ITERATIONS):
        joint *= (rows / np.maximum(joint.sum(1), 1e-300))[:, None]
        joint *= (cols / np.maximum(joint.sum(0), 1e-300))[None, :]
    return joint


def _rows_normalised(joint: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """p(node | parent) from a joint; a parent token with no mass gets the node's marginal."""
    sums = joint.sum(1, keepdims=True)
    return np.where(sums > 0, joint / np.maximum(sums, 1e-300), fallback[None, :])


def _normalise(mass: np.ndarray) -> np.ndarray:
    mass = np.maximum(np.asarray(mass, dtype=np.float64), 0.0)
    total = mass.sum()
    return mass / total if total > 0 else np.full(mass.size, 1.0 / mass.size)


def _draw(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of unnormalised probabilities `prob` (n, k)."""
    cum = np.cumsum(prob, axis=1)
    u = rng.random((prob.shape[0], 1)) * cum[:, -1:]
    return (u > cum).sum(1).clip(max=prob.shape[1] - 1)
