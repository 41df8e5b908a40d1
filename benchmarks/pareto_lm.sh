#!/usr/bin/env bash
# The character-level transformer LM sweeps of docs/results.md: the standard-library corpus (scripts/stdlib_corpus.py),
# a 4-epoch fp32 run, PTQ at 1.5–4 mean bits (14 methods) and QAT at 1.5 and 2 (6 methods, 45 one-epoch runs).
# Run from the repository root: R=/tmp/bitplan-results bash benchmarks/pareto_lm.sh (about 1.5 CPU-hours:
# train 1.5 min, PTQ 10 CPU-min, QAT 45 runs of about a CPU-minute and a half each; docs/results.md, "Runtimes").
# Each sweep writes $R/<sweep>/pareto.json (.md, .csv, .png, report.html); a rerun reuses every finished point.
set -euo pipefail
R=${R:-/tmp/bitplan-results}
PY=${PY:-python}
B="$PY -m bitplan"
LM='zoo:transformer_lm?d_model=128&n_layers=2&n_heads=4&d_ff=512&seq_len=64'
TEXT="text:$R/stdlib-corpus?level=char"
$PY scripts/stdlib_corpus.py $R/stdlib-corpus
[ -e $R/lm128_fp32/summary.json ] || $B train "$LM" --data "$TEXT" --epochs 4 --batch 32 --optimizer adamw --lr 0.003 --weight-decay 0 \
  --clip-grad-norm 1.0 --threads 1 --no-progress -o $R/lm128_fp32
$B pareto "$LM" --data "$TEXT" --checkpoint $R/lm128_fp32 --levels 1,2,3,4,8 --budget-avg-bits 1.5,2,2.5,3,4 \
  --methods uniform,random,first-last,A:C-,A:C+,F:C+,F:C-,D:C-,dpc,fisher,hessian,loss-delta,sqnr,recommended \
  --random-plans 9 --batches 2 --weight-only --threads 1 --no-progress -o $R/pareto_lm_ptq
$B pareto "$LM" --data "$TEXT" --checkpoint $R/lm128_fp32 --levels 1,2,3,4,8 --budget-avg-bits 1.5,2 \
  --methods uniform,random,A:C-,sqnr,loss-delta,recommended --random-plans 3 --batches 2 --weight-only --eval qat --epochs 1 --batch 32 \
  --optimizer adamw --lr 0.0005 --weight-decay 0 --clip-grad-norm 1.0 --seeds 0,1,2 --threads 1 --no-progress -o $R/pareto_lm_qat
