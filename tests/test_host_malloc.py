"""Huge-page malloc for the ``birdie-jax`` command (birdie_jax/host_malloc.py)."""

import json
import os
import subprocess
import sys

import pytest

from birdie_jax import host_malloc


def test_tunable_is_added_and_a_users_choice_is_kept():
    assert host_malloc.with_hugetlb({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    merged = host_malloc.with_hugetlb({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/x"})
    assert merged == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "HOME": "/x"}
    assert host_malloc.with_hugetlb({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})["GLIBC_TUNABLES"] == \
        "glibc.malloc.hugetlb=0"
    assert host_malloc.status({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}).startswith(
        "off" if host_malloc.supported() else "not available")


def _info(env_changes: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_malloc.OPT_OUT)}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-m", "birdie_jax.cli", "info", "--config", "hawk_tiny", "--json"],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["host_malloc_huge_pages"]


@pytest.mark.skipif(not host_malloc.supported(), reason="needs Linux with glibc >= 2.35")
def test_the_command_restarts_itself_with_huge_pages_unless_told_not_to():
    assert _info({}).startswith("on (glibc.malloc.hugetlb=1)")
    assert _info({host_malloc.OPT_OUT: "0"}).startswith("off")
