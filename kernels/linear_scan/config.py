"""Block / chunk sizes for the linear-scan implementations, with per-backend defaults.

The numbers for CPU come from ``tools/bench_scan.py`` (2-core AMD EPYC, jax 0.10.2,
B=8, T=4096, D=512, f32; see docs/benchmarks.md). Accelerator numbers are starting
points taken from public kernels (recurrentgemma uses ``unroll=128`` for
``lax.scan`` on accelerators) and have not been tuned by this project.
"""

import dataclasses
from typing import Dict


@dataclasses.dataclass(frozen=True, slots=True)
class LinearScanConfig:
    """Tuning knobs of the linear-scan implementations.

    Attributes:
      chunk_size: target time-chunk length ``C`` of the "chunked" implementation.
        When ``T`` is not a multiple of it, a divisor of ``T`` within a factor of two
        of it is used if one exists, else ``T`` is padded with identity steps
        (``a=1, b=0``).
      chunk_unroll: ``unroll`` of the two ``fori_loop`` passes over the ``C``
        positions of a chunk.
      scan_unroll: ``unroll`` of the "scan" implementation's ``lax.scan``.
      block_t: time block of the Pallas kernels: rows per VMEM block on TPU (multiple
        of 8), rows per straight-line chunk on GPU.
      block_d: channel block of the Pallas kernels: a multiple of 128 on TPU (a ``D``
        not above it is one full-width block), a power of two on GPU.
    """

    chunk_size: int = 64
    chunk_unroll: int = 2
    scan_unroll: int = 1
    block_t: int = 256
    block_d: int = 128

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"LinearScanConfig.{field.name} must be a positive int, got {value!r}"
                )
        if self.block_t % 8:
            raise ValueError(f"LinearScanConfig.block_t must be a multiple of 8, got {self.block_t}")


# Per-backend defaults. CPU: measured with tools/bench_scan.py --sweep (B=8, T=4096,
# D=512 f32, 2 cores): chunk 32-128 with unroll 1-4 are all within run-to-run noise
# (~0.9-1.4x copy bandwidth forward); 256 is clearly slower, unroll 8 a bit slower and
# slower to compile. lax.scan gets slower with unroll > 1 on CPU (per-step latency).
# TPU/GPU: unmeasured starting points.
DEFAULT_CONFIGS: Dict[str, LinearScanConfig] = {
    "cpu": LinearScanConfig(chunk_size=64, chunk_unroll=2, scan_unroll=1),
    "gpu": LinearScanConfig(chunk_size=128, chunk_unroll=8, scan_unroll=128, block_t=16, block_d=128),
    "tpu": LinearScanConfig(chunk_size=128, chunk_unroll=8, scan_unroll=128, block_t=256, block_d=128),
}


def default_config(backend: str) -> LinearScanConfig:
    """Returns the default config for a ``jax.default_backend()`` name."""
    return DEFAULT_CONFIGS.get(backend, DEFAULT_CONFIGS["cpu"])
