"""Property-based parity: any batch, channels, basis size, spatial rank and extent, weight
scale, module and its options (gate, SE's activation), conversion direction and mode, in every dtype.

Each example is one :func:`parity.proof.check.run_case`: the source framework's module (weights
multiplied by a random scale) is converted with the public converters, both frameworks run
on the same input, and each is compared with the float64 reference; the error must stay
within the tolerance derived from the dtype's eps and the reduction lengths
(:func:`parity.proof.check.bound_limit`). Profiles: ``ci`` (default) and ``thorough``
(``HYPOTHESIS_PROFILE=thorough``), see conftest.py.
"""

from hypothesis import given, note, strategies as st

from parity.proof.check import DIRECTIONS, MODES, Case, cases, run_case
from prcm import CATALOG, MODULES
from fresh import run_fresh


@st.composite
def parity_cases(draw, dtypes: tuple[str, ...], log10_scale: float) -> Case:
    spatial = draw(st.lists(st.integers(1, 17), min_size=1, max_size=3))
    module = draw(st.sampled_from(MODULES))
    return Case(
        module=module,
        direction=draw(st.sampled_from(DIRECTIONS)),
        mode=draw(st.sampled_from(MODES)),
        dtype=draw(st.sampled_from(dtypes)),
        shape=(draw(st.integers(1, 5)), draw(st.integers(1, 96)), *spatial),
        num_basis=draw(st.integers(1, 16)),
        seed=draw(st.integers(0, 2**16)),
        weight_scale=10.0 ** draw(st.floats(-log10_scale, log10_scale)),
        options=tuple(draw(st.sampled_from(CATALOG[module].variants)).items()),
    )


@given(parity_cases(("float32",), log10_scale=2.0))
def test_float32_any_shape_and_weight_scale(case):
    result = run_case(case)
    note(str(result))
    assert result.bound_error <= result.bound_limit, result


# bfloat16 keeps float32's range; float16 overflows at 65504, so its weights stay within 10x.
@given(parity_cases(("bfloat16",), log10_scale=2.0))
def test_bfloat16_any_shape_and_weight_scale(case):
    result = run_case(case)
    note(str(result))
    assert result.bound_error <= result.bound_limit, result


@given(parity_cases(("float16",), log10_scale=1.0))
def test_float16_any_shape_and_weight_scale(case):
    result = run_case(case)
    note(str(result))
    assert result.bound_error <= result.bound_limit, result


def test_float64_in_x64_mode():
    """float64 needs JAX's x64 mode, which is process-wide: run the sweep in a process of its own."""
    done = run_fresh("import jax, runpy; jax.config.update('jax_enable_x64', True); "
                     "runpy.run_module('parity', run_name='__main__', alter_sys=True)",
                     argv=["parity", "--quick", "--dtypes", "float64"])  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = len(list(cases(dtypes=("float64",), per_row=1)))  # every module and variant
    assert f"all {expected} cases passed" in done.stdout and "float64: worst forward" in done.stdout


def test_float64_without_x64_is_refused_clearly():
    import pytest

    with pytest.raises(ValueError, match="float64 parity needs JAX's x64 mode"):
        run_case(Case("PRCM", "torch->nnx", "eval", "float64", (1, 4, 3, 3), 2))
