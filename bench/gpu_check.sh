#!/usr/bin/env bash
# The GPU checks, as one command for a lent GPU machine (its image has torch, numpy, scipy, scikit-learn, pytest; no
# registry). Our other needs and SDV's travel as wheels for its Python 3.12, fetched here first:
#
#   echo /.whl/ >> .git/info/exclude
#   P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
#   python3 -m pip download $P -d .whl/ours pydantic pydantic_core annotated-types typing-inspection palmerpenguins
#   python3 -m pip download $P -d .whl/sdv sdv rdt copulas ctgan deepecho sdmetrics Faker graphviz boto3 botocore \
#       s3transfer jmespath platformdirs plotly pandas==2.3.3 pytz tzdata   # SDV pins pandas < 3
#
# then, on the machine, with .whl carried: `bash bench/gpu_check.sh` (logs and JSON rows go to $OUT).
# SDV gets a site of its own (its pandas 2.x must not shadow the image's for our code), through a wrapper interpreter.
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
pip_install() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$1" "${@:2}"; }
pip_install /tmp/site .whl/ours/*.whl || exit 1
pip_install /tmp/sdvsite .whl/sdv/*.whl || exit 1
printf '#!/bin/sh\nPYTHONPATH=/tmp/sdvsite exec python3 "$@"\n' >/tmp/sdvpy && chmod +x /tmp/sdvpy
export PYTHONPATH=/tmp/site:$PWD

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, pandas; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'pandas', pandas.__version__)"
sdv_models="gaussian_copula tvae ctgan"
/tmp/sdvpy -c "import sdv, pandas; print('sdv', sdv.__version__, 'pandas', pandas.__version__)" || sdv_models=""

python3 -m pytest -q -p no:cacheprovider -s tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
# SMALL_MODELS / MIXED_MODELS narrow a rerun (say, to the models a change touched); SDV's names are dropped when its
# site does not import.
all_models="gmm vae gan autoencoder $sdv_models"
for tables in "penguins wine" "mixed"; do
    name=${tables// /_}
    if [ "$name" = mixed ]; then models=${MIXED_MODELS:-$all_models}; else models=${SMALL_MODELS:-$all_models}; fi
    [ -z "$sdv_models" ] && models=$(echo "$models" | tr ' ' '\n' | grep -v -x -E 'gaussian_copula|tvae|ctgan' | tr '\n' ' ')
    python3 bench/vs_sdv.py --device cuda --epochs 50 --tables $tables --sdv-python /tmp/sdvpy \
        --models $models --json "$OUT/vs_sdv_$name.json" 2>&1 | tee "$OUT/vs_sdv_$name.log"
done
