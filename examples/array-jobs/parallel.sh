#!/bin/bash
# One recipe over every checkpoint under inputs/, as 3 GNU parallel jobs on one machine: PARALLEL_SEQ
# (1, 2, 3) picks the slice, --shard-count says how many there are.
set -euo pipefail
mkdir -p reports
parallel --will-cite -j 3 wsurgery run recipe.yaml inputs/ --out-dir out/ --shard auto --shard-count 3 --report 'reports/task-{}.json' ::: 1 2 3
