"""scikit-learn's generators and bundled data sets (shipped with the package: no download).

``sklearn.datasets`` costs over a second to import, so it is imported inside each loader: a run
on a CSV file or on our own spirals never pays for it. The ``check_*`` functions catch the
cross-field mistakes scikit-learn would only report deep inside (or silently "fix").
"""

from __future__ import annotations

from typing import Any

from nnexp.data.dataset import Dataset, classification, feature_names, label_name, regression
from nnexp.data.errors import bad
from nnexp.data.moons import make_moons
from nnexp.data.scaling import scale_column


def _sklearn() -> Any:
    import sklearn.datasets  # lazy on purpose: ~1.3 s

    return sklearn.datasets


def _digits(n: int) -> list[str]:
    return [str(k) for k in range(n)]


# --- generators --------------------------------------------------------------------------------


def load_moons(spec: Any) -> Dataset:
    X, y = make_moons(spec.n_samples, spec.noise, spec.seed)  # sklearn's, without its import
    if spec.scale_feature is not None:
        X = scale_column(X, spec.scale_feature, spec.feature_scale)
    return classification(spec.name, X, y, feature_names(2), _digits(2))


def load_circles(spec: Any) -> Dataset:
    X, y = _sklearn().make_circles(
        n_samples=spec.n_samples, noise=spec.noise, factor=spec.factor, random_state=spec.seed
    )
    return classification(spec.name, X, y, feature_names(2), _digits(2))


def load_blobs(spec: Any) -> Dataset:
    X, y = _sklearn().make_blobs(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        centers=spec.centers,
        cluster_std=spec.cluster_std,
        random_state=spec.seed,
    )
    return classification(spec.name, X, y, feature_names(spec.n_features), _digits(spec.centers))


def load_classification(spec: Any) -> Dataset:
    X, y = _sklearn().make_classification(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        n_informative=spec.n_informative,
        n_redundant=spec.n_redundant,
        n_classes=spec.n_classes,
        n_clusters_per_class=spec.n_clusters_per_class,
        weights=None if spec.weights is None else [float(w) for w in spec.weights],
        flip_y=spec.flip_y,
        class_sep=spec.class_sep,
        random_state=spec.seed,
    )
    names = feature_names(spec.n_features)
    return classification(spec.name, X, y, names, _digits(spec.n_classes))


def check_classification(spec: Any) -> None:
    used = spec.n_informative + spec.n_redundant
    if used > spec.n_features:
        raise bad(
            "n_features",
            spec.n_features,
            f"must be >= n_informative + n_redundant = {spec.n_informative} + {spec.n_redundant}",
        )
    clusters = spec.n_classes * spec.n_clusters_per_class
    if clusters > 2**spec.n_informative:
        raise bad(
            "n_informative",
            spec.n_informative,
            f"2**n_informative must be >= n_classes * n_clusters_per_class = {clusters}",
        )
    if spec.weights is not None:
        weights = [float(w) for w in spec.weights]
        n = spec.n_classes
        if len(weights) not in (n, n - 1) or not all(0 < w < 1 for w in weights):
            raise bad(
                "weights",
                weights,
                f"must be {n} (or {n - 1}) class proportions, each > 0 and < 1",
            )
        total = sum(weights)
        if (len(weights) == n and abs(total - 1) > 1e-6) or (len(weights) == n - 1 and total >= 1):
            raise bad("weights", weights, f"must sum to 1 (or to < 1 with {n - 1} values)")


def load_regression(spec: Any) -> Dataset:
    X, y = _sklearn().make_regression(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        n_informative=spec.n_informative,
        n_targets=spec.n_targets,
        bias=spec.bias,
        noise=spec.noise,
        random_state=spec.seed,
    )
    return regression(spec.name, X, y, feature_names(spec.n_features))


def check_regression(spec: Any) -> None:
    if spec.n_informative > spec.n_features:
        # scikit-learn would silently clip it to n_features
        raise bad("n_informative", spec.n_informative, f"must be <= n_features={spec.n_features}")


def load_friedman1(spec: Any) -> Dataset:
    X, y = _sklearn().make_friedman1(
        n_samples=spec.n_samples,
        n_features=spec.n_features,
        noise=spec.noise,
        random_state=spec.seed,
    )
    return regression(spec.name, X, y, feature_names(spec.n_features))


# --- bundled sets --------------------------------------------------------------------------------


def _bundled_classes(spec: Any, loader: str, **kwargs: Any) -> Dataset:
    bunch = getattr(_sklearn(), loader)(**kwargs)
    n_classes = int(bunch.target.max()) + 1  # labels are already 0..C-1
    classes = [label_name(bunch.target_names[k]) for k in range(n_classes)]
    names = [str(f) for f in bunch.feature_names]
    return classification(spec.name, bunch.data, bunch.target, names, classes)


def load_digits(spec: Any) -> Dataset:
    return _bundled_classes(spec, "load_digits", n_class=spec.n_class)


def load_iris(spec: Any) -> Dataset:
    return _bundled_classes(spec, "load_iris")


def load_wine(spec: Any) -> Dataset:
    return _bundled_classes(spec, "load_wine")


def load_breast_cancer(spec: Any) -> Dataset:
    return _bundled_classes(spec, "load_breast_cancer")


def load_diabetes(spec: Any) -> Dataset:
    bunch = _sklearn().load_diabetes(scaled=spec.scaled)
    return regression(spec.name, bunch.data, bunch.target, [str(f) for f in bunch.feature_names])
