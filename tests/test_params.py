"""Each kernel's parameters are declared once, next to the kernel (``kernels/<family>/params.py``):
the registry lists the kernel's own declaration, with the kernel's own defaults and bounds."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import hpcjobs.kernels as K
from hpcjobs import registry
from hpcjobs.kernels._params import REQUIRED, Param, Params
from hpcjobs.kernels._validation import InvalidInput, InvalidType

# registry parameters that describe an input rather than a kernel argument
_INPUT_PARAMS = {("discords", "m"), ("motifs", "m")}


@pytest.mark.parametrize("name", sorted(registry.all_kernels()))
def test_registered_parameters_are_the_kernels_own(name):
    spec = registry.get(name)
    kernel = getattr(K, name)
    declared = getattr(kernel, "params", Params(name))
    signature = inspect.signature(kernel)
    for p in spec.params:
        if (name, p.name) in _INPUT_PARAMS:
            continue
        assert declared[p.name] is p, f"{name}.{p.name} is not the kernel's declaration"
        arg = signature.parameters[p.name]
        default = REQUIRED if arg.default is inspect.Parameter.empty else arg.default
        assert default == p.default or default is p.default, (name, p.name)


def test_a_declaration_that_disagrees_with_the_signature_fails_at_import():
    declared = Params("f", Param("n", "int", 3, low=1))
    with pytest.raises(TypeError, match="defaults to 4 in its signature but 3"):
        declared(lambda n=4: n)
    with pytest.raises(TypeError, match="no parameter 'n'"):
        declared(lambda m=3: m)


def test_python_calls_and_job_files_get_the_same_words():
    import numpy as np

    X = np.zeros((10, 2))
    with pytest.raises(InvalidInput) as python:
        K.kmeans(X, 2, max_iter=0)
    with pytest.raises(InvalidInput) as job:
        registry.get("kmeans").validate_params({"n_clusters": 2, "max_iter": 0})
    assert str(python.value) == str(job.value) == (
        "The 'max_iter' parameter of kmeans must be an int in the range [1, inf). Got 0 "
        "instead.")
    with pytest.raises(InvalidType):  # (a TypeError too, as before)
        K.pyramid(np.ones((4, 4)), levels="2")
    assert K.lttb(None, np.arange(2000.0)).shape == (1000,)  # the declared default


def test_registry_reads_declarations_without_numba():
    code = ("import sys; from hpcjobs import registry; registry.all_kernels(); "
            "print([m for m in ('numba', 'dask', 'zarr') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
