"""(Prefix) linear attention with the Based Taylor feature map (JRT-RNN's PLA, jrt.md §1).

``linear_attention(q, k, v, *, k_enc=None, v_enc=None, encoder_mask=None, segment_ids=None,
initial_state=None, eps=1e-12, chunk_size=64, implementation=None)`` returns
``(y, (S, z))``; see :mod:`birdie_jax.kernels.linear_attention.api`.
``linear_attention_step`` is the constant-memory decode step.
"""

from .api import DEFAULT_EPS, DEFAULT_IMPLEMENTATIONS, IMPLEMENTATION_NAMES, linear_attention
from .reference import (linear_attention_reference, linear_attention_step, num_features, segment_runs,
                        taylor_features, zero_state)
from .xla import (kernel_matrix, linear_attention_chunked, linear_attention_quadratic,
                  linear_attention_recurrent)

__all__ = ["DEFAULT_EPS", "DEFAULT_IMPLEMENTATIONS", "IMPLEMENTATION_NAMES", "kernel_matrix", "linear_attention", "linear_attention_chunked",
           "linear_attention_quadratic", "linear_attention_recurrent", "linear_attention_reference",
           "linear_attention_step", "num_features", "segment_runs", "taylor_features", "zero_state"]
