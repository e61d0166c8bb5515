"""The effects of the options of the tutorial's last lessons (issue 16), in the style of
test_option_effects.py (composed configs through the CLI's own `run` and `build`):
`model.residual`, `model.hidden=[]`, `trainer.precision`, `trainer.loss_scale`."""

from __future__ import annotations

import numpy as np
import pytest
from test_option_effects import built, run_cli  # noqa: F401 (run_cli: a fixture)

from nnexp.nn import Dense, Residual, Skip
from nnexp.train.export import Predictor

# --- model.residual --------------------------------------------------------------------------


def test_residual_wraps_every_hidden_block_and_projects_where_the_width_changes():
    plain = built("model.hidden=[8,8,4]").model
    res = built("model.hidden=[8,8,4]", "model.residual=true").model
    assert not any(isinstance(m, Skip | Residual) for m in plain.modules)
    blocks = [m for m in res.modules if isinstance(m, Residual)]
    assert [m.name for m in res.modules if isinstance(m, Skip)] == ["skip_0", "skip_1", "skip_2"]
    assert [b.name for b in blocks] == ["residual_0", "residual_1", "residual_2"]
    # 2 → 8: a projection; 8 → 8: the identity; 8 → 4: a projection.
    assert [None if b.P is None else b.P.value.shape for b in blocks] == [(2, 8), None, (8, 4)]
    assert isinstance(res.modules[-1], Dense)  # the output layer has no shortcut
    # The same Dense layers otherwise.
    widths = [m.W.value.shape for m in res.modules if isinstance(m, Dense)]
    assert widths == [m.W.value.shape for m in plain.modules if isinstance(m, Dense)]


def test_residual_training_checkpoints_and_serves(run_cli, tmp_path):  # noqa: F811
    trainer = run_cli(
        "model.residual=true",
        "model.hidden=[6,6]",
        "trainer.epochs=3",
        "trainer.stats=[update_ratio,weight_norm]",
    )
    names = [p.name for p in trainer.params]
    assert "residual_0/W" in names and "residual_1/W" not in names  # 2→6 projected, 6→6 not
    keys = trainer.history[-1].keys()
    assert {"update_ratio/residual_0", "weight_norm/residual_0"} <= keys
    i = names.index("residual_0/W")
    assert (trainer.initial[i] != trainer.params[i].value).any()  # the projection learns
    predictor = Predictor(trainer.run_dir / "model")  # the bundle rebuilds the architecture
    served = list(predictor.model.parameters())
    assert [p.name for p in served] == names
    for p, q in zip(served, trainer.params, strict=True):
        np.copyto(p.value, q.value)
    X = trainer.data.X_val
    np.testing.assert_array_equal(
        predictor.model.forward(X), trainer.model.forward(X, training=False)
    )
    assert predictor.spec["mlp"]["residual"] is True


@pytest.mark.parametrize("hidden", ["[]", "[4]"])
def test_no_hidden_layer_builds_a_linear_model(hidden):
    model = built(f"model.hidden={hidden}").model
    dense = [m for m in model.modules if isinstance(m, Dense)]
    assert len(dense) == (1 if hidden == "[]" else 2)
    assert dense[0].W.value.shape[0] == 2  # two moons' two features
