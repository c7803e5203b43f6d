"""Check every implementation of every kernel against its reference on this machine, and time it.

Run it on the hardware you train on (CPU, GPU or TPU). For each kernel (``linear_scan``,
``ssd``, ``linear_attention``) and each implementation its API knows (``pallas`` included), it compares values
and gradients with the sequential fp32 reference (tolerances of the test suite: 1e-5 for
float32, 1e-2 for bfloat16 inputs, relative to the largest reference magnitude; float32
comparisons run with ``jax.default_matmul_precision("highest")``) and measures compile time
and steady-state time (median of ``--repeats`` runs after a warm-up, each ended with
``block_until_ready``) of the forward and of forward+backward at the default matmul precision.
An implementation that cannot run on this backend is recorded as ``unavailable`` with the reason.

On CPU the Pallas kernels have no backend; with ``--small`` the tool also runs both flavours
(TPU and GPU kernel bodies) in interpret mode for correctness (their times are not meaningful).

Shapes: linear_scan ``a, b`` [B 8, T 4096, D 2048]; ssd is Mamba-2 at d_model 2048 (64 heads of
64, state 128, one group, chunk 64, T 4096, B 8), its gradient checked at B 1, T 1024 (the
reference's autodiff keeps one [B, H, P, N] state per token); linear_attention is Based / PLA at
d_model 2048 (16 heads, feature width 16, value width 128, chunk 64, T 4096, B 8, four packed
documents per row each with a prefix), its gradient also checked at B 1, T 1024. ``--small`` shrinks everything for
a CPU run. Writes ``bench_results/check_kernels_<backend>[_small].json``; docs/kernels.md says
how to switch a backend's default once its Pallas kernel passes here.

Usage:
    python tools/check_kernels.py                     # realistic shapes, float32 and bfloat16
    python tools/check_kernels.py --small             # CPU-sized shapes (+ Pallas interpret mode)
    python tools/check_kernels.py --kernels ssd --dtypes float32 --repeats 5
"""

import argparse
import dataclasses
import functools
import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from bench_scan import _timed, machine_info
from birdie_jax.kernels.dispatch import ImplementationUnavailableError
from birdie_jax.kernels.linear_attention import api as attention_api
from birdie_jax.kernels.linear_attention import reference as attention_reference
from birdie_jax.kernels.linear_scan import api as scan_api
from birdie_jax.kernels.linear_scan import config as scan_config
from birdie_jax.kernels.linear_scan import reference as scan_reference
from birdie_jax.kernels.ssd import api as ssd_api
from birdie_jax.kernels.ssd import reference as ssd_reference

TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2}


@dataclasses.dataclass(frozen=True)
class Case:
    """One kernel at one shape: its inputs, its implementations and its reference."""

    kernel: str
    shape: Dict[str, int]
    make_inputs: Callable[[str, Dict[str, int]], Tuple[tuple, tuple]]  # dtype, shape -> (diff args, fixed args)
    run: Callable[[str], Callable]  # implementation -> fn(*diff, *fixed) -> outputs
    reference: Callable  # fn(*diff, *fixed) -> outputs, float32
    output_names: Tuple[str, ...]
    grad_names: Tuple[str, ...]
    grad_shape: Optional[Dict[str, int]] = None  # a smaller shape for the gradient check


# --------------------------------------------------------------------------- linear_scan


def _scan_inputs(dtype: str, shape: Dict[str, int]):
    batch, steps, channels = shape["batch"], shape["time"], shape["channels"]
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    a = jax.random.uniform(keys[0], (batch, steps, channels), jnp.float32, 0.7, 1.0).astype(dtype)
    b = jax.random.normal(keys[1], (batch, steps, channels), jnp.float32).astype(dtype)
    h0 = jax.random.normal(keys[2], (batch, channels), jnp.float32)
    reset = jax.random.bernoulli(keys[3], 1.0 / 256, (batch, steps))
    return (a, b, h0), (reset,)


def _scan_run(name: str):
    if name.endswith("[interpret]"):
        flavour = name.split("_")[1].split("[")[0]  # pallas_tpu[interpret] -> tpu
        cfg = scan_config.default_config(flavour)
        kernel = functools.partial(scan_api.pallas_module(flavour).linear_scan_pallas,
                                   block_t=cfg.block_t, block_d=cfg.block_d, interpret=True)
        return lambda a, b, h0, reset: kernel(a, b, h0, reset)
    return lambda a, b, h0, reset: scan_api.linear_scan(a, b, h0=h0, reset=reset, implementation=name)


def _scan_case(small: bool) -> Case:
    shape = dict(batch=2, time=256, channels=256) if small else dict(batch=8, time=4096, channels=2048)
    return Case("linear_scan", shape, _scan_inputs, _scan_run,
                lambda a, b, h0, reset: scan_reference.linear_scan_reference(a, b, h0, reset),
                ("h", "h_last"), ("da", "db", "dh0"))


# --------------------------------------------------------------------------- ssd


def _ssd_inputs(dtype: str, shape: Dict[str, int]):
    b, l, h, p, g, n = (shape[k] for k in ("batch", "time", "heads", "head_dim", "groups", "state"))
    rng = np.random.RandomState(0)
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    x = f32(rng.randn(b, l, h, p)).astype(dtype)
    dt = f32(np.logaddexp(0.0, rng.randn(b, l, h) - 4.0))  # softplus(randn - 4), Mamba-2's range
    A = f32(-np.exp(rng.rand(h)))
    B = f32(rng.randn(b, l, g, n)).astype(dtype)
    C = f32(rng.randn(b, l, g, n)).astype(dtype)
    D = f32(rng.randn(h))
    h0 = f32(rng.randn(b, h, p, n))
    reset = jnp.asarray(rng.rand(b, l) < 1.0 / 256)
    return (x, dt, A, B, C, D, h0), (reset,)


def _ssd_run(chunk: int):
    def run(name: str):
        if name.endswith("[interpret]"):
            flavour = name.split("_")[1].split("[")[0]
            kernel = functools.partial(ssd_api.pallas_module(flavour).ssd_pallas, chunk_size=chunk, interpret=True)
            return lambda x, dt, A, B, C, D, h0, reset: kernel(x, dt, A, B, C, D, h0, reset)
        return lambda x, dt, A, B, C, D, h0, reset: ssd_api.ssd(
            x, dt, A, B, C, D=D, initial_state=h0, reset=reset, chunk_size=chunk, implementation=name)

    return run


def _ssd_case(small: bool) -> Case:
    if small:
        shape = dict(batch=2, time=256, heads=4, head_dim=16, groups=2, state=16, chunk=32)
        grad_shape = None
    else:
        shape = dict(batch=8, time=4096, heads=64, head_dim=64, groups=1, state=128, chunk=64)
        grad_shape = dict(shape, batch=1, time=1024)
    return Case("ssd", shape, _ssd_inputs, _ssd_run(shape["chunk"]),
                lambda x, dt, A, B, C, D, h0, reset: ssd_reference.ssd_reference(x, dt, A, B, C, D, h0, reset),
                ("y", "final_state"), ("dx", "ddt", "dA", "dB", "dC", "dD", "dh0"), grad_shape)


# --------------------------------------------------------------------------- linear attention


def _attention_inputs(dtype: str, shape: Dict[str, int]):
    b, t, h, f, p = (shape[k] for k in ("batch", "time", "heads", "key_dim", "value_dim"))
    rng = np.random.RandomState(0)
    normal = lambda *s: jnp.asarray(0.5 * rng.randn(*s), jnp.float32).astype(dtype)  # noqa: E731
    features = 1 + f + f * f
    state = (jnp.asarray(rng.rand(b, h, features, p), jnp.float32),
             jnp.asarray(1.0 + rng.rand(b, h, features), jnp.float32))
    # Packed documents of ~1/4 of the row, each with a prefix (encoder) of its first 1/8.
    doc = np.minimum(np.arange(t) // max(1, t // 4), 3)
    segment_ids = jnp.asarray(np.broadcast_to(doc + 1, (b, t)).astype(np.int32))
    encoder_mask = jnp.asarray(np.broadcast_to((np.arange(t) % max(1, t // 4)) < max(1, t // 32), (b, t)))
    diff = (normal(b, t, h, f), normal(b, t, h, f), normal(b, t, h, p), normal(b, t, h, f), normal(b, t, h, p), state)
    return diff, (encoder_mask, segment_ids)


def _attention_run(chunk: int):
    def run(name: str):
        if name.endswith("[interpret]"):
            flavour = name.split("_")[1].split("[")[0]
            kernel = functools.partial(attention_api.pallas_module(flavour).linear_attention_pallas, chunk_size=chunk,
                                       interpret=True)
            return lambda q, k, v, ke, ve, state, em, seg: kernel(q, k, v, ke, ve, em, seg, state)
        return lambda q, k, v, ke, ve, state, em, seg: attention_api.linear_attention(
            q, k, v, k_enc=ke, v_enc=ve, encoder_mask=em, segment_ids=seg, initial_state=state, chunk_size=chunk,
            implementation=name)

    return run


def _attention_case(small: bool) -> Case:
    if small:
        shape = dict(batch=2, time=256, heads=2, key_dim=16, value_dim=16, chunk=32)
        grad_shape = None
    else:  # Based / PLA at d_model 2048: 16 heads, feature width 16, value width 128
        shape = dict(batch=8, time=4096, heads=16, key_dim=16, value_dim=128, chunk=64)
        grad_shape = dict(shape, batch=1, time=1024)
    return Case("linear_attention", shape, _attention_inputs, _attention_run(shape["chunk"]),
                lambda q, k, v, ke, ve, state, em, seg: attention_reference.linear_attention_reference(
                    q, k, v, ke, ve, em, seg, state),
                ("y", "S", "z"), ("dq", "dk", "dv", "dk_enc", "dv_enc", "dS0", "dz0"), grad_shape)


# --------------------------------------------------------------------------- checking and timing


def _max_rel_err(got, want) -> float:
    got = np.asarray(jnp.asarray(got, jnp.float32))
    want = np.asarray(jnp.asarray(want, jnp.float32))
    if got.shape != want.shape or not np.all(np.isfinite(got)):
        return float("inf")
    scale = max(float(np.max(np.abs(want))), 1e-6)
    return float(np.max(np.abs(got - want))) / scale


def _weighted_loss(fn, weights, n_diff):
    def loss(*args):
        outs = jax.tree.leaves(fn(*args))
        return sum(jnp.sum(o.astype(jnp.float32) * w) for o, w in zip(outs, weights))

    return jax.grad(loss, argnums=tuple(range(n_diff)))


def _weights(outs):
    outs = jax.tree.leaves(outs)
    keys = jax.random.split(jax.random.PRNGKey(1), len(outs))
    return [jax.random.normal(k, o.shape, jnp.float32) for k, o in zip(keys, outs)]


def _errors(case: Case, fn, dtype: str, shape) -> Dict[str, float]:
    diff, fixed = case.make_inputs(dtype, shape)
    as_f32 = jax.tree.map(lambda v: v.astype(jnp.float32), diff)  # the reference sees the same rounded values
    with jax.default_matmul_precision("highest"):
        outs = jax.tree.leaves(jax.jit(fn)(*diff, *fixed))
        ref = jax.jit(case.reference)(*as_f32, *fixed)
        errors = {name: _max_rel_err(o, r) for name, o, r in zip(case.output_names, outs, jax.tree.leaves(ref))}
        if case.grad_shape is not None:
            diff, fixed = case.make_inputs(dtype, case.grad_shape)
            as_f32 = jax.tree.map(lambda v: v.astype(jnp.float32), diff)
            ref = jax.jit(case.reference)(*as_f32, *fixed)
        weights = _weights(ref)
        grads = jax.tree.leaves(jax.jit(_weighted_loss(fn, weights, len(diff)))(*diff, *fixed))
        grads_ref = jax.tree.leaves(jax.jit(_weighted_loss(case.reference, weights, len(diff)))(*as_f32, *fixed))
        errors.update({name: _max_rel_err(g, r) for name, g, r in zip(case.grad_names, grads, grads_ref)})
    return errors


def _timings(case: Case, fn, dtype: str, warmup: int, repeats: int) -> Dict[str, float]:
    diff, fixed = case.make_inputs(dtype, case.shape)
    args = (*diff, *fixed)
    fwd_compile, fwd = _timed(fn, args, warmup, repeats)
    weights = _weights(jax.eval_shape(fn, *args))
    bwd_compile, bwd = _timed(_weighted_loss(fn, weights, len(diff)), args, warmup, repeats)
    return {"compile_fwd_s": fwd_compile, "fwd_ms": 1e3 * statistics.median(fwd),
            "compile_fwd_bwd_s": bwd_compile, "fwd_bwd_ms": 1e3 * statistics.median(bwd),
            "fwd_ms_min": 1e3 * min(fwd), "fwd_bwd_ms_min": 1e3 * min(bwd)}


def _implementations(names, backend: str, small: bool) -> List[str]:
    out = [n for n in names if n != "reference"]
    if small and backend == "cpu":
        out += ["pallas_tpu[interpret]", "pallas_gpu[interpret]"]
    return out


def check(case: Case, names, backend: str, dtypes, warmup: int, repeats: int, small: bool) -> List[dict]:
    rows = []
    for name in _implementations(names, backend, small):
        for dtype in dtypes:
            row = {"kernel": case.kernel, "implementation": name, "dtype": dtype, "shape": case.shape,
                   "grad_shape": case.grad_shape or case.shape, "tolerance": TOLERANCE[dtype]}
            print(f"  {case.kernel} {name} {dtype} ...", file=sys.stderr, flush=True)
            try:
                fn = case.run(name)
                errors = _errors(case, fn, dtype, case.shape)
            except ImplementationUnavailableError as e:
                rows.append({**row, "status": "unavailable", "reason": str(e)})
                continue
            except Exception as e:  # noqa: BLE001 - a kernel that crashes is a result to record
                rows.append({**row, "status": "error", "reason": f"{type(e).__name__}: {e}"[:2000]})
                continue
            passed = all(err <= TOLERANCE[dtype] for err in errors.values())
            row.update(status="pass" if passed else "fail", max_rel_err=errors)
            if name.endswith("[interpret]"):
                row["note"] = "interpret mode on CPU: correctness only, not timed"
            else:
                row.update(_timings(case, fn, dtype, warmup, repeats))
            rows.append(row)
    return rows


def _print_table(rows: List[dict]) -> None:
    header = (f"{'kernel':12s} {'implementation':24s} {'dtype':9s} {'status':11s} {'max rel err':>11s} "
              f"{'compile s':>9s} {'fwd ms':>9s} {'fwd+bwd ms':>10s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        err = max(r["max_rel_err"].values()) if "max_rel_err" in r else float("nan")
        timing = (f"{r['compile_fwd_s']:9.2f} {r['fwd_ms']:9.2f} {r['fwd_bwd_ms']:10.2f}" if "fwd_ms" in r
                  else f"{'-':>9s} {'-':>9s} {'-':>10s}")
        print(f"{r['kernel']:12s} {r['implementation']:24s} {r['dtype']:9s} {r['status']:11s} {err:11.2e} {timing}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized shapes, plus Pallas interpret mode on CPU")
    parser.add_argument("--kernels", default="linear_scan,ssd,linear_attention")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None, help="default: bench_results/check_kernels_<backend>[_small].json")
    args = parser.parse_args(argv)

    backend = jax.default_backend()
    cases = {"linear_scan": (_scan_case(args.small), scan_api.IMPLEMENTATION_NAMES, scan_api.DEFAULT_IMPLEMENTATIONS),
             "ssd": (_ssd_case(args.small), ssd_api.IMPLEMENTATION_NAMES, ssd_api.DEFAULT_IMPLEMENTATIONS),
             "linear_attention": (_attention_case(args.small), attention_api.IMPLEMENTATION_NAMES,
                                  attention_api.DEFAULT_IMPLEMENTATIONS)}
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for k in kernels:
        if k not in cases:
            parser.error(f"unknown kernel {k!r}; valid: {', '.join(cases)}")
    for d in dtypes:
        if d not in TOLERANCE:
            parser.error(f"unknown dtype {d!r}; valid: {', '.join(TOLERANCE)}")

    info = machine_info()
    print(f"check_kernels on backend={backend} ({info['device_kind']}), jax {info['jax']}", flush=True)
    rows = []
    for k in kernels:
        case, names, _ = cases[k]
        rows += check(case, names, backend, dtypes, args.warmup, args.repeats, args.small)
    _print_table(rows)

    passing = {k: sorted({r["implementation"] for r in rows if r["kernel"] == k}
                         - {r["implementation"] for r in rows if r["kernel"] == k and r["status"] != "pass"})
               for k in kernels}
    payload = {
        "machine": info,
        "command": "python tools/check_kernels.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "small": args.small,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "defaults": {k: cases[k][2] for k in kernels},
        "passing_every_dtype": passing,
        "results": rows,
    }
    out = Path(args.out or f"bench_results/check_kernels_{backend}{'_small' if args.small else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {out}")
    failed = [r for r in rows if r["status"] in ("fail", "error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
