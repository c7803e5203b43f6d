"""The declared dependencies match what the code imports (issue 16).

* every third-party import in the project's Python files (the package, kernels, tools,
  tests) is declared, as a dependency or in an extra;
* every declared requirement is imported somewhere (no dead dependency or extra);
* what the tests import is installed by ``.ci/run`` (the dependencies plus the extras it
  names), so no test skips for want of a package;
* the package and its CLI import without any extra installed: optional libraries are
  imported lazily or only by optional modules.
"""

import ast
import functools
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Folders that hold no project code (environments, build output, caches).
NOT_SCANNED = {".venv", "venv", "build", "dist", "runs", "__pycache__", "node_modules"}
#: Imported under another distribution's name, installed with it (jaxlib is pinned by jax).
PROVIDED_BY = {"jaxlib": "jax"}
#: Imported but deliberately not declared, with the reason (installed by hand where needed).
INSTALLED_APART = {"recurrentgemma": "tools/bench_peers.py only; its absl-py<2 pin conflicts with chex, so the "
                                     "tool's docstring has it installed apart"}
#: pytest plugins: used through their option in pyproject.toml's pytest ``addopts``, never imported.
PYTEST_PLUGINS = {"pytest-xdist": "-n"}
#: Import name -> distribution, for optional packages that may not be installed here.
KNOWN_DISTRIBUTIONS = {"yaml": "pyyaml", "absl": "absl-py", "orbax": "orbax-checkpoint", "lm_eval": "lm-eval",
                       "PIL": "pillow", "sklearn": "scikit-learn"}


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1))


def _pyproject() -> dict:
    try:
        import tomllib  # noqa: PLC0415 (Python >= 3.11)
    except ModuleNotFoundError:  # Python 3.10: a minimal reader of the [project] lists is enough
        return _pyproject_lists()
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _pyproject_lists() -> dict:
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    extras_block = re.search(r"^\[project.optional-dependencies\]\n(.*?)(?:\n\[|\Z)", text, re.S | re.M).group(1)
    extras = {m.group(1): re.findall(r'"([^"]+)"', m.group(2))
              for m in re.finditer(r"^(\S+) = \[(.*?)\]", extras_block, re.S | re.M)}
    packages = re.findall(r'"([\w.]+)"', re.search(r"^packages = \[(.*?)\]", text, re.S | re.M).group(1))
    addopts = re.search(r'^addopts = "([^"]*)"', text, re.M)
    return {"project": {"dependencies": re.findall(r'"([^"]+)"', deps), "optional-dependencies": extras},
            "tool": {"setuptools": {"packages": packages},
                     "pytest": {"ini_options": {"addopts": addopts.group(1) if addopts else ""}}}}


def declared() -> tuple[set[str], dict[str, set[str]], set[str]]:
    """(core distribution names, {extra: names}, the project's own top-level import names)."""
    meta = _pyproject()
    core = {requirement_name(r) for r in meta["project"]["dependencies"]}
    extras = {k: {requirement_name(r) for r in v} for k, v in meta["project"]["optional-dependencies"].items()}
    own = {p.split(".")[0] for p in meta["tool"]["setuptools"]["packages"]}
    return core, extras, own


def imports_by_file() -> dict[str, set[str]]:
    """{file: top-level names it imports (absolute imports, at any depth, plus importorskip)}, for
    every Python file of the project (every folder but environments, build output and caches)."""
    out = {}
    for dirpath, dirnames, files in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in NOT_SCANNED
                       and not d.endswith(".egg-info")]
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            names = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip"
                      and node.args and isinstance(node.args[0], ast.Constant)):
                    names.add(str(node.args[0].value).split(".")[0])
            out[os.path.relpath(path, ROOT)] = names
    return out


def local_modules() -> set[str]:
    """Module names that are project files (test helpers, tools run as scripts)."""
    return {os.path.splitext(f)[0] for top in ("tests", "tools") for f in os.listdir(os.path.join(ROOT, top))
            if f.endswith(".py")}


@functools.lru_cache(maxsize=1)
def _installed() -> dict:
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str:
    """The distribution that provides import name ``module``."""
    if module in PROVIDED_BY:
        return PROVIDED_BY[module]
    installed = _installed().get(module)
    if installed:
        return normalise(installed[0])
    return normalise(KNOWN_DISTRIBUTIONS.get(module, module))


def third_party(files: dict[str, set[str]], own: set[str]) -> dict[str, dict[str, list[str]]]:
    """{distribution: {import name: files}} for every import outside the stdlib and the project."""
    skip = set(sys.stdlib_module_names) | own | local_modules() | {"__future__"}
    out: dict[str, dict[str, list[str]]] = {}
    for path, names in files.items():
        for name in names - skip:
            out.setdefault(distribution_of(name), {}).setdefault(name, []).append(path)
    return out


def ci_extras() -> set[str]:
    """The extras ``.ci/run`` installs (``pip install -e ".[a,b]"``)."""
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        found = re.findall(r'-e\s+"?\.\[([\w,\s-]+)\]', f.read())
    return {e.strip() for group in found for e in group.split(",")}


@pytest.fixture(scope="module")
def project():
    core, extras, own = declared()
    return core, extras, third_party(imports_by_file(), own)


def plugins_in_use() -> set[str]:
    """The ``PYTEST_PLUGINS`` whose option pyproject.toml's pytest ``addopts`` passes."""
    addopts = _pyproject().get("tool", {}).get("pytest", {}).get("ini_options", {}).get("addopts", "")
    return {dist for dist, option in PYTEST_PLUGINS.items() if option in addopts.split()}


def test_every_import_is_declared(project):
    core, extras, used = project
    known = core.union(*extras.values())
    undeclared = {d: sorted({p for ps in names.values() for p in ps})[:3] for d, names in used.items()
                  if d not in known and d not in INSTALLED_APART}
    assert not undeclared, f"imported but not declared in pyproject.toml (distribution: files): {undeclared}"


def test_every_declared_requirement_is_imported(project):
    core, extras, used = project
    unused = sorted(d for d in core.union(*extras.values()) if d not in used and d not in plugins_in_use())
    assert not unused, f"declared in pyproject.toml but imported nowhere: {unused}"
    for extra, names in extras.items():  # an extra is for something: at least one of its packages is used
        assert names & set(used), f"extra [{extra}] holds nothing the code imports"


def test_what_the_tests_import_is_installed_by_ci(project):
    core, extras, used = project
    installed = core.union(*(extras[e] for e in ci_extras()))
    missing = {d: sorted({p for ps in names.values() for p in ps if p.startswith("tests")})
               for d, names in used.items()}
    missing = {d: files for d, files in missing.items() if files and d not in installed}
    assert not missing, f"tests import packages that .ci/run does not install (add them to an extra it installs): {missing}"


def test_the_package_imports_without_any_extra(project):
    """Blocks every package only an extra provides, then imports the package and its CLI."""
    core, extras, used = project
    optional = set().union(*extras.values()) - core
    blocked = sorted(name for dist, names in used.items() if dist in optional for name in names)
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {blocked!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: an optional extra)")
        sys.meta_path.insert(0, Block())
        import birdie_jax, birdie_jax.cli
        try:
            birdie_jax.cli.main(["--help"])
        except SystemExit as e:
            assert e.code in (0, None), e.code
        print("ok")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_the_checks_can_fail(tmp_path):
    """The scanner sees function-level imports and importorskip; normalisation and parsing."""
    assert requirement_name("orbax-checkpoint>=0.12.8,<0.13") == "orbax-checkpoint"
    assert requirement_name("PyYAML>=6") == "pyyaml" and normalise("tensorboardX") == "tensorboardx"
    assert distribution_of("yaml") == "pyyaml" and distribution_of("jaxlib") == "jax"
    code = "def f():\n    import somepkg.sub\n\nimport pytest\npytest.importorskip('otherpkg')\n"
    tree = ast.parse(code)
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"somepkg", "pytest"}
    files = {"birdie_jax/x.py": {"somepkg", "numpy", "os"}}
    used = third_party(files, {"birdie_jax"})
    assert set(used) == {"somepkg", "numpy"} and "os" not in used
    assert _pyproject_lists()["project"]["dependencies"] == _pyproject()["project"]["dependencies"]
