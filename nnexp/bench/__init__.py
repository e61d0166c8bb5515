"""`python -m nnexp.bench`: how fast nnexp trains an MLP, against the bound and the neighbours.

In one process and on the same data it times median seconds per epoch of
  nnexp           the real Trainer (statistics off / all statistics on every step)
  gemm            the bare matrix products of one epoch's forward and backward passes: the bound
  sklearn         scikit-learn's MLPClassifier, same architecture, solver, lr, batch and dtype
  torch           PyTorch CPU, if it happens to be installed
and reports each one's final training accuracy (equal speed must mean equal work), the ratios,
and the BLAS library, kernel and threads it ran with. Then:
  tracking        the same epochs with all statistics every step and MLflow metrics on (a
                  throwaway sqlite store) against everything off: the cost of watching
  memory          peak memory of the large run against the float32 data plus the model
  default run     `python -m nnexp` in a subprocess, on an existing store: wall time and where
                  it goes (imports, store, data, training, artifacts, model logging)
  sweep           16 small jobs with hydra/launcher=joblib against the basic launcher
`--quick` shrinks everything (CI runs it so the benchmark cannot rot); `--log URI` records the
numbers as an MLflow run (experiment ``nnexp-bench``).
"""
