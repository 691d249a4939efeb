#!/usr/bin/env bash
# The device checks the issues ask for, as one script for a lent GPU (benchmarks/RESULTS.md
# holds what it printed). Each benchmark runs in its own process under its own time limit;
# its whole output goes to $OUT/<name>.txt and its tail to stdout.
#
#   OUT=/tmp/gpu bash benchmarks/gpu.sh              # all of them
#   OUT=/tmp/gpu bash benchmarks/gpu.sh svi flows    # some of them, by name
set -u
OUT=${OUT:-/tmp/ppl-gpu-bench}
mkdir -p "$OUT"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the benchmarks start subprocesses on the GPU too
export PPL_CACHE_DIR="$(mktemp -d)"         # cold means cold
PY=${PY:-python3}

WANTED=" $* "
bench() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    if [ "$WANTED" != "  " ] && [[ "$WANTED" != *" $name "* ]]; then return; fi
    echo "== $name ($(date +%T), limit ${limit}s)"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "exit status $?" >>"$OUT/$name.txt"
    grep -v "it/s\]\|Warning\|warn(" "$OUT/$name.txt" | tail -n "${TAIL:-30}"
}

nvidia-smi -L
$PY -c "import jax, numpyro, optax; print('jax', jax.__version__, 'numpyro', numpyro.__version__, jax.devices())"
bench svi 100 $PY benchmarks/svi_vs_numpyro.py                                   # issue 5
BENCH_CHAINS=128 BENCH_MODELS=logistic BENCH_KERNELS=nuts \
    bench mcmc128 110 $PY benchmarks/mcmc_vs_anchors.py                          # issue 3
BENCH_CHAINS=128 BENCH_MODELS=eight_schools,gaussian BENCH_KERNELS=hmc BENCH_LIBRARIES=ppl,blackjax \
    bench mcmc128hmc 150 $PY benchmarks/mcmc_vs_anchors.py                       # issue 3
BENCH_PARTICLES=100000 bench smc 110 $PY benchmarks/smc_vs_blackjax.py           # issue 4
bench pf 40 $PY benchmarks/pf_vs_hand.py 100000 1000000                                 # issue 4
bench flows 80 $PY benchmarks/flows_vs_numpyro.py                                # issue 6
bench bnn 80 $PY benchmarks/sgmcmc_structured_bnn.py                             # issue 7
bench sgld 60 $PY benchmarks/sgmcmc_vs_blackjax.py                               # issue 7
