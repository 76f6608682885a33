"""The core-assignment library the passes call: the problem in integers, the plans (greedy, CP-SAT, re-plan,
uneven cuts, pattern dive) and the bounds (work, dual feasible functions, configuration LP), with the reports
and errors they produce. README.md beside this file is its one-page map: which functions produce plans, which
produce bounds, the rule that keeps the fastest plan and the largest bound, and every tuning constant."""
