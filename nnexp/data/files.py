"""The user's own data: a CSV file (header row required) or an NPZ archive.

CSV is parsed with the csv module and NumPy (pandas would cost ~0.5 s to import for nothing).
NPZ is opened with ``allow_pickle=False``: a data file must never be able to run code.
Every problem is reported as DatasetError naming the key, the value and what is allowed, with
line numbers (CSV) or row indices (NPZ) where the data itself is at fault.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnexp.data.dataset import Dataset, encode_labels, label_name, task_for
from nnexp.data.errors import bad, preview
from nnexp.data.specs import AUTO_MAX_CLASSES, DEFAULT_TARGET, FILE_SUFFIXES, FILE_TASKS


@dataclass
class Table:
    """What a reader hands back: numeric features, raw targets (numbers or text), and how to
    name a row in a message ("line 7" for CSV, "row 6" for NPZ)."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    where: Callable[[int], str]


# --- spec checks (cheap: no data is read) -----------------------------------------------------


def check_file(spec: Any) -> None:
    path = resolve_path(spec.path)
    if spec.task not in FILE_TASKS:
        raise bad("task", spec.task, f"must be one of {', '.join(FILE_TASKS)}")
    _CHECKS[path.suffix.lower()](path, spec)


def resolve_path(raw: str) -> Path:
    """The spec's path, checked to be an existing, non-empty file of a supported type."""
    if not raw:
        raise bad("path", raw, "is required: the CSV or NPZ file to load (dataset.path=...)")
    path = Path(os.path.expanduser(raw))
    if not path.exists():
        raise bad("path", raw, f"no such file (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise bad("path", raw, "is a directory, not a file")
    if not path.is_file():  # opening a FIFO would wait for a writer forever
        raise bad("path", raw, "is not a regular file (a FIFO, socket or device)")
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise bad("path", raw, f"unsupported file type; allowed: {', '.join(FILE_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise bad("path", raw, "the file is empty")
    try:
        path.open("rb").close()  # unreadable: said now, before any work
    except OSError as exc:
        raise bad("path", raw, f"cannot be read ({exc.strerror or exc})") from None
    return path


def _check_csv(path: Path, spec: Any) -> None:
    if len(delimiter_of(spec)) != 1:
        raise bad("delimiter", spec.delimiter, r"must be one character, e.g. ',' or ';' (or '\t')")
    with closing(_rows(path, spec)) as rows:  # closing: stop after the header line
        _feature_columns(_header(rows, spec), spec)


def _check_npz(path: Path, spec: Any) -> None:
    with _open_npz(path, spec) as archive:  # reads the zip directory only, not the arrays
        _require_keys(archive.files, spec)


# --- CSV ---------------------------------------------------------------------------------------


def delimiter_of(spec: Any) -> str:
    """``spec.delimiter``; a literal backslash-t (a tab is hard to type in a shell) means tab."""
    return "\t" if spec.delimiter == "\\t" else spec.delimiter


def _rows(path: Path, spec: Any) -> Generator[tuple[int, list[str]], None, None]:
    """(line number, fields) of each non-blank row; utf-8-sig drops an Excel byte-order mark."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter_of(spec))
        try:
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield reader.line_num, row
        except csv.Error as err:
            raise bad(
                "path", spec.path, f"line {reader.line_num} is not valid CSV: {err}"
            ) from None
        except UnicodeDecodeError:
            raise bad("path", spec.path, "is not a UTF-8 text file") from None


def _header(rows: Iterator[tuple[int, list[str]]], spec: Any) -> list[str]:
    """Parse the first row of ``rows`` as the header (names stripped, unique, non-empty)."""
    try:
        _, row = next(rows)
    except StopIteration:
        raise bad("path", spec.path, "has no header row (the file is blank)") from None
    header = [name.strip() for name in row]
    for i, name in enumerate(header):
        if not name:
            raise bad(
                "path", spec.path,
                f"header column {i + 1} has no name (a pandas index? write it with index=False)",
            )  # fmt: skip
        if header.index(name) != i:
            raise bad("path", spec.path, f"header names column {name!r} twice")
    return header


def target_of(spec: Any) -> str:
    """The target column / array key: ``spec.target``, or the format's default when None."""
    if spec.target is not None:
        return spec.target
    return DEFAULT_TARGET[Path(spec.path).suffix.lower()]


def _feature_columns(header: list[str], spec: Any) -> list[int]:
    target = target_of(spec)
    if target not in header:
        raise bad("target", target, f"no such column; the header has: {preview(header)}")
    for name in spec.ignore:
        if name not in header:
            raise bad(
                "ignore",
                list(spec.ignore),
                f"no column {name!r}; the header has: {preview(header)}",
            )
    skip = {target, *spec.ignore}
    columns = [i for i, name in enumerate(header) if name not in skip]
    if not columns:
        raise bad("path", spec.path, f"has no feature columns besides target {target!r}")
    return columns


def _read_csv(path: Path, spec: Any) -> Table:
    lines, cells = [], []
    with closing(_rows(path, spec)) as rows:
        header = _header(rows, spec)
        columns = _feature_columns(header, spec)
        for line, row in rows:
            if len(row) != len(header):
                raise bad(
                    "path", spec.path,
                    f"line {line} has {len(row)} fields but the header has {len(header)} "
                    f"(delimiter {spec.delimiter!r})",
                )  # fmt: skip
            lines.append(line)
            cells.append(row)
    if not cells:
        raise bad("path", spec.path, "has a header but no data rows")
    table = np.array(cells, dtype=str)
    names = [header[j] for j in columns]

    def where(i: int) -> str:
        return f"line {lines[i]}"

    X = _parse_numbers(table[:, columns], names, where, spec)
    y = _parse_target(table[:, header.index(target_of(spec))], where, spec)
    return Table(X, y, names, where)


def _parse_numbers(cells: np.ndarray, names: list[str], where: Any, spec: Any) -> np.ndarray:
    try:
        return cells.astype(np.float64)  # fast path: NumPy parses the whole block
    except ValueError:
        pass
    for j, name in enumerate(names):  # slow path: find the first bad cell to name it
        for i, cell in enumerate(cells[:, j]):
            try:
                float(cell)
            except ValueError:
                what = "an empty cell" if not cell.strip() else f"{str(cell)!r} is not a number"
                raise bad(
                    "path", spec.path,
                    f"{where(i)}, column {name!r}: {what}; feature columns must be numeric "
                    "(list text columns in dataset.ignore)",
                ) from None  # fmt: skip
    return np.array([[float(c) for c in row] for row in cells])  # Python accepts what NumPy won't


def _parse_target(cells: np.ndarray, where: Any, spec: Any) -> np.ndarray:
    """Numbers if every cell is one, otherwise the text labels (classification only)."""
    target = target_of(spec)
    empty = np.flatnonzero(np.char.str_len(np.char.strip(cells)) == 0)
    if empty.size:
        raise bad("target", target, f"{where(int(empty[0]))}: empty target cell")
    try:
        return cells.astype(np.float64)
    except ValueError:
        pass
    if spec.task == "regression":
        i = next(i for i, c in enumerate(cells) if not _is_float(c))
        raise bad(
            "target", target,
            f"{where(i)}: {str(cells[i])!r} is not a number; task=regression needs numeric targets",
        )  # fmt: skip
    return np.char.strip(cells)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- NPZ ---------------------------------------------------------------------------------------


def _open_npz(path: Path, spec: Any) -> Any:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise bad("path", spec.path, f"is not a readable .npz archive ({err})") from None
    if not hasattr(archive, "files"):  # a lone .npy array under an .npz name
        raise bad("path", spec.path, "holds a single .npy array, not an .npz archive (np.savez)")
    return archive


def _require_keys(present: list[str], spec: Any) -> None:
    for key, name in (("features", spec.features), ("target", target_of(spec))):
        if name not in present:
            raise bad(key, name, f"no such array in the .npz; it holds: {preview(present)}")


def _read_npz(path: Path, spec: Any) -> Table:
    target = target_of(spec)
    with _open_npz(path, spec) as archive:
        _require_keys(archive.files, spec)
        try:
            X, y = archive[spec.features], archive[target]
            names = archive["feature_names"] if "feature_names" in archive.files else None
        except ValueError as err:  # e.g. an object array, refused without pickle
            raise bad("path", spec.path, f"cannot be read without pickle ({err})") from None
    if X.ndim != 2:
        raise bad(
            "features", spec.features, f"has shape {X.shape}; must be 2-D (samples, features)"
        )
    if X.dtype.kind not in "biuf":
        raise bad("features", spec.features, f"has dtype {X.dtype}; must be numeric")
    if y.ndim not in (1, 2) or len(y) != len(X):
        raise bad(
            "target", target,
            f"has shape {y.shape} but {spec.features!r} has shape {X.shape}; "
            "need one target (row) per sample",
        )  # fmt: skip
    if y.dtype.kind not in "biufUS":
        raise bad("target", target, f"has dtype {y.dtype}; must be numeric or text labels")
    if len(X) == 0 or X.shape[1] == 0:
        raise bad("features", spec.features, f"has shape {X.shape}; needs rows and columns")
    if names is None or names.shape != (X.shape[1],):
        names = [f"x{i}" for i in range(X.shape[1])]
    y = y.astype(np.float64) if y.dtype.kind in "biu" else y
    y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    return Table(X.astype(np.float64), y, [str(n) for n in names], lambda i: f"row {i}")


# --- from a table to a Dataset -----------------------------------------------------------------


def load_file(spec: Any) -> Dataset:
    """Read, check finiteness, decide the task and encode labels (call check_file first)."""
    path = resolve_path(spec.path)
    try:
        table = _READERS[path.suffix.lower()](path, spec)
    except OSError as exc:  # a disk or network file system failing mid-read
        raise bad("path", spec.path, f"cannot be read ({exc.strerror or exc})") from None
    _require_finite(table, spec)
    task = _task(table.y, table.where, spec)
    if task == "regression":
        return Dataset(
            spec.name, table.X, table.y.astype(np.float64), task, table.feature_names, None
        )
    y, classes = encode_labels(table.y)
    return Dataset(spec.name, table.X, y, task, table.feature_names, classes)


def _require_finite(table: Table, spec: Any) -> None:
    bad_x = ~np.isfinite(table.X)
    if bad_x.any():
        counts = bad_x.sum(axis=0)
        first = np.argmax(bad_x, axis=0)  # first bad row per column
        parts = [
            f"{table.feature_names[j]!r} ({counts[j]}, first at {table.where(int(first[j]))})"
            for j in np.flatnonzero(counts)
        ]
        raise bad(
            "path", spec.path,
            f"{int(counts.sum())} NaN/inf feature values in column(s) {preview(parts, 5)}; "
            "clean or impute the data first",
        )  # fmt: skip
    if table.y.dtype.kind == "f":
        bad_y = ~np.isfinite(table.y.reshape(len(table.y), -1)).all(axis=1)
        if bad_y.any():
            raise bad(
                "target", target_of(spec),
                f"{int(bad_y.sum())} NaN/inf target values, first at "
                f"{table.where(int(np.argmax(bad_y)))}",
            )  # fmt: skip


def _task(y: np.ndarray, where: Any, spec: Any) -> str:
    """Resolve ``spec.task`` against the target values (see FileSpec for the ``auto`` rule)."""
    text = y.dtype.kind in "US"
    target = target_of(spec)
    if y.ndim == 2:  # several target columns: only regression makes sense
        if spec.task in ("binary", "multiclass"):
            raise bad(
                "task", spec.task, f"needs a single target column; {target!r} has {y.shape[1]}"
            )
        return "regression"
    if spec.task == "regression":
        return "regression"
    if not text:
        fractional = np.flatnonzero(y != np.round(y))
        if spec.task == "auto" and fractional.size:
            return "regression"
        if fractional.size:
            i = int(fractional[0])
            raise bad(
                "target", target,
                f"{where(i)} has label {y[i].item()!r}, not an integer; task={spec.task} needs "
                "integer class labels (or use task=regression)",
            )  # fmt: skip
    classes = np.unique(y)
    if spec.task == "auto" and not text and len(classes) > AUTO_MAX_CLASSES:
        return "regression"
    names = preview([label_name(c) for c in classes], 10)
    if len(classes) < 2:
        raise bad("target", target, f"has a single class ({names}); classification needs 2+")
    if spec.task == "binary" and len(classes) != 2:
        raise bad(
            "task", spec.task,
            f"needs exactly 2 classes; {target!r} has {len(classes)} classes ({names}); "
            "use task=multiclass or task=auto",
        )  # fmt: skip
    return "multiclass" if spec.task == "multiclass" else task_for(len(classes))


_CHECKS = {".csv": _check_csv, ".npz": _check_npz}
_READERS = {".csv": _read_csv, ".npz": _read_npz}
