"""`cart`: sequential decision trees over column tokens, p(row) = prod_j p(column_j | columns before j).

The columns are the autoregressive family's tokens (`models.arn_tokens`: categories as levels, numbers as exact
spikes plus quantile bins decoded to a uniform value within the bin, missing as a token of its own). Column j gets a
scikit-learn `DecisionTreeClassifier` on the tokens of the columns before it (numbers as value-ordered codes,
categories one-hot) that predicts column j's token; sampling routes each synthetic prefix through tree j and draws
the token from its leaf. This is synthpop's sequential CART, made private enough to ship:

    * a leaf holds at least `max(min_leaf, min_leaf_share * rows)` training rows, so no leaf describes a handful of
      people (synthpop's 5-row leaves copy rows: a leaf of 5 is a lookup table);
    * a leaf's token distribution is its counts smoothed toward the column's marginal (`smoothing` pseudo-rows), so
      a rare combination is never pinned to the leaf's few rows;
    * tokens, not training values, are drawn: a number comes back as a uniform value within its bin, or as a
      heaped value that at least `min_support` rows share.

Conditions are forced tokens, as in the arn: rows that fix a column late in the order are drawn by importance
resampling over `condition_pool` candidates, weighted by the trees' probability of the forced tokens.
See docs/decisions.md#cart-family.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, ClassVar, Literal, Self

import numpy as np
import torch
from torch import Tensor

from synthgate.models import base
from synthgate.models.arn_tokens import ColumnTokens, forced_tokens, from_tokens, tokenise_table
from synthgate.models.encoders.table import Span
from synthgate.models.training import Progress

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores

logger = logging.getLogger(__name__)

ONE_HOT_MAX = 64  # wider categories enter the trees as one ordinal code: one-hot would make fitting slow


@dataclass(frozen=True)
class CARTConfig:
    min_leaf: int = 20  # rows a leaf needs at least: docs/decisions.md#cart-family
    min_leaf_share: float = 0.01  # ... and this share of the rows, so big tables get coarser leaves too
    smoothing: float = 2.0  # pseudo-rows of the column's marginal added to every leaf's counts
    max_depth: int | None = None
    max_bins: int = 48
    min_support: int = 10  # rows a bin or a spike needs: fewer and a token could point at one person
    spike_share: float = 0.005  # an exact value held by 0.5% of the rows is a token of its own (heaping)
    order: Literal["table", "levels"] = "table"  # docs/decisions.md#arn-column-order
    condition_pool: int = 16  # candidates per row for a condition on a column late in the order
    seed: int = 0


@dataclass
class Tree:
    """One column's fitted tree as plain arrays (sklearn's `tree_`, without pickling it).

    Attributes:
        left, right: child node of each node, -1 at leaves.
        feature, threshold: the split of each node (a row goes left when `x[feature] <= threshold`).
        probs: (n_nodes, n_tokens) smoothed token distribution of each node (read at leaves only).
        sizes: training rows in each node.
        depth: the tree's depth (routing takes this many steps).
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    probs: np.ndarray
    sizes: np.ndarray
    depth: int

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row of features `x` falls in, routed for all rows at once."""
        node = np.zeros(x.shape[0], dtype=np.int64)
        rows = np.arange(x.shape[0])
        for _ in range(self.depth):
            inner = self.left[node] >= 0
            go_left = x[rows, self.feature[node].clip(0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return node

    def state(self, j: int) -> dict[str, Tensor]:
        return {
            f"t{j}.left": torch.from_numpy(self.left),
            f"t{j}.right": torch.from_numpy(self.right),
            f"t{j}.feature": torch.from_numpy(self.feature),
            f"t{j}.threshold": torch.from_numpy(self.threshold),
            f"t{j}.probs": torch.from_numpy(self.probs),
            f"t{j}.sizes": torch.from_numpy(self.sizes),
        }

    @classmethod
    def from_state(cls, state: dict[str, Tensor], j: int, depth: int) -> Tree:
        get = {k: state[f"t{j}.{k}"].cpu().numpy() for k in ("left", "right", "feature", "threshold", "probs", "sizes")}
        return cls(**get, depth=depth)


def token_codes(col: ColumnTokens) -> np.ndarray:
    """A number column's tokens as codes ordered by value (missing first), so that a split `<=` means "smaller"."""
    spikes = np.asarray(col.spikes or [], dtype=np.float64)
    edges = np.asarray(col.edges or [0.0, 0.0], dtype=np.float64)
    n_bins = col.n_tokens - col.first_bin
    centres = (edges[:-1] + edges[1:]) / 2 if edges.size > 1 else edges
    centres = np.resize(centres, n_bins)
    values = np.r_[-np.inf, spikes, centres]
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)


class CART:
    """Sequential decision trees over column tokens; see the module docstring.

    Attributes:
        columns_: the `ColumnTokens` of each column, in table order.
        order_: the column order the trees follow (indices into `columns_`).
        trees_: one `Tree` per column, in `order_`.
        min_leaf_: the smallest leaf the trees were allowed.
        n_features_in_: width of the encoded rows.
        history_: seconds the fit took, and the leaves per tree.
    """

    config_class: ClassVar[type] = CARTConfig
    supports_conditions: ClassVar[bool] = True
    normalization: ClassVar[str] = "standard"

    def __init__(self, config: CARTConfig | None = None, *, spans: list[Span] | None = None, device=None):
        self.config = config
        self.spans = spans
        self.device = device
        self.columns_: list[ColumnTokens] | None = None
        self.order_: list[int] | None = None
        self.trees_: list[Tree] | None = None
        self.min_leaf_: int | None = None
        self.n_features_in_: int | None = None
        self.history_: dict | None = None
        self.privacy_: dict | None = None

    # ------------------------------------------------------------------------------------------------------ fit
    def fit(
        self, x: Tensor, *, conditions: Tensor | None = None, progress: Callable[[Progress], None] | None = None
    ) -> Self:
        """Learn the tokens and one tree per column on encoded rows `x` (n, n_features)."""
        from sklearn.tree import DecisionTreeClassifier

        cfg = self.config or CARTConfig()
        start = time.perf_counter()
        host = base.check_matrix(x).cpu().numpy()
        columns, order, tokens = tokenise_table(
            host, self.spans, max_bins=cfg.max_bins, min_support=cfg.min_support, spike_share=cfg.spike_share,
            order=cfg.order,
        )  # fmt: skip
        self.columns_, self.order_, self.n_features_in_ = columns, order, host.shape[1]
        n = tokens.shape[0]
        self.min_leaf_ = int(max(cfg.min_leaf, np.ceil(cfg.min_leaf_share * n)))
        features, ends = self.tree_inputs(tokens)
        trees = []
        for j, c in enumerate(order):
            k = columns[c].n_tokens
            y = tokens[:, j]
            if j == 0 or n < 2 * self.min_leaf_:
                leaves, tree = np.zeros(n, dtype=np.int64), _stump()
            else:
                clf = DecisionTreeClassifier(
                    min_samples_leaf=self.min_leaf_, max_depth=cfg.max_depth, random_state=cfg.seed
                ).fit(features[:, : ends[j]], y)
                leaves, tree = clf.apply(features[:, : ends[j]]), clf.tree_
            trees.append(_tree(tree, leaves, y, k, cfg.smoothing))
            if progress is not None:
                elapsed = time.perf_counter() - start
                progress(Progress(j + 1, len(order), 0.0, None, n * (j + 1) / max(elapsed, 1e-9), 0.0))
        self.trees_ = trees
        self.history_ = {
            "fit_seconds": time.perf_counter() - start,
            "leaves": [int((t.left < 0).sum()) for t in trees],
        }
        logger.info("cart: %d trees, leaves of >= %d rows", len(trees), self.min_leaf_)
        return self

    def tree_inputs(self, tokens: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Tree inputs of token rows (model order): value-ordered codes for numbers, one-hots for categories; and
        where the features of the columns before j end (tree j reads `features[:, :ends[j]]`)."""
        parts, ends, width = [], [], 0
        for j, c in enumerate(self.order_[: tokens.shape[1]]):
            ends.append(width)
            col = self.columns_[c]
            tok = tokens[:, j]
            if col.kind == "category" and 2 < col.width <= ONE_HOT_MAX:
                part = np.zeros((tok.size, col.width), dtype=np.float32)
                part[np.arange(tok.size), tok] = 1.0
            elif col.kind == "category":
                part = tok[:, None].astype(np.float32)
            else:
                part = token_codes(col)[tok][:, None].astype(np.float32)
            parts.append(part)
            width += part.shape[1]
        return np.concatenate(parts, axis=1), ends

    # ------------------------------------------------------------------------------------------------- sampling
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` encoded rows; `conditions` ((n_features,) or (n, n_features), NaN = free) fix columns exactly."""
        base.require_fitted(self)
        cfg = self.config or CARTConfig()
        gen = generator if generator is not None else base.make_generator(None, "cpu")
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        forced = self._forced_tokens(conditions, n)  # (n, c) in model order, -1 = free; or None
        pool = 1
        if forced is not None:
            fixed = np.flatnonzero((forced >= 0).any(0))
            late = fixed.size and bool(fixed.max() + 1 > fixed.size or (forced[:, fixed] < 0).any())
            pool = cfg.condition_pool if late else 1
            forced = np.repeat(forced, pool, axis=0)
        tokens, log_w = self._draw(n * pool, forced, rng)
        if pool > 1:  # importance resampling: one candidate per row, in proportion to p(forced tokens | prefix)
            w = np.exp(log_w.reshape(n, pool) - log_w.reshape(n, pool).max(1, keepdims=True))
            cum = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
            pick = (rng.random((n, 1)) > cum).sum(1).clip(max=pool - 1)
            tokens = tokens.reshape(n, pool, -1)[np.arange(n), pick]
        table = np.empty_like(tokens)
        table[:, self.order_] = tokens  # back to table order
        out = from_tokens(torch.from_numpy(table), self.columns_, self.n_features_in_, gen)
        if conditions is not None:  # numbers fixed by value come back as given, not as their bin's draw
            cond = torch.as_tensor(conditions, dtype=torch.float32).cpu().expand(n, -1)
            out = torch.where(torch.isnan(cond), out, cond)
        return out.to(base.resolve_device(self.device) if self.device is not None else "cpu")

    def _draw(self, n: int, forced: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Token rows drawn column by column, and the log-probability of their forced tokens."""
        c = len(self.order_)
        tokens = np.zeros((n, c), dtype=np.int64)
        log_w = np.zeros(n)
        features: np.ndarray | None = None
        for j, tree in enumerate(self.trees_):
            leaf = tree.leaves(features) if j and features is not None else np.zeros(n, dtype=np.int64)
            cum = np.cumsum(tree.probs[leaf], axis=1)  # (n, k): the rows' leaf distributions
            tok = (rng.random((n, 1)) * cum[:, -1:] > cum).sum(1).clip(max=cum.shape[1] - 1)
            if forced is not None:
                fix = forced[:, j] >= 0
                tok = np.where(fix, forced[:, j], tok)
                p = tree.probs[leaf, tok]
                log_w += np.where(fix, np.log(np.maximum(p, 1e-300)), 0.0)
            tokens[:, j] = tok
            if j + 1 < c:
                features, _ = self.tree_inputs(tokens[:, : j + 1])
        return tokens, log_w

    def _forced_tokens(self, conditions: Tensor | None, n: int) -> np.ndarray | None:
        return forced_tokens(conditions, n, self.n_features_in_, self.columns_, self.order_)

    # ---------------------------------------------------------------------------------------------- persistence
    def anomaly_scores(self, x: Tensor) -> RowScores:
        """Per-row chain-rule negative log-probability under the trees' leaves, with per-feature parts."""
        from synthgate.models.scoring import cart_scores

        return cart_scores(self, x)

    def save(self, directory: Path) -> None:
        """Write the trees as tensors (config.json, state.pt, meta.json): rebuilt on load, never unpickled."""
        base.require_fitted(self)
        meta = {
            "n_features_in": self.n_features_in_,
            "columns": [asdict(c) for c in self.columns_],
            "order": self.order_,
            "depths": [t.depth for t in self.trees_],
            "min_leaf": self.min_leaf_,
            "history": self.history_,
        }
        state = {k: v for j, t in enumerate(self.trees_) for k, v in t.state(j).items()}
        base.save_checkpoint(directory, kind="cart", config=self.config or CARTConfig(), state=state, meta=meta)

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        config, state, meta = base.load_checkpoint(directory, device="cpu")
        model = cls(base.config_from_dict(CARTConfig, config), device=device)
        model.columns_ = [ColumnTokens(**c) for c in meta["columns"]]
        model.order_ = list(meta["order"])
        model.n_features_in_ = int(meta["n_features_in"])
        model.min_leaf_, model.history_ = meta.get("min_leaf"), meta.get("history")
        model.trees_ = [Tree.from_state(state, j, d) for j, d in enumerate(meta["depths"])]
        return model


def _stump() -> SimpleNamespace:
    """A one-leaf tree in sklearn's `tree_` layout: the column's marginal (the first column, or too few rows)."""
    leaf = np.array([-1])
    return SimpleNamespace(
        children_left=leaf, children_right=leaf, feature=leaf, threshold=np.array([-2.0]), max_depth=0
    )


def _tree(tree, leaves: np.ndarray, y: np.ndarray, k: int, smoothing: float) -> Tree:
    """Plain arrays of sklearn's `tree_`, with each leaf's token counts smoothed toward the marginal of `y`."""
    n_nodes = tree.children_left.shape[0]
    counts = np.zeros((n_nodes, k))
    np.add.at(counts, (leaves, y), 1.0)
    marginal = np.bincount(y, minlength=k) / max(y.size, 1)
    sizes = counts.sum(1)
    probs = (counts + smoothing * marginal) / np.maximum(sizes + smoothing, 1e-12)[:, None]
    return Tree(
        left=np.asarray(tree.children_left, dtype=np.int64),
        right=np.asarray(tree.children_right, dtype=np.int64),
        feature=np.asarray(tree.feature, dtype=np.int64),
        threshold=np.asarray(tree.threshold, dtype=np.float64),
        probs=probs,
        sizes=sizes.astype(np.int64),
        depth=int(tree.max_depth),
    )
