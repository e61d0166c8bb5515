"""The names that cross a module or process boundary, stated once: MLflow tags, the files a run
leaves behind, and the grammar of the statistics' metric keys (a builder and a parser, used by
the statistics that write the keys and by the plots, the reports and resume that read them).

A leaf module: it imports nothing of nnexp, so every layer may use it.

Metric keys of the statistics (``<layer>`` is a module's name, e.g. ``dense_0``, ``relu_1``):

    grad_norm/<layer>/<param>[/mean|/max]   a parameter's gradient norm (epoch mean / max)
    grad_norm/global[/mean|/max]            the norm of all gradients together
    update_ratio/<layer>                    lr·‖∇W‖/‖W‖ of the layer's weight matrix
    act/<layer>/mean|std|dead_frac|sat_frac the activation's output statistics
    weight_norm/<layer>                     ‖W‖ of the layer's weight matrix, after the update
    output/min|max|mean                     the network's output (the logits) over the batch
    output/class_<k>                        classification: the fraction predicted as class k
    amp/underflow/<layer>                   trainer.precision=mixed: the fraction of the layer's
                                            gradient entries float16 flushed to zero
    amp/loss_scale, amp/skipped_steps       mixed: the loss scale, the steps skipped so far
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- MLflow tags of a run ------------------------------------------------------------------------

TAG_ERROR = "error"  # "<ExceptionType>: <message>" of a run that failed
TAG_DIVERGED = "diverged"  # "true" on a run that stopped on a NaN/Inf
TAG_PREVIOUS_ERROR = "nnexp.previous_error"  # a resumed run's earlier crash
TAG_MODEL_URI = "model_uri"  # where the logged pyfunc model is
TAG_RESUME_KEY = "nnexp.resume_key"  # hash of the job's overrides (trainer.resume=last)
# the same hash without trainer.epochs: `trainer.resume=last trainer.epochs=N` extends that run
TAG_LINEAGE_KEY = "nnexp.lineage_key"
TAG_CHECKPOINT_DIR = "nnexp.checkpoint_dir"  # the run's local checkpoint directory
TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own nesting tag
TAG_OVERRIDES = "overrides"  # the job's Hydra overrides, space-separated, or "(none)"
TAG_TASK = "task"  # binary, multiclass or regression
TAG_DATASET = "dataset"  # the dataset option's name (moons, file, ...)
TAG_VERSION = "nnexp.version"

# MLflow's own context tags (mlflow.utils.mlflow_tags), set as `mlflow.start_run` sets them:
# the runs table's User, Source and Version columns. (Older runs carry the commit in a tag of
# nnexp's own, ``git.commit``, instead; nothing reads it.)
TAG_USER = "mlflow.user"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_BRANCH = "mlflow.source.git.branch"
TAG_GIT_REPO_URL = "mlflow.source.git.repoURL"
TAG_GIT_DIRTY = "mlflow.source.git.dirty"  # "true" when tracked files had uncommitted changes
DATASET_CONTEXT_TAG = "mlflow.data.context"  # a dataset input's role: training, validation, test
DATASET_TASK_TAG = "task"  # a dataset input's tag: its task, as the run's TAG_TASK

# The user's own tags (config key `tags`) may not take a name nnexp or MLflow sets.
RESERVED_TAG_PREFIXES = ("mlflow.", "nnexp.", "sweep.", "blas.", "doctor.")

# Sweeps: the parent run and its jobs (nnexp.sweep).
TAG_SWEEP_ID = "sweep.id"
TAG_SWEEP_JOB = "sweep.job"
TAG_SWEEP_PARAMS = "sweep.params"  # JSON {swept key: this job's value}
TAG_SWEEP_ROLE = "sweep.role"  # "parent" on the parent run
TAG_SWEEP_SWEPT = "sweep.swept"  # JSON list of the swept keys
TAG_SWEEP_OBJECTIVE = "sweep.objective"
TAG_SWEEP_DIRECTION = "sweep.objective_direction"  # min or max (nnexp.objective)

# The doctor and the pre-flight check (nnexp.doctor, nnexp.check).
TAG_KIND = "nnexp.kind"  # "check" on a run of python -m nnexp.check (no tag: a training run)
TAG_DOCTOR_FINDINGS = "doctor.findings"  # the codes of the run's findings, or "none"
TAG_DOCTOR_FAILING = "doctor.failing"  # the codes of its FAIL findings (the rest: WARN), or "none"
TAG_N_CLASSES = "n_classes"  # a classification run's class count (chance accuracy is 1/C)

TRUE = "true"  # the value of boolean tags (and of a user's tag given as a name: tags=[dev])

# The run's own metrics beyond the per-epoch ones.
N_PARAMS = "model/n_params"  # the network's trainable parameters (step 0)


def reserved_tag(key: str) -> bool:
    """A tag name nnexp or MLflow sets on a run (a user's ``tags`` may not take it)."""
    own = {TAG_ERROR, TAG_DIVERGED, TAG_MODEL_URI, TAG_OVERRIDES, TAG_TASK, TAG_DATASET}
    return key in own or key == TAG_N_CLASSES or key.startswith(RESERVED_TAG_PREFIXES)


def short_value(value: str) -> str:
    """``0.00012046852412030328`` → ``0.0001205``: Optuna's floats, readable in a run name."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if len(value) <= 8 else f"{number:.4g}"


# --- files ---------------------------------------------------------------------------------------

LAST_CHECKPOINT = "last.npz"
BEST_CHECKPOINT = "best.npz"
HISTORY_FILE = "history.jsonl"  # beside the checkpoints: one line of metrics per epoch
RUN_FILE = "mlflow_run.json"  # beside the checkpoints: which MLflow run they belong to
SPOOL_DIR = "mlflow-offline"  # in the run directory: what could not be sent to the store
SWEEP_FILE = "nnexp_sweep.json"  # in the sweep directory: the parent run, for every job


def epoch_checkpoint(epoch: int) -> str:
    return f"epoch_{epoch:04d}.npz"


def checkpoint_epoch(name: str) -> int | None:
    """The epoch of an ``epoch_NNNN.npz`` name (a path's last part); None for any other file."""
    stem = name.rpartition("/")[2]
    digits = stem.removeprefix("epoch_").removesuffix(".npz")
    is_epoch_file = stem.startswith("epoch_") and stem.endswith(".npz") and digits.isdigit()
    return int(digits) if is_epoch_file else None


# --- metric keys of the statistics ---------------------------------------------------------------

GRAD_NORM, UPDATE_RATIO, ACT = "grad_norm", "update_ratio", "act"
WEIGHT_NORM, OUTPUT, AMP = "weight_norm", "output", "amp"
# What `trainer.stats` selects (all by default): the families above, "activations" for act/.
STATISTICS = (GRAD_NORM, UPDATE_RATIO, "activations", WEIGHT_NORM, OUTPUT)
GLOBAL = "global"  # the layer name of the all-gradients norm
ACT_STATS = ("mean", "std", "dead_frac", "sat_frac")
OUTPUT_STATS = ("min", "max", "mean")
LOGITS = "logits"  # the layer name of the output statistics (parsed keys)
UNDERFLOW = "underflow"
AMP_LOSS_SCALE = f"{AMP}/loss_scale"
AMP_SKIPPED_STEPS = f"{AMP}/skipped_steps"


def grad_norm_key(param: str, stat: str | None = None) -> str:
    """``grad_norm/<layer>/<param>[/<stat>]`` for a parameter named ``<layer>/<param>``."""
    return f"{GRAD_NORM}/{param}" + (f"/{stat}" if stat else "")


GLOBAL_GRAD_NORM = f"{GRAD_NORM}/{GLOBAL}"


def update_ratio_key(layer: str) -> str:
    return f"{UPDATE_RATIO}/{layer}"


def activation_key(layer: str, stat: str) -> str:
    return f"{ACT}/{layer}/{stat}"


def weight_norm_key(layer: str) -> str:
    return f"{WEIGHT_NORM}/{layer}"


def output_key(stat: str) -> str:
    """``output/min``, ``output/max``, ``output/mean``."""
    return f"{OUTPUT}/{stat}"


def predicted_class_key(k: int) -> str:
    """``output/class_<k>``: the fraction of the batch predicted as class `k`."""
    return f"{OUTPUT}/class_{k}"


def underflow_key(layer: str) -> str:
    return f"{AMP}/{UNDERFLOW}/{layer}"


@dataclass(frozen=True)
class MetricKey:
    """A statistic's key, parsed: ``grad_norm/dense_0/W/mean`` is family ``grad_norm``, layer
    ``dense_0``, param ``W``, stat ``mean``."""

    family: str
    layer: str
    param: str | None = None
    stat: str | None = None

    @property
    def index(self) -> int | None:
        """The layer's position among layers of its kind: ``dense_3`` → 3."""
        match = re.search(r"_(\d+)$", self.layer)
        return int(match[1]) if match else None


_GRAD = re.compile(
    rf"^{GRAD_NORM}/(?P<layer>[^/]+)(?:/(?P<param>[^/]+))??(?:/(?P<stat>mean|max))?$"
)
_RATIO = re.compile(rf"^{UPDATE_RATIO}/(?P<layer>[^/]+)$")
_ACT = re.compile(rf"^{ACT}/(?P<layer>[^/]+)/(?P<stat>{'|'.join(ACT_STATS)})$")
_WEIGHT = re.compile(rf"^{WEIGHT_NORM}/(?P<layer>[^/]+)$")
_OUTPUT = re.compile(rf"^{OUTPUT}/(?P<stat>{'|'.join(OUTPUT_STATS)}|class_\d+)$")
_UNDERFLOW = re.compile(rf"^{AMP}/{UNDERFLOW}/(?P<layer>[^/]+)$")


def parse_metric(key: str) -> MetricKey | None:
    """The parts of a statistic's key; None for any other metric (``val/loss``, ``lr``)."""
    if match := _GRAD.match(key):
        layer, param = match["layer"], match["param"]
        if (layer == GLOBAL) == (param is not None):  # global has no param, a layer has one
            return None
        return MetricKey(GRAD_NORM, layer, param, match["stat"])
    if match := _RATIO.match(key):
        return MetricKey(UPDATE_RATIO, match["layer"])
    if match := _ACT.match(key):
        return MetricKey(ACT, match["layer"], stat=match["stat"])
    if match := _WEIGHT.match(key):
        return MetricKey(WEIGHT_NORM, match["layer"])
    if match := _OUTPUT.match(key):
        return MetricKey(OUTPUT, LOGITS, stat=match["stat"])
    if match := _UNDERFLOW.match(key):
        return MetricKey(AMP, match["layer"], stat=UNDERFLOW)
    return None
