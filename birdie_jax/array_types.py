"""Array type aliases with an axis legend, used in signatures and docstrings.

Axis letters: b batch, t time, d model width, n recurrence width, h heads,
k head width, s cache length, v vocabulary, w convolution width.
Aliases are plain ``jax.Array`` at runtime; the strings document the shape.
"""

from typing import Annotated

import jax

Array = jax.Array
Tokens = Annotated[Array, "int32[b t]"]
SegmentIds = Annotated[Array, "int32[b t]"]
PrefixMask = Annotated[Array, "bool[b t]"]
Hidden = Annotated[Array, "float[b t d]"]
HiddenStep = Annotated[Array, "float[b d]"]
Logits = Annotated[Array, "float32[b t v]"]
