"""`verify`: a module in, the pass, the same module out when every invariant holds, and an error naming the
broken one when not."""

from __future__ import annotations

import pytest

from embmap.ir.errors import VerificationError
from embmap.ir.module import Module
from embmap.passes import PassContext
from embmap.passes.verify import VerifyPass
from tests.conftest import run

UP_TO_OPTIONS = "profile,select-strategy,partition"


def test_verify_pass_catches_a_broken_module(lowered: Module) -> None:
    m = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{method=greedy}},schedule")
    assert m.items is not None
    assert VerifyPass().apply(m, PassContext()) is m
    first = m.items[0]
    broken = m.model_copy(
        update={"items": (first.model_copy(update={"samples": (0, first.samples[1] - 1)}), *m.items[1:])}
    )
    with pytest.raises(VerificationError, match="cover"):
        VerifyPass().apply(broken, PassContext())
