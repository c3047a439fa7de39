"""The curate flow's signature and `CurateParams` describe the same parameters."""

from __future__ import annotations

import inspect

from flows.curate import curate
from winnow.params import CurateParams


def test_flow_signature_and_parameter_model_agree():
    signature = inspect.signature(curate.fn)
    fields = CurateParams.model_fields
    assert list(signature.parameters) == list(fields)
    for name, param in signature.parameters.items():
        field = fields[name]
        default = field.get_default(call_default_factory=True)
        assert param.default is not inspect.Parameter.empty or field.is_required(), name
        if not field.is_required():
            assert param.default == default, name
        annotation = CurateParams.__annotations__[name]
        assert str(param.annotation) == str(annotation), name


def test_every_parameter_is_described_in_the_ui_form():
    docs = inspect.getdoc(curate.fn)
    for name in CurateParams.model_fields:
        assert f"    {name}: " in docs, name
