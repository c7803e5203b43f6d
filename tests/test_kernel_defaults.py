"""The backend → default implementation table of every kernel API, and its clear errors.

The rule (kernels/dispatch.py, docs/kernels.md): a backend's default is an implementation
verified on that backend; Pallas is opt-in until tools/check_kernels.py has passed on
that hardware. No Pallas kernel has run on an accelerator in this project, so every
default is an XLA form. Changing a default means changing this test with the evidence.
"""

import jax.numpy as jnp
import pytest

from birdie_jax.config import ModelConfig
from birdie_jax.errors import BirdieError, ConfigError
from birdie_jax.kernels import linear_scan
from birdie_jax.kernels.linear_attention import api as attention_api
from birdie_jax.kernels.linear_attention import linear_attention
from birdie_jax.kernels.dispatch import ImplementationUnavailableError
from birdie_jax.kernels.linear_scan import api as scan_api
from birdie_jax.kernels.ssd import api as ssd_api
from birdie_jax.kernels.ssd import ssd

SCAN_DEFAULTS = {"cpu": "chunked", "gpu": "associative", "tpu": "chunked"}


def test_linear_scan_default_table():
    assert scan_api.DEFAULT_IMPLEMENTATIONS == SCAN_DEFAULTS
    for backend, name in SCAN_DEFAULTS.items():
        assert scan_api.default_implementation(backend) == name
    assert scan_api.default_implementation("rocm-or-unknown") == "chunked"


def test_pallas_is_available_only_where_a_kernel_exists():
    assert scan_api.is_available("pallas", "tpu") and scan_api.is_available("pallas", "gpu")
    assert not scan_api.is_available("pallas", "cpu")
    assert scan_api.pallas_module("tpu").__name__.endswith("linear_scan.pallas_tpu")
    assert scan_api.pallas_module("gpu").__name__.endswith("linear_scan.pallas_gpu")


def test_pallas_on_cpu_is_one_clear_error_naming_the_default():
    a = jnp.ones((1, 4, 3))
    with pytest.raises(ImplementationUnavailableError) as info:
        linear_scan(a, a, implementation="pallas")
    message = str(info.value)
    assert "no Pallas kernel for backend 'cpu'" in message and "implementation='chunked'" in message
    assert isinstance(info.value, BirdieError)  # the CLI prints it as one "error:" line


def test_unknown_implementation_names_the_valid_ones():
    a = jnp.ones((1, 4, 3))
    with pytest.raises(ConfigError, match="unknown implementation 'triton'; valid names are reference, scan, "
                                          "associative, chunked, pallas"):
        linear_scan(a, a, implementation="triton")
    for field in ("scan_implementation", "ssd_implementation", "la_implementation"):
        with pytest.raises(ConfigError, match=f"model.{field} must be one of .*pallas; got 'fast'"):
            ModelConfig(**{field: "fast"})
        assert getattr(ModelConfig(**{field: "pallas"}), field) == "pallas"  # the opt-in


@pytest.mark.parametrize("flavour,block_t,block_d,match", [
    ("tpu", 8, 100, r"block_d=100, which is not a multiple of 128 .* implementation='chunked'"),
    ("tpu", 12, 128, r"block_t=12 is not a multiple of 8 .* implementation='chunked'"),
    ("gpu", 8, 100, r"block_d=100 is not a power of two .* implementation='associative'"),
])
def test_untileable_blocks_are_one_clear_error(flavour, block_t, block_d, match):
    kernel = scan_api.pallas_module(flavour).linear_scan_pallas
    a = jnp.ones((1, 4, 200))
    with pytest.raises(ImplementationUnavailableError, match=match):
        kernel(a, a, block_t=block_t, block_d=block_d, interpret=True)


def test_ssd_default_table_and_errors():
    assert ssd_api.DEFAULT_IMPLEMENTATIONS == {"cpu": "chunked", "gpu": "chunked", "tpu": "chunked"}
    assert ssd_api.pallas_module("tpu").__name__.endswith("ssd.pallas_tpu")
    assert ssd_api.pallas_module("gpu").__name__.endswith("ssd.pallas_gpu")
    x, dt, A, bc = jnp.ones((1, 8, 2, 16)), jnp.ones((1, 8, 2)), -jnp.ones((2,)), jnp.ones((1, 8, 1, 16))
    with pytest.raises(ImplementationUnavailableError, match="no Pallas kernel for backend 'cpu'.*'chunked'"):
        ssd(x, dt, A, bc, bc, implementation="pallas")
    with pytest.raises(ConfigError, match="unknown implementation 'flash'; valid names are reference, chunked, pallas"):
        ssd(x, dt, A, bc, bc, implementation="flash")
    with pytest.raises(ImplementationUnavailableError, match=r"chunk_size=12 is not a multiple of 8 .*'chunked'"):
        ssd_api.pallas_module("tpu").ssd_pallas(x, dt, A, bc, bc, chunk_size=12, interpret=True)
    with pytest.raises(ImplementationUnavailableError, match=r"head_dim .* = 3 is not a power of two >= 16.*'chunked'"):
        ssd_api.pallas_module("gpu").ssd_pallas(x[..., :3], dt, A, bc, bc, chunk_size=16, interpret=True)


def test_linear_attention_default_table_and_errors():
    assert attention_api.DEFAULT_IMPLEMENTATIONS == {"cpu": "chunked", "gpu": "chunked", "tpu": "chunked"}
    assert attention_api.pallas_module("tpu").__name__.endswith("linear_attention.pallas_tpu")
    assert attention_api.pallas_module("gpu").__name__.endswith("linear_attention.pallas_gpu")
    q, v = jnp.ones((1, 8, 1, 16)), jnp.ones((1, 8, 1, 16))
    with pytest.raises(ImplementationUnavailableError, match="no Pallas kernel for backend 'cpu'.*'chunked'"):
        linear_attention(q, q, v, implementation="pallas")
    with pytest.raises(ConfigError, match="unknown implementation 'flash'; valid names are .*chunked.*pallas"):
        linear_attention(q, q, v, implementation="flash")
    with pytest.raises(ImplementationUnavailableError, match=r"chunk_size=12 is not a multiple of 8 .*'chunked'"):
        attention_api.pallas_module("tpu").linear_attention_pallas(q, q, v, chunk_size=12, interpret=True)
    with pytest.raises(ImplementationUnavailableError, match=r"value width p = 3 is not a power of two >= 16.*'chunked'"):
        attention_api.pallas_module("gpu").linear_attention_pallas(q, q, v[..., :3], chunk_size=16, interpret=True)
