"""Documentation checks: citation metadata, docstrings, the API page, examples, the build.

The doctests of the narrative pages in ``docs/`` run separately (``--doctest-rst``).
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import astro_galpost

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
CITATION = ROOT / "CITATION.cff"


# --------------------------------------------------------------------------- CITATION.cff
def _validate_cff(text: str) -> None:
    """Raise if ``text`` is not valid Citation File Format 1.2.0 (schema bundled in cffconvert)."""
    cffconvert = pytest.importorskip("cffconvert", reason="the CFF check needs cffconvert (pip install cffconvert)")
    from cffconvert.citation import Citation

    citation = Citation(text)
    if citation.cffversion != "1.2.0":
        raise ValueError(f"cff-version is {citation.cffversion}, expected 1.2.0")
    citation.validate()  # jsonschema.ValidationError when invalid
    assert cffconvert is not None


def test_citation_cff_is_valid():
    _validate_cff(CITATION.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "change",
    [
        ("authors:\n  - name: \"The astro_galpost developers\"\n", ""),  # required key removed
        ("type: software", "type: programme"),  # not an allowed value
        ("license: BSD-3-Clause", "license: Not-A-Licence"),  # not an SPDX identifier
    ],
    ids=["no-authors", "bad-type", "bad-license"],
)
def test_invalid_citation_cff_is_rejected(change):
    """The check above would catch a broken file: corrupt a copy and expect a failure."""
    text = CITATION.read_text(encoding="utf-8")
    old, new = change
    assert old in text, f"CITATION.cff changed: update this test's corruption {old!r}"
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError):
        _validate_cff(text.replace(old, new))


# ----------------------------------------------------------------------- public names
def _public_modules() -> list[str]:
    names = ["astro_galpost"]
    for info in pkgutil.walk_packages(astro_galpost.__path__, "astro_galpost."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC_MODULES = _public_modules()


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:  # an optional dependency the module needs at import time
        pytest.skip(f"{name} cannot be imported here: {err}")


@functools.cache  # asked once per constant of every public module: parse each source once
def _documented_assignments(module_name: str) -> frozenset[str]:
    """Module-level names assigned with a ``#:`` comment before or a string literal after them."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return frozenset()
    source = Path(spec.origin).read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    documented = set()
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign):  # NAME = ... or A, B = ...
            targets = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            continue
        before = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        after = body[i + 1] if i + 1 < len(body) else None
        has_doc = before.startswith("#:") or (
            isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
        )
        if has_doc:
            documented.update(targets)
    return frozenset(documented)


_ALL_MODULES = sorted({info.name for info in pkgutil.walk_packages(astro_galpost.__path__, "astro_galpost.")})


def _has_own_docstring(obj) -> bool:
    doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
    if not doc or not doc.strip():
        return False
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):  # a dataclass's generated signature
        return False
    return True


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_have_docstrings(module_name):
    """Every name in a public module's ``__all__`` has a docstring (or a ``#:`` doc comment)."""
    module = _import(module_name)
    assert (module.__doc__ or "").strip(), f"module {module_name} has no docstring"
    names = getattr(module, "__all__", None)
    assert names is not None, f"public module {module_name} has no __all__"
    undocumented = []
    for name in names:
        if name.startswith("__"):
            continue
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
            if not _has_own_docstring(obj):
                undocumented.append(name)
        elif inspect.ismodule(obj):
            continue
        else:  # a constant or registry: documented where it is assigned
            if not any(name in _documented_assignments(m) for m in [module_name, *_ALL_MODULES]):
                undocumented.append(name)
    assert not undocumented, f"{module_name}: no docstring for {undocumented}"


def test_docstring_check_catches_missing_docs():
    def undocumented():
        pass

    class Plain:
        pass

    assert not _has_own_docstring(undocumented)
    assert not _has_own_docstring(Plain)
    assert _has_own_docstring(astro_galpost.GalaxyPosterior)
    assert "TARGETS" in _documented_assignments("astro_galpost.model.targets")
    assert "T" not in _documented_assignments("astro_galpost.utils.registry")  # a TypeVar without doc


# --------------------------------------------------------------------------- API page
def _api_directives(with_options: bool = False):
    """``{module: skipped names}`` for every ``.. automodapi::`` in docs/api.rst.

    With ``with_options``, ``{module: (skipped names, whether constants are included)}``.
    """
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    directives = {}
    for match in re.finditer(r"^\.\. automodapi:: (\S+)\n((?:   :.*\n)*)", text, re.MULTILINE):
        skip = set()
        for option in match.group(2).splitlines():
            if option.strip().startswith(":skip:"):
                skip.update(n.strip() for n in option.split(":skip:", 1)[1].split(","))
        all_objects = ":include-all-objects:" in match.group(2)
        directives[match.group(1)] = (skip, all_objects) if with_options else skip
    return directives


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_on_the_api_page(module_name):
    """Each name of each public module is documented by docs/api.rst, here or where it is re-exported.

    When this fails for a new module, add ``.. automodapi:: <module>`` to docs/api.rst
    (with ``:skip:`` for names a package above it already documents).
    """
    module = _import(module_name)
    directives = _api_directives()
    missing = []
    for name in getattr(module, "__all__", []):
        if name.startswith("__"):
            continue
        obj = getattr(module, name)
        covered = module_name in directives and name not in directives[module_name]
        for documented, skip in directives.items():
            if covered:
                break
            if documented == module_name or name in skip:
                continue
            other = sys.modules.get(documented) or importlib.import_module(documented)
            covered = name in getattr(other, "__all__", []) and getattr(other, name, None) is obj
        if not covered:
            missing.append(name)
    assert not missing, f"{module_name}: {missing} are not documented in docs/api.rst"


def test_api_page_names_existing_modules():
    """Every documented module exists, skips only its own names, and shows its constants."""
    for module_name, (skip, all_objects) in _api_directives(with_options=True).items():
        module = importlib.import_module(module_name)
        names = set(getattr(module, "__all__", []))
        assert skip <= names, f"{module_name}: :skip: names {skip - names} are not in __all__"
        constants = [
            n for n in names - skip
            if not n.startswith("__")
            and not (inspect.isclass(getattr(module, n)) or callable(getattr(module, n)) or inspect.ismodule(getattr(module, n)))
        ]
        assert all_objects or not constants, (
            f"{module_name} exports constants {constants}: add :include-all-objects: to its automodapi"
        )


# ---------------------------------------------------------------------- examples
EXAMPLE_FILES = sorted(EXAMPLES.glob("plot_*.py"))


def test_there_are_examples():
    assert len(EXAMPLE_FILES) >= 4
    assert (EXAMPLES / "GALLERY_HEADER.rst").is_file()


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_has_a_gallery_title(path):
    """Sphinx-Gallery needs a module docstring that starts with an underlined title."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc, f"{path.name} has no docstring"
    lines = doc.strip().splitlines()
    assert len(lines) >= 2 and lines[0].strip(), f"{path.name}: the docstring must start with a title"
    assert set(lines[1].strip()) == {"="} and len(lines[1].strip()) >= len(lines[0].strip()), (
        f"{path.name}: the title must be underlined with '=' at least as long as it"
    )


# -------------------------------------------------------------- the plugin page's example
def _code_block(text: str, language: str, after: str = "") -> str:
    start = text.index(after) if after else 0
    match = re.search(rf"^\.\. code-block:: {language}\n\n((?:(?:    .*)?\n)+)", text[start:], re.MULTILINE)
    assert match, f"no {language} code block after {after!r}"
    return textwrap.dedent(match.group(1))


def test_plugin_page_example_works(tmp_path, monkeypatch):
    """The complete plugin of docs/plugins.rst, installed through its entry points, trains and reloads."""
    tomllib = pytest.importorskip("tomllib")
    import numpy as np

    from astro_galpost import ENCODERS, FLOWS, TARGETS, GalaxyPosterior
    from astro_galpost.datasets import make_mock_catalog

    text = (DOCS / "plugins.rst").read_text(encoding="utf-8")
    pyproject = tomllib.loads(_code_block(text, "toml"))
    code = _code_block(text, "python", after="``galpost_kinematics/__init__.py``")

    package = tmp_path / "galpost_kinematics"
    package.mkdir()
    (package / "__init__.py").write_text(code, encoding="utf-8")
    dist = tmp_path / "galpost_kinematics-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: galpost-kinematics\nVersion: 0.1\n")
    groups = pyproject["project"]["entry-points"]
    (dist / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items())
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for registry in (TARGETS, ENCODERS, FLOWS):
            registry.load_plugins(reload=True)
        assert "velocity_dispersion" in TARGETS and "colours" in ENCODERS and "maf" in FLOWS

        table = make_mock_catalog(300, random_state=0)
        gp = GalaxyPosterior(
            targets=["log_mstar", "redshift", "velocity_dispersion"], encoder=["photometry", "colours"],
            flows={"core": ("maf", {"transforms": 1, "hidden_features": (16,)})},
            representation=16, hidden=16, max_epochs=2, progress=False, random_state=0,
        ).fit(table[:250])
        assert gp.flows_["core"] == "maf"
        post = gp.sample(table[250:260], n_samples=10, random_state=1)
        assert post["velocity_dispersion"].unit == "km / s"
        gp.save(tmp_path / "model")
        again = GalaxyPosterior.load(tmp_path / "model")
        np.testing.assert_array_equal(
            again.sample(table[250:260], n_samples=10, random_state=1)["redshift"].distribution,
            post["redshift"].distribution,
        )
    finally:
        for registry, name in ((TARGETS, "velocity_dispersion"), (ENCODERS, "colours"), (FLOWS, "maf")):
            registry.unregister(name)
        sys.modules.pop("galpost_kinematics", None)


# ------------------------------------------------------------------------- the build
@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path, request):
    """The full HTML build, examples included, as ``tox -e build_docs`` runs it (minutes).

    Opt-in: ``pytest -m slow --slow`` (pytest-skip-slow) or ``ASTRO_GALPOST_DOCS_BUILD=1`` with ``-m slow``.
    """
    if not (request.config.getoption("slow", default=False) or os.environ.get("ASTRO_GALPOST_DOCS_BUILD") == "1"):
        pytest.skip("the documentation build takes minutes: run with --slow or ASTRO_GALPOST_DOCS_BUILD=1")
    pytest.importorskip("sphinx")
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("sphinx_automodapi")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)],
        capture_output=True, text=True, cwd=DOCS, timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert (out / "index.html").is_file()
    assert (out / "api.html").is_file()
    for example in EXAMPLE_FILES:
        assert (out / "auto_examples" / f"{example.stem}.html").is_file(), example.name
