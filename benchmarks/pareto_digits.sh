#!/usr/bin/env bash
# The digits_cnn sweeps of docs/results.md: a 12-epoch fp32 run, then PTQ at 1.5–4 mean bits and QAT at 1.5 and 2.
# Run from the repository root: R=/tmp/bitplan-results bash benchmarks/pareto_digits.sh (about 15 CPU-minutes).
# Each sweep writes $R/<sweep>/pareto.json (.md, .csv, .png, report.html); a rerun reuses every finished point.
set -euo pipefail
R=${R:-/tmp/bitplan-results}
PY=${PY:-python}
B="$PY -m bitplan"
[ -e $R/digits_cnn_fp32/summary.json ] || $B train zoo:digits_cnn --data digits --epochs 12 --threads 1 --no-progress -o $R/digits_cnn_fp32
$B pareto zoo:digits_cnn --data digits --checkpoint $R/digits_cnn_fp32 --levels 1,2,3,4,8 \
  --budget-avg-bits 1.5,2,2.5,3,4 --methods uniform,random,first-last,A:C-,A:C+,F:C+,F:C-,D:C-,dpc,fisher,hessian,loss-delta,sqnr,recommended \
  --random-plans 9 --weight-only --threads 1 --no-progress -o $R/pareto_digits_ptq
$B pareto zoo:digits_cnn --data digits --checkpoint $R/digits_cnn_fp32 --levels 1,2,3,4,8 --budget-avg-bits 1.5,2 \
  --methods uniform,random,first-last,A:C-,F:C+,fisher,sqnr,recommended --random-plans 3 --weight-only \
  --eval qat --epochs 2 --lr 0.01 --seeds 0,1,2 --threads 1 --no-progress -o $R/pareto_digits_qat
