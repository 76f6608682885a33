"""`embmap bench`: every pipeline on every built-in workload x query distribution, predicted and measured.

For each workload and scenario, each pipeline's plan is compiled for `ascend910` (plan time, solver gap,
predicted makespan) and for `cpu` (predicted with this machine's profile, then run for real on the reference
runtime, the pipelines taking turns on the same data). What a CPU user runs instead of a plan, PyTorch's
`embedding_bag` per table and FBGEMM's table-batched forward (`runtime.baselines`), takes its turn in the same
rounds on the same data, as rows of their own without a plan. The results go to a CSV, a Markdown report and
two plots; `--quick` runs one small workload in seconds, to prove the whole path works.

`run` compiles and measures, `statistics` pairs the measurements into speedups with their intervals and
summaries, `report` writes results.csv and RESULTS.md, `plots` the figures.
"""
