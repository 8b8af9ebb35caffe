"""A tree-structured graphical model over coarse tokens, optionally anchored on one column that every other column
depends on: fitted from noisy marginals, sampled exactly, with evidence.

Without an anchor the model is a forest: p(x) = prod_roots p(x_r) prod_edges p(x_child | x_parent), fixed by the
1-way marginals of the nodes and the 2-way marginals of the edges. With an anchor a (the run's target) it is a
tree-augmented naive Bayes model (Friedman, Geiger & Goldszmidt 1997): p(x) = p(a) prod_roots p(x_r | a)
prod_edges p(x_child | x_parent, a), fixed by the (a, column) and (a, parent, child) marginals: every column keeps its
relation to the anchor, and its strongest other relation given the anchor. Both are one code path: without an anchor,
a constant anchor with a single token stands in.

Noisy measurements disagree with one another, so each table is clipped at zero and fitted to the (better measured)
lower-order marginals it must agree with by iterative proportional fitting; on a tree this makes the whole set
consistent, which is what Private-PGM's estimation does (McKenna et al. 2019), in closed form per table.

Sampling is ancestral. Rows with evidence (columns fixed to tokens) are drawn exactly from the conditional
distribution: messages go from the evidence up to the roots and the anchor (belief propagation, carrying the anchor's
token along), then every node is drawn given its parent, the anchor and the evidence below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IPF_ITERATIONS = 50


@dataclass
class TreeModel:
    """A forest over coarse tokens, every table also indexed by the anchor's token.

    Attributes:
        parent: (c,) parent of each node, -1 at roots and at the anchor.
        anchor: the anchor node, or -1 (then a constant with one token stands in).
        order: the non-anchor nodes, every parent before its children.
        anchor_marginal: (k_a,) p(a); [1.0] without an anchor.
        conditionals: per node, (k_a, k_parent, k_node) p(node | parent, a), k_parent = 1 at roots; None at the
            anchor.
    """

    parent: np.ndarray
    anchor: int
    order: list[int]
    anchor_marginal: np.ndarray
    conditionals: list[np.ndarray | None]

    @classmethod
    def fit(
        cls,
        parent: np.ndarray,
        anchor: int,
        anchor_joints: list[np.ndarray | None],
        edge_tables: dict[int, np.ndarray],
    ) -> TreeModel:
        """Build the model from consistent (k_a, k_node) joints of every node with the anchor and, per non-root
        node, its noisy (k_a, k_parent, k_node) table."""
        anchor_marginal = next(j for j in anchor_joints if j is not None).sum(1)
        conditionals: list[np.ndarray | None] = [None] * len(anchor_joints)
        for node, joint in enumerate(anchor_joints):
            if node == anchor or joint is None:
                continue
            if parent[node] < 0:
                conditionals[node] = _conditional(joint[:, None, :], joint.sum(0)[None, None, :])
            else:
                fitted = fit_margins(edge_tables[node], anchor_joints[parent[node]], joint)
                conditionals[node] = _conditional(fitted, joint[:, None, :])
        return cls(np.asarray(parent), anchor, topological_order(parent, anchor), anchor_marginal, conditionals)

    def sample(self, n: int, rng: np.random.Generator, allowed: list[np.ndarray | None] | None = None) -> np.ndarray:
        """(n, c) coarse tokens; `allowed[j]` is None (free) or (n, k_j) 0/1 evidence on node j."""
        c = len(self.conditionals)
        allowed = allowed or [None] * c
        below, at_anchor = self._messages(n, allowed)
        out = np.zeros((n, c), dtype=np.int64)
        prob_a = np.broadcast_to(self.anchor_marginal, (n, self.anchor_marginal.size))
        a = _draw(prob_a if at_anchor is None else _with_evidence(prob_a, at_anchor), rng)
        if self.anchor >= 0:
            out[:, self.anchor] = a
        for node in self.order:
            p = self.parent[node]
            prob = self.conditionals[node][a, out[:, p] if p >= 0 else 0]
            if below[node] is not None:
                prob = _with_evidence(prob, below[node][np.arange(n), a])
            out[:, node] = _draw(prob, rng)
        return out

    def log_prob(self, tokens: np.ndarray) -> np.ndarray:
        """(n, c) per-node log-probability of coarse token rows: log p(a), log p(node | parent, a)."""
        out = np.zeros(tokens.shape, dtype=np.float64)
        a = tokens[:, self.anchor] if self.anchor >= 0 else np.zeros(len(tokens), dtype=np.int64)
        if self.anchor >= 0:
            out[:, self.anchor] = np.log(np.maximum(self.anchor_marginal[a], 1e-300))
        for node in self.order:
            p = self.parent[node]
            prob = self.conditionals[node][a, tokens[:, p] if p >= 0 else 0, tokens[:, node]]
            out[:, node] = np.log(np.maximum(prob, 1e-300))
        return out

    def _messages(self, n: int, allowed: list[np.ndarray | None]) -> tuple[list[np.ndarray | None], np.ndarray | None]:
        """Per node, the (n, k_a, k) likelihood of the evidence in its subtree given the anchor's and its own token
        (None: no evidence below); and the (n, k_a) likelihood of all evidence given the anchor's token."""
        k_a = self.anchor_marginal.size
        below: list[np.ndarray | None] = [None] * len(allowed)
        for node, a in enumerate(allowed):
            if a is not None and node != self.anchor:
                below[node] = np.broadcast_to(a[:, None, :].astype(np.float64), (n, k_a, a.shape[1])).copy()
        at_anchor = None if self.anchor < 0 or allowed[self.anchor] is None else allowed[self.anchor].astype(float)
        for node in reversed(self.order):
            if below[node] is None:
                continue
            p = self.parent[node]
            # sum over the node's token of p(node | parent, a) times the evidence below it: (n, k_a, k_parent)
            message = np.einsum("apv,nav->nap", self.conditionals[node], below[node])
            message /= np.maximum(message.max(axis=(1, 2), keepdims=True), 1e-300)  # scale only: keeps it finite
            if p >= 0:
                below[p] = message if below[p] is None else below[p] * message
            else:
                at_anchor = message[:, :, 0] if at_anchor is None else at_anchor * message[:, :, 0]
        return below, at_anchor


def topological_order(parent: np.ndarray, anchor: int = -1) -> list[int]:
    """The non-anchor nodes ordered so that every parent comes before its children."""
    children: dict[int, list[int]] = {}
    for node, p in enumerate(parent):
        if node != anchor:
            children.setdefault(int(p), []).append(node)
    order, stack = [], list(reversed(children.get(-1, [])))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children.get(node, [])))
    return order


def fit_margins(table: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The (k_a, k_l, k_r) joint closest (in KL, by IPF) to the clipped noisy `table` whose (a, l) and (a, r)
    margins are `left` (k_a, k_l) and `right` (k_a, k_r)."""
    joint = np.maximum(table, 0.0) + 1e-9
    joint /= joint.sum()
    for _ in range(IPF_ITERATIONS):
        joint *= (left / np.maximum(joint.sum(2), 1e-300))[:, :, None]
        joint *= (right / np.maximum(joint.sum(1), 1e-300))[:, None, :]
    return joint


def fit_pair(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The 2-way joint closest (in KL, by IPF) to the clipped noisy `table` with margins `rows` and `cols`."""
    return fit_margins(table[None], rows[None], cols[None])[0]


def _conditional(joint: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """p(last axis | the others) from a joint; a condition with no mass gets `fallback`'s distribution."""
    sums = joint.sum(-1, keepdims=True)
    spread = fallback / np.maximum(fallback.sum(-1, keepdims=True), 1e-300)
    spread = np.where(fallback.sum(-1, keepdims=True) > 0, spread, 1.0 / joint.shape[-1])
    return np.where(sums > 0, joint / np.maximum(sums, 1e-300), np.broadcast_to(spread, joint.shape))


def _with_evidence(prob: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """prob times evidence; rows where the model gives the evidence no mass are drawn from the evidence alone."""
    out = prob * evidence
    impossible = out.sum(1) == 0
    if impossible.any():
        out[impossible] = evidence[impossible]
    return out


def _draw(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of unnormalised probabilities `prob` (n, k)."""
    cum = np.cumsum(prob, axis=1)
    u = rng.random((prob.shape[0], 1)) * cum[:, -1:]
    return (u > cum).sum(1).clip(max=prob.shape[1] - 1)
