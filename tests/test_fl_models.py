"""The CNN and MLP and their flat parameter vectors (dtfl_env.fl.models, config)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtfl_env.fl import (
    flatten_params,
    make_model,
    unflatten_params,
)


# ---------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_flatten_unflatten_round_trip(name: str) -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    model = make_model(name, seed=5)
    assert torch.equal(torch.rand(3), before)  # the global RNG is left alone
    vec = flatten_params(model)
    assert vec.dtype == np.float32 and vec.ndim == 1
    assert vec.size == sum(p.numel() for p in model.parameters())
    back = unflatten_params(vec, model)
    assert list(back) == [n for n, _ in model.named_parameters()]
    assert np.array_equal(flatten_params(back), vec)
    assert np.array_equal(flatten_params(make_model(name, seed=5)), vec)
    with pytest.raises(ValueError, match="vec"):
        unflatten_params(vec[:-1], model)
    with pytest.raises(ValueError, match="model"):
        make_model("resnet")


def test_model_parameters_table_matches_the_torch_models():
    from dtfl_env.fl.config import MODEL_PARAMETERS, model_size_bits
    from dtfl_env.fl.models import make_model, n_params

    for name, count in MODEL_PARAMETERS.items():
        assert n_params(make_model(name, seed=0)) == count
    assert model_size_bits("cnn") == 32 * 21_840  # about 0.70 Mbit
    with pytest.raises(ValueError, match="model"):
        model_size_bits("resnet")
