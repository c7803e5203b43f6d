"""Benchmark every linear_scan implementation against a memory-copy baseline.

For each implementation: compile time, forward ms and forward+backward ms (grad of
sum(h) w.r.t. a and b), steady state = median of N timed runs after warm-up, each
ended with ``block_until_ready``. The copy baseline is a jitted ``x + 0`` of one
``[B, T, D]`` array (checked to write a fresh buffer with the same values).

Bandwidth fraction of copy (forward):

    (bytes of a + b + h) / t_fwd   /   (2 * array bytes) / t_copy   =  1.5 * t_copy / t_fwd

i.e. how close the forward gets to streaming its three arrays at copy speed.

A second baseline is the machine's copy bandwidth: NumPy ``np.copyto`` of the same array
into an existing (already faulted-in) buffer, with no page faults of a fresh allocation;
``bandwidth_fraction_of_numpy_copy`` rates the forward against it. Both copy timings are
interleaved with the implementations' so a noisy machine hits all alike.

Usage:
    python tools/bench_scan.py                       # B=8, T=4096, D=512, float32
    python tools/bench_scan.py --quick               # small shapes, a smoke test
    python tools/bench_scan.py --sweep               # also chunk sizes / unrolls
    python tools/bench_scan.py --batch 4 --time 2048 --channels 256 --dtype bfloat16
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from birdie_jax.kernels.linear_scan import api, config as config_lib, xla


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return "unknown"


def machine_info() -> dict:
    return {
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _timed(fn, args, warmup: int, repeats: int):
    """Returns (compile seconds, list of steady-state seconds)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, times


def _copy_fn():
    return lambda x: x + jnp.zeros((), x.dtype)


def check_copy_really_copies(x) -> None:
    y = jax.jit(_copy_fn())(x)
    jax.block_until_ready(y)
    if y.unsafe_buffer_pointer() == x.unsafe_buffer_pointer():
        raise RuntimeError("copy baseline was elided: output aliases the input buffer")
    if not bool(jnp.array_equal(x, y)):
        raise RuntimeError("copy baseline changed the values")


def numpy_copy_times(x, repeats: int) -> list[float]:
    """Seconds of ``np.copyto`` of x into an existing buffer (written once before timing)."""
    src = np.asarray(x)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return times


def implementations(backend: str, sweep: bool):
    """(row name, callable(a, b) -> (h, h_last)) for every available implementation."""
    cfg = config_lib.default_config(backend)
    rows = []
    for name in api.IMPLEMENTATION_NAMES:
        if not api.is_available(name, backend):
            continue
        rows.append((name, lambda a, b, name=name: api.linear_scan(a, b, implementation=name)))
    if sweep:
        for chunk in (32, 64, 128, 256):
            for unroll in (1, 2, 4, 8):
                if (chunk, unroll) == (cfg.chunk_size, cfg.chunk_unroll):
                    continue
                rows.append(
                    (
                        f"chunked C={chunk} unroll={unroll}",
                        lambda a, b, c=chunk, u=unroll: xla.linear_scan_chunked(
                            a, b, chunk_size=c, unroll=u
                        ),
                    )
                )
        for unroll in (2, 8, 32):
            rows.append(
                (
                    f"scan unroll={unroll}",
                    lambda a, b, u=unroll: xla.linear_scan_scan(a, b, unroll=u),
                )
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--time", type=int, default=4096)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="B=2, T=256, D=64, 5 repeats")
    parser.add_argument("--sweep", action="store_true", help="also chunk sizes and unrolls")
    parser.add_argument("--impls", default="", help="comma-separated row names to keep")
    parser.add_argument("--out", default="bench_results/bench_scan.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.time, args.channels, args.repeats = 2, 256, 64, 5

    backend = jax.default_backend()
    dtype = jnp.dtype(args.dtype)
    shape = (args.batch, args.time, args.channels)
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.uniform(key_a, shape, jnp.float32, 0.5, 1.0).astype(dtype)
    b = jax.random.normal(key_b, shape, jnp.float32).astype(dtype)
    array_bytes = a.size * dtype.itemsize

    check_copy_really_copies(a)
    copy_compile_s, copy_times = _timed(_copy_fn(), (a,), args.warmup, args.repeats)
    np_copy_times = numpy_copy_times(a, args.repeats)

    info = machine_info()
    print(f"linear_scan benchmark: B={shape[0]} T={shape[1]} D={shape[2]} {dtype.name}")
    print(f"  jax {info['jax']} backend={backend} cpus={info['cpu_count']} ({info['cpu_model']})")
    print(f"  {info['platform']}")

    wanted = {s.strip() for s in args.impls.split(",") if s.strip()}
    results = []
    for name, fn in implementations(backend, args.sweep):
        if wanted and name not in wanted:
            continue

        def loss(a, b, fn=fn):
            return jnp.sum(fn(a, b)[0].astype(jnp.float32))

        fwd_compile_s, fwd_times = _timed(fn, (a, b), args.warmup, args.repeats)
        bwd_compile_s, bwd_times = _timed(
            jax.grad(loss, argnums=(0, 1)), (a, b), args.warmup, args.repeats
        )
        # Interleave copy timings so a noisy machine hits both alike.
        copy_times += _timed(_copy_fn(), (a,), 1, 3)[1]
        np_copy_times += numpy_copy_times(a, 3)
        results.append(
            {
                "name": name,
                "compile_fwd_s": fwd_compile_s,
                "compile_fwd_bwd_s": bwd_compile_s,
                "fwd_ms": 1e3 * statistics.median(fwd_times),
                "fwd_bwd_ms": 1e3 * statistics.median(bwd_times),
                "fwd_ms_min": 1e3 * min(fwd_times),
                "fwd_bwd_ms_min": 1e3 * min(bwd_times),
            }
        )
        print(f"  measured {name}", file=sys.stderr, flush=True)

    copy_ms = 1e3 * statistics.median(copy_times)
    copy_gbps = 2 * array_bytes / (copy_ms * 1e-3) / 1e9
    np_copy_ms = 1e3 * statistics.median(np_copy_times)
    np_copy_gbps = 2 * array_bytes / (np_copy_ms * 1e-3) / 1e9
    for r in results:
        r["fwd_gbps"] = 3 * array_bytes / (r["fwd_ms"] * 1e-3) / 1e9
        r["bandwidth_fraction_of_copy"] = r["fwd_gbps"] / copy_gbps
        r["bandwidth_fraction_of_numpy_copy"] = r["fwd_gbps"] / np_copy_gbps
        r["fwd_bwd_over_fwd"] = r["fwd_bwd_ms"] / r["fwd_ms"]

    header = f"{'implementation':28s} {'compile s':>9s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'GB/s':>7s} {'x copy bw':>9s}"
    print()
    print(f"copy baseline (x + 0, one array, {array_bytes / 2**20:.0f} MiB): {copy_ms:.2f} ms = {copy_gbps:.2f} GB/s (read+write)")
    print(f"numpy copy into an existing buffer: {np_copy_ms:.2f} ms = {np_copy_gbps:.2f} GB/s (read+write)")
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['name']:28s} {r['compile_fwd_s']:9.2f} {r['fwd_ms']:9.2f} {r['fwd_bwd_ms']:11.2f} "
            f"{r['fwd_gbps']:7.2f} {r['bandwidth_fraction_of_copy']:9.2f} "
            f"(x numpy copy {r['bandwidth_fraction_of_numpy_copy']:.2f})"
        )

    payload = {
        "machine": info,
        "shape": {"batch": shape[0], "time": shape[1], "channels": shape[2], "dtype": dtype.name},
        "repeats": args.repeats,
        "warmup": args.warmup,
        "default_implementation": api.default_implementation(backend),
        "copy": {
            "ms": copy_ms,
            "gbps": copy_gbps,
            "array_bytes": array_bytes,
            "compile_s": copy_compile_s,
            "what": "jitted x + 0 into a fresh buffer",
        },
        "numpy_copy": {"ms": np_copy_ms, "gbps": np_copy_gbps, "what": "np.copyto into an existing buffer"},
        "implementations": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
