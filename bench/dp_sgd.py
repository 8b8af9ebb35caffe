"""Which DP-SGD options pay for their budget: vae and gan at epsilon 3 (and without DP) on real tables.

Each option is a config field, measured against the flow's private defaults (`PRIVATE` in each config) at the same
epsilon on the same split: batch size against epochs, a noise-multiplier schedule, the vae's marginal start from DP
marginals, pre-training on rows drawn from the public domain, and for the gan the loss, learning rate and generator
steps per noisy critic step. `eps=1000` runs the DP path with next to no noise, which splits the drop from the
non-private model into what the DP setup costs (no moment matching, no conditional vector, clipping, few steps) and
what the noise costs.

The schema inferred from the whole table stands in for a public `--schema`, so the whole budget goes to training.
Prints one row per (table, model, option): spent epsilon, column shapes and pair trends against the holdout, seconds.

    .venv/bin/python -m bench.dp_sgd [--tables Ecdat/Computers,...] [--models vae,gan] [--options base,c] [--seed 0]

The figures are in docs/decisions.md#dp-sgd-options.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from bench.realism import load_table
from synthgate.models.registry import build_model, config_class
from synthgate.schemas.table import infer_schema
from synthgate.tasks.dp_preprocess import prepare_training
from synthgate.tasks.fidelity import column_shapes, pair_trends
from synthgate.tasks.protect import training_frame
from synthgate.tasks.split import split_holdout

TABLES = ("Ecdat/Computers", "Ecdat/Benefits", "Ecdat/Wages")
EPSILON = 3.0
# option name -> (epsilon, config overrides); "plain" is the non-private model with the same epochs and batch size.
OPTIONS: dict[str, dict[str, tuple[float | None, dict]]] = {
    "vae": {
        # The private defaults start at DP marginals (c); the options a, b and d are measured without it.
        "base": (EPSILON, {}),
        "no-c": (EPSILON, {"marginal_start": False}),
        "a:batch2000x10": (EPSILON, {"batch_size": 2000, "epochs": 10, "marginal_start": False}),
        "b:noise_decay0.5": (EPSILON, {"noise_decay": 0.5, "marginal_start": False}),
        "d:public_pretrain50": (EPSILON, {"public_pretrain_steps": 50, "marginal_start": False}),
        "c+d": (EPSILON, {"public_pretrain_steps": 50}),
        "plain": (None, {"val_fraction": 0.0, "patience": None}),
    },
    "gan": {
        "base": (EPSILON, {}),
        "e:gen_steps3": (EPSILON, {"generator_steps": 3}),
        "eps1000": (1000.0, {}),
        "b:noise_decay0.5": (EPSILON, {"noise_decay": 0.5}),
        "e:wasserstein": (EPSILON, {"private_loss": "wasserstein"}),
        "e:lr2e-3": (EPSILON, {"lr": 2e-3}),
        "a:batch1000": (EPSILON, {"batch_size": 1000}),
        "plain": (None, {}),
    },
}
SAMPLE_ROWS = 5000  # synthetic rows scored per run


def run_one(frame, table: str, model: str, option: str, seed: int) -> dict:
    """Fit `model` with `option` on the 80% split of `frame` and score it against the 20% holdout."""
    eps, overrides = OPTIONS[model][option]
    schema = infer_schema(frame)
    train, holdout = split_holdout(frame, fraction=0.2, seed=seed)
    prepared = prepare_training(
        train, schema, model=model, epsilon=eps, delta=None, rare_k=None, public_schema=True, seed=seed
    )
    options = dict(config_class(model).PRIVATE)
    if eps is None:  # the plain run: the private epochs and batch size, none of the DP-only settings
        from synthgate.tasks.preprocess import encode_training

        options = {k: v for k, v in options.items() if k not in ("pac", "private_loss", "lr", "critic_hidden")}
        encoder, x = encode_training(prepared.train, prepared.schema)
    else:
        encoder, x = prepared.private.encoder, prepared.private.encoded
    options.update(overrides, seed=seed)
    options = prepared.model_options(options)
    start = time.perf_counter()
    fitted = build_model(prepared.model_name(model), spans=encoder.spans_, device="cpu", options=options)
    fitted.fit(x)
    seconds = time.perf_counter() - start
    n = min(len(train), SAMPLE_ROWS)
    synthetic = encoder.inverse_transform(fitted.sample(n, generator=torch.Generator().manual_seed(seed + 1)))
    real = training_frame(holdout, prepared.schema)
    return {
        "table": table,
        "model": model,
        "option": option,
        "epsilon": "none" if eps is None else eps,
        "spent": prepared.spent(fitted)[0],
        "shapes": float(column_shapes(real, synthetic, prepared.schema).value),
        "pairs": float(pair_trends(real, synthetic, prepared.schema).value),
        "fit_s": seconds,
    }


def _fmt(r: dict) -> str:
    return (
        f"{r['table']} | {r['model']} | {r['option']} | {r['epsilon']} | {r['spent']} | {r['shapes']:.3f} | "
        f"{r['pairs']:.3f} | {r['fit_s']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--models", default="vae,gan")
    parser.add_argument("--options", default=None, help="comma-separated option names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    wanted = None if args.options is None else set(args.options.split(","))
    print("table | model | option | epsilon | spent | shapes | pairs | fit_s", flush=True)
    for table in args.tables.split(","):
        frame = load_table(table)
        for model in args.models.split(","):
            for option in OPTIONS[model]:
                if wanted is None or option in wanted:
                    print(_fmt(run_one(frame, table, model, option, args.seed)), flush=True)


if __name__ == "__main__":
    main()
