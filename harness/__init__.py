"""distillbench harness: the pipeline and everything shared between methods and tasks.

Two layers, so that tasks and methods can build on the harness without import cycles:

- core (tasks/ and methods/ import these; they import nothing from tasks/, methods/,
  leaderboard/ or the application modules): types, errors, registry, settings, store, student, models,
  training, decoding, aggregate, curves, scoring, compare, power, bank, noise, tracking, ranker, backends/.
- application (the pipeline on top of tasks and methods): config, teacher, importers/, evaluate,
  run, contamination_check (the grid's contamination check), executors, grid, status, dryrun, cli,
  lmeval, contract (the method contract), scaffold (new-method's template).

`python -m harness.check_imports` checks it (tests/harness/test_layers.py runs it).
"""

__version__ = "0.1.0"
