"""`marginal`: select-measure-generate on noisy low-order marginals, the private family for small and mid-size tables.

DP-SGD spends its budget on millions of gradient coordinates; on a table of a few thousand rows that noise drowns
the signal. Marginal-based methods spend it on a few hundred counts instead and won the NIST DP synthetic-data
challenges (MST, McKenna, Miklau & Sheldon 2021; AIM, McKenna et al. 2022). This family follows MST's plan under zCDP
(`models.zcdp`), with the columns measured at two resolutions (`models.marginal_columns`):

1. measure: every column's fine 1-way histogram (levels, heaped values, adaptive bins, missing share), a
   `one_way_share` of rho split evenly over the columns;
2. select: a maximum spanning tree over the columns, built by Kruskal's algorithm in which each edge is chosen with the
   exponential mechanism (`select_share` of rho over the c - 1 choices). An edge's quality is how far the real 2-way
   table is from the product of the two noisy 1-ways (L1), minus the distance that sampling alone gives independent
   columns and the distance the measurement noise will add (AIM's penalty), so big, weakly related pairs lose to
   small, strongly related ones. Sensitivity 1: a row moves one cell of the real table, and the product is already
   private;
3. measure the chosen edges' coarse 2-way tables (the rest of rho, evenly);
4. generate: the tree's graphical model (`models.marginal_tree`), made consistent by fitting each edge to its ends'
   1-way marginals, sampled exactly, with conditions as evidence.

Numbers get as many coarse groups as the edge noise allows (`coarse_bins`: about sqrt(n / (2 sigma_edge)), so that a
2-way table of two numbers holds a few sigma per cell). Everything after the measurements is post-processing, so the
model spends exactly the rho it was given: `privacy_` reports the ledger and the (epsilon, delta) it converts to. The
delta share for heaped values (`spike_delta_share`) is added on top of the Gaussian part's delta.

With an `anchor` (the flow passes the run's `--target`) step 1 also measures every column's 2-way table with the
anchor, steps 2-3 work on tables indexed by the anchor's token, and the model is a tree-augmented naive Bayes model
(`models.marginal_tree`): what predicts the target survives, at the same total budget.

Without `epsilon` the same steps run exactly (no noise, the best edges): a fast, non-private baseline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import torch
from torch import Tensor

from synthgate.models import base
from synthgate.models.arn_tokens import ColumnTokens, columns_from_spans, forced_tokens, from_tokens, to_tokens
from synthgate.models.encoders.table import Span
from synthgate.models.marginal_columns import (
    ColumnDomain,
    HistogramPlan,
    assign_coarse,
    measure_category,
    measure_number,
)
from synthgate.models.marginal_tree import TreeModel, fit_pair, topological_order
from synthgate.models.privacy import check_budget, default_delta
from synthgate.models.training import Progress
from synthgate.models.zcdp import ZCDPAccountant, rho_for
from synthgate.schemas.errors import InvalidInputError

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarginalConfig:
    epsilon: float | None = None  # None: exact marginals, no privacy
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    one_way_share: float = 0.3  # of rho, for every column's fine 1-way histogram
    select_share: float = 0.1  # of rho, for choosing the tree's edges
    spike_delta_share: float = 0.1  # of delta, for releasing heaped values (the rest converts rho to epsilon)
    coarse_bins: int | None = None  # groups per number column in the model; None: from the edge noise
    max_coarse_bins: int = 32
    fine_bins: int = 4
    branching: int = 8
    levels: int = 3
    anchor: str | None = None  # a column every other one is modelled given (the run's target): a TAN model
    anchor_bins: int = 8  # coarse groups of a number anchor
    bound: float = 2.0  # the DP encoder maps public bounds to +-2; without epsilon the observed range is used
    seed: int = 0


class MarginalModel:
    """A tree-structured graphical model fitted to noisy marginals; see the module docstring.

    Attributes:
        domains_: per column (table order), its fine tokens, their estimated mass and coarse groups.
        tree_: the graphical model over coarse tokens.
        n_features_in_: width of the encoded rows.
        privacy_: the spent (epsilon, delta), rho and ledger; empty without epsilon.
        history_: seconds the fit took and the chosen edges.
    """

    config_class: ClassVar[type] = MarginalConfig
    supports_conditions: ClassVar[bool] = True
    normalization: ClassVar[str] = "standard"

    def __init__(self, config: MarginalConfig | None = None, *, spans: list[Span] | None = None, device=None):
        self.config = config
        self.spans = spans
        self.device = device
        self.domains_: list[ColumnDomain] | None = None
        self.tree_: TreeModel | None = None
        self.n_features_in_: int | None = None
        self.privacy_: dict = {}
        self.history_: dict | None = None

    # ------------------------------------------------------------------------------------------------------ fit
    def fit(
        self, x: Tensor, *, conditions: Tensor | None = None, progress: Callable[[Progress], None] | None = None
    ) -> Self:
        """Measure, select, measure and fit on encoded rows `x` (n, n_features), spending at most the budget."""
        cfg = self.config or MarginalConfig()
        start = time.perf_counter()
        host = base.check_matrix(x).cpu().numpy()
        n = host.shape[0]
        spans = self.spans or [Span(f"x{i}", i, 1, "linear", "value") for i in range(host.shape[1])]
        columns = columns_from_spans(spans)
        acct, delta, spike_delta = self._accountant(cfg, n)
        c = len(columns)

        def report(step: int) -> None:
            if progress is not None:
                elapsed = time.perf_counter() - start
                progress(Progress(step, 4, 0.0, None, n * step / max(elapsed, 1e-9), 0.0))

        rho_one = cfg.one_way_share * acct.rho / c
        number_delta = spike_delta / max(sum(col.kind == "number" for col in columns), 1)
        domains = [self._measure_column(host, col, acct, rho_one, number_delta, cfg) for col in columns]
        n_hat = float(np.mean([d.mass.sum() for d in domains])) if acct.private else float(n)
        report(1)

        anchor = self._anchor_index(columns, cfg.anchor)
        n_edges = max(c - 2 if anchor >= 0 else c - 1, 0)  # the tree over the columns other than the anchor
        n_tables = n_edges + (c - 1 if anchor >= 0 else 0)  # its edges, and each column with the anchor
        rho_choice = cfg.select_share * acct.rho / max(n_edges, 1)
        rho_table = (acct.left - rho_choice * n_edges) / max(n_tables, 1)  # plus what unsplit levels left over
        sigma_table = acct.sigma(rho_table)
        for d in domains:
            d.mass *= n_hat / max(d.mass.sum(), 1e-9)
        k_anchor = 1
        if anchor >= 0:
            assign_coarse(domains[anchor], cfg.anchor_bins)
            k_anchor = domains[anchor].n_coarse
        cells = max(n_hat, 1.0) / max(2.0 * sigma_table * k_anchor, 1.0)  # cells per table a few sigma can fill
        k = cfg.coarse_bins or int(np.clip(math.sqrt(cells), 3, cfg.max_coarse_bins))
        for j, d in enumerate(domains):
            if j != anchor:
                assign_coarse(d, k)
        fine = to_tokens(host, columns)
        coarse = np.stack([d.coarse[fine[:, j]] for j, d in enumerate(domains)], axis=1)
        a = coarse[:, anchor] if anchor >= 0 else np.zeros(n, dtype=np.int64)
        joints = self._anchor_joints(coarse, a, domains, anchor, acct, rho_table, columns)
        report(2)

        parent = _select_tree(coarse, a, joints, anchor, acct, rho_choice, sigma_table, n_hat)
        tables = {}
        for node in np.flatnonzero(parent >= 0):
            p = parent[node]
            counts = _counts(
                a, coarse[:, p], coarse[:, node], joints[p].shape[0], joints[p].shape[1], joints[node].shape[1]
            )
            tables[int(node)] = acct.gaussian(counts, rho_table, f"{columns[p].column} x {columns[node].column}")
        self.tree_ = TreeModel.fit(parent, anchor, joints, tables)
        report(3)

        self.domains_, self.n_features_in_ = domains, host.shape[1]
        self.privacy_ = self._privacy_report(acct, delta, spike_delta)
        edges = [(columns[p].column, columns[j].column) for j, p in enumerate(parent) if p >= 0]
        self.history_ = {
            "fit_seconds": time.perf_counter() - start,
            "coarse_bins": k,
            "anchor": cfg.anchor if anchor >= 0 else None,
            "edges": edges,
        }
        report(4)
        logger.info("marginal: %d columns, %d edges, %d coarse bins per number", c, len(edges), k)
        return self

    def _accountant(self, cfg: MarginalConfig, n: int) -> tuple[ZCDPAccountant, float, float]:
        """The rho budget and the delta split: (accountant, delta of the whole fit, delta for heaped values)."""
        rng = np.random.default_rng(cfg.seed)
        if cfg.epsilon is None:
            return ZCDPAccountant(math.inf, rng), 0.0, 0.0
        delta = cfg.delta if cfg.delta is not None else default_delta(n)
        check_budget(cfg.epsilon, delta, n)
        spike_delta = cfg.spike_delta_share * delta
        return ZCDPAccountant(rho_for(cfg.epsilon, delta - spike_delta), rng), delta, spike_delta

    def _measure_column(
        self, host: np.ndarray, col: ColumnTokens, acct: ZCDPAccountant, rho: float, delta: float, cfg: MarginalConfig
    ) -> ColumnDomain:
        if col.kind == "category":
            tokens = host[:, col.start : col.start + col.width].argmax(1)
            return measure_category(tokens, col, acct, rho)
        values = host[:, col.start].astype(np.float64)
        missing = host[:, col.missing_at] >= 0.5 if col.missing_at >= 0 else np.zeros(values.size, dtype=bool)
        if acct.private:
            bounds = (-cfg.bound, cfg.bound)
        else:
            present = values[~missing]
            bounds = (float(present.min()), float(present.max())) if present.size else (0.0, 1.0)
        plan = HistogramPlan(fine_bins=cfg.fine_bins, branching=cfg.branching, levels=cfg.levels)
        return measure_number(values, missing, col, bounds, acct, rho, delta, plan)

    @staticmethod
    def _anchor_index(columns: list[ColumnTokens], anchor: str | None) -> int:
        if anchor is None:
            return -1
        names = [col.column for col in columns]
        if anchor not in names:
            raise InvalidInputError(f"marginal: anchor column {anchor!r} is not a modelled column ({', '.join(names)})")
        return names.index(anchor)

    @staticmethod
    def _anchor_joints(
        coarse: np.ndarray,
        a: np.ndarray,
        domains: list[ColumnDomain],
        anchor: int,
        acct: ZCDPAccountant,
        rho: float,
        columns: list[ColumnTokens],
    ) -> list[np.ndarray | None]:
        """Per column, its (k_a, k) joint with the anchor, consistent with both 1-ways (measured with the anchor's
        token when there is an anchor; the 1-way as (1, k) when there is not)."""
        ones = [_normalised(d.coarse_mass()) for d in domains]
        if anchor < 0:
            return [m[None, :] for m in ones]
        k_a = domains[anchor].n_coarse
        joints: list[np.ndarray | None] = []
        for j, d in enumerate(domains):
            if j == anchor:
                joints.append(np.diag(ones[anchor]))
                continue
            counts = np.bincount(a * d.n_coarse + coarse[:, j], minlength=k_a * d.n_coarse).reshape(k_a, -1)
            noisy = acct.gaussian(counts, rho, f"{columns[anchor].column} x {columns[j].column}")
            joints.append(fit_pair(noisy, ones[anchor], ones[j]))
        return joints

    # ------------------------------------------------------------------------------------------------- sampling
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` encoded rows; `conditions` ((n_features,) or (n, n_features), NaN = free) fix columns exactly."""
        base.require_fitted(self, "tree_")
        gen = generator if generator is not None else base.make_generator(None, "cpu")
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        columns = [d.tokens for d in self.domains_]
        order = list(range(len(columns)))
        forced = forced_tokens(conditions, n, self.n_features_in_, columns, order)  # fine tokens, -1 free
        allowed = None
        if forced is not None:
            allowed = [None] * len(columns)
            for j, d in enumerate(self.domains_):
                fix = forced[:, j] >= 0
                if fix.any():
                    mask = np.ones((n, d.n_coarse))
                    mask[fix] = 0.0
                    mask[np.flatnonzero(fix), d.coarse[forced[fix, j]]] = 1.0
                    allowed[j] = mask
        coarse = self.tree_.sample(n, rng, allowed)
        fine = np.stack([self._refine(d, coarse[:, j], rng) for j, d in enumerate(self.domains_)], axis=1)
        if forced is not None:
            fine = np.where(forced >= 0, forced, fine)
        out = from_tokens(torch.from_numpy(fine), columns, self.n_features_in_, gen)
        if conditions is not None:  # numbers fixed by value come back as given, not as their bin's draw
            cond = torch.as_tensor(conditions, dtype=torch.float32).cpu().expand(n, -1)
            out = torch.where(torch.isnan(cond), out, cond)
        return out.to(base.resolve_device(self.device) if self.device is not None else "cpu")

    @staticmethod
    def _refine(domain: ColumnDomain, coarse: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A fine token for each coarse token, in proportion to the fine masses within its group."""
        order = np.argsort(domain.coarse, kind="stable")
        groups = domain.coarse[order]
        weights = domain.mass[order] + 1e-12  # a group with no mass draws its tokens evenly
        starts = np.searchsorted(groups, np.arange(domain.n_coarse))
        ends = np.searchsorted(groups, np.arange(domain.n_coarse), side="right")
        cum = np.cumsum(weights)
        before = np.r_[0.0, cum][starts]
        u = before[coarse] + rng.random(coarse.size) * (cum[ends - 1][coarse] - before[coarse])
        pos = np.searchsorted(cum, u, side="right").clip(starts[coarse], ends[coarse] - 1)
        return order[pos]

    def anomaly_scores(self, x: Tensor) -> RowScores:
        """Per-row negative log-probability along the tree, with per-feature parts (`models.scoring`)."""
        from synthgate.models.scoring import marginal_scores

        return marginal_scores(self, x)

    # ---------------------------------------------------------------------------------------------- persistence
    def save(self, directory: Path) -> None:
        """Write the domains and the tree as JSON and tensors: rebuilt on load, never unpickled."""
        base.require_fitted(self, "tree_")
        tree = self.tree_
        meta = {
            "n_features_in": self.n_features_in_,
            "columns": [asdict(d.tokens) for d in self.domains_],
            "domains": [d.state() for d in self.domains_],
            "parent": tree.parent.tolist(),
            "anchor": tree.anchor,
            "privacy": self.privacy_,
            "history": self.history_,
        }
        state = {"anchor_marginal": torch.from_numpy(tree.anchor_marginal)}
        state.update({f"c{j}": torch.from_numpy(t) for j, t in enumerate(tree.conditionals) if t is not None})
        config = self.config or MarginalConfig()
        base.save_checkpoint(directory, kind="marginal", config=config, state=state, meta=meta)

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        config, state, meta = base.load_checkpoint(directory, device="cpu")
        model = cls(base.config_from_dict(MarginalConfig, config), device=device)
        model.domains_ = [
            ColumnDomain(ColumnTokens(**col), np.asarray(d["mass"]), np.asarray(d["coarse"], dtype=np.int64))
            for col, d in zip(meta["columns"], meta["domains"], strict=True)
        ]
        parent = np.asarray(meta["parent"], dtype=np.int64)
        conditionals = [state[f"c{j}"].numpy() if f"c{j}" in state else None for j in range(parent.size)]
        anchor = int(meta.get("anchor", -1))
        order = topological_order(parent, anchor)
        model.tree_ = TreeModel(parent, anchor, order, state["anchor_marginal"].numpy(), conditionals)
        model.n_features_in_ = int(meta["n_features_in"])
        model.privacy_, model.history_ = meta.get("privacy", {}), meta.get("history")
        return model

    @staticmethod
    def _privacy_report(acct: ZCDPAccountant, delta: float, spike_delta: float) -> dict:
        if not acct.private:
            return {}
        return {
            "epsilon": acct.epsilon(delta - spike_delta),
            "delta": delta,
            "rho": acct.spent,
            "rho_budget": acct.rho,
            "mechanism": "zCDP marginals (tree; anchored on the target when given)",
            "releases": len(acct.ledger),
        }


def _counts(a: np.ndarray, left: np.ndarray, right: np.ndarray, k_a: int, k_l: int, k_r: int) -> np.ndarray:
    """(k_a, k_l, k_r) counts of rows by anchor, left and right token."""
    flat = (a * k_l + left) * k_r + right
    return np.bincount(flat, minlength=k_a * k_l * k_r).reshape(k_a, k_l, k_r).astype(np.float64)


def _normalised(mass: np.ndarray) -> np.ndarray:
    mass = np.maximum(mass, 0.0)
    return mass / mass.sum() if mass.sum() > 0 else np.full(mass.size, 1.0 / mass.size)


def _edge_quality(
    coarse: np.ndarray, a: np.ndarray, joints: list[np.ndarray], i: int, j: int, sigma: float, n_hat: float
) -> float:
    """L1 distance of the real (a, i, j) table from what the noisy (a, i) and (a, j) joints give when i and j are
    independent given the anchor, less what sampling and the measurement noise explain (AIM's penalty)."""
    k_a, ki, kj = joints[i].shape[0], joints[i].shape[1], joints[j].shape[1]
    real = _counts(a, coarse[:, i], coarse[:, j], k_a, ki, kj)
    p_a = np.maximum(joints[i].sum(1), 1e-12)
    expected = n_hat * joints[i][:, :, None] * joints[j][:, None, :] / p_a[:, None, None]
    sampling = math.sqrt(2 / math.pi) * np.sqrt(expected * np.clip(1 - expected / max(n_hat, 1e-9), 0, 1)).sum()
    noise = math.sqrt(2 / math.pi) * sigma * k_a * ki * kj
    return float(np.abs(real - expected).sum() - sampling - noise)


def _orient(neighbours: dict[int, list[int]], nodes: list[int], c: int) -> np.ndarray:
    """Parents of an undirected forest over `nodes`, each component rooted at its lowest-numbered column."""
    parent = np.full(c, -1, dtype=np.int64)
    seen = np.zeros(c, dtype=bool)
    for root in nodes:
        if seen[root]:
            continue
        seen[root] = True
        stack = [root]
        while stack:
            node = stack.pop()
            for other in neighbours[node]:
                if not seen[other]:
                    seen[other] = True
                    parent[other] = node
                    stack.append(other)
    return parent


def _select_tree(
    coarse: np.ndarray,
    a: np.ndarray,
    joints: list[np.ndarray | None],
    anchor: int,
    acct: ZCDPAccountant,
    rho_choice: float,
    sigma: float,
    n_hat: float,
) -> np.ndarray:
    """Kruskal's maximum spanning tree over the non-anchor columns, each edge picked by the exponential
    mechanism; returns parents (-1 at roots and at the anchor)."""
    c = len(joints)
    nodes = [j for j in range(c) if j != anchor]
    pairs = [(i, j) for x, i in enumerate(nodes) for j in nodes[x + 1 :]]
    quality = np.array([_edge_quality(coarse, a, joints, i, j, sigma, n_hat) for i, j in pairs])
    component = list(range(c))

    def find(x: int) -> int:
        while component[x] != x:
            component[x] = component[component[x]]
            x = component[x]
        return x

    neighbours: dict[int, list[int]] = {i: [] for i in range(c)}
    for _ in range(len(nodes) - 1):
        open_ = [e for e, (i, j) in enumerate(pairs) if find(i) != find(j)]
        pick = open_[acct.exponential(quality[open_], rho_choice, "tree edge")]
        i, j = pairs[pick]
        component[find(i)] = find(j)
        neighbours[i].append(j)
        neighbours[j].append(i)
    return _orient(neighbours, nodes, c)
