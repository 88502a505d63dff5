"""The package's layers: imports run one way, in no circle, and plugins and docs use the
public face only. Imports are read with ``ast``, at module level and inside functions."""

import ast
import inspect
import pathlib
import re

import equinox as eqx
import pytest

import qgzoo

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: The layers of qgzoo/, lowest first; the package's own __init__ (the public face) is above all.
LAYERS = ("core", "physics", "components", "data", "simulate", "training", "zoo", "evaluation",
          "sweeps", "testing", "app")
FACE = "qgzoo"
PUBLIC = {"qgzoo", "qgzoo.testing"}


def modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted name -> file of every module under ``package`` (a folder named as the package)."""
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported(path: pathlib.Path, name: str) -> list[tuple[int, str]]:
    """(line, dotted target) of every import in the module ``name`` at ``path``, at any depth.

    ``from a import b`` gives ``a.b`` (a module if there is one, else a name in ``a``);
    relative imports are made absolute.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return targets


def resolve(target: str, known) -> str | None:
    """The module of ``known`` that ``target`` names or is inside, if any."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(package: pathlib.Path) -> dict[str, dict[str, int]]:
    """module -> {module it imports: first line}, within ``package``."""
    known = modules(package)
    graph = {}
    for name, path in known.items():
        edges = {}
        for line, target in imported(path, name):
            module = resolve(target, known)
            if module is not None and module != name:
                edges.setdefault(module, line)
        graph[name] = edges
    return graph


def layer(module: str) -> int:
    """The layer index of a module of qgzoo (the face above every layer)."""
    parts = module.split(".")
    return len(LAYERS) if len(parts) == 1 else LAYERS.index(parts[1])


def upward_imports(graph) -> list[str]:
    return [f"{module} (layer {LAYERS[layer(module)]}) imports {target} at line {line}"
            for module, edges in graph.items() for target, line in edges.items()
            if layer(target) > layer(module)]


def circles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, {}):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


# --- qgzoo's own modules ------------------------------------------------------------------

GRAPH = import_graph(ROOT / "qgzoo")


def test_every_module_belongs_to_a_layer():
    for module in GRAPH:
        parts = module.split(".")
        assert len(parts) == 1 or parts[1] in LAYERS, f"{module} is in no layer of {LAYERS}"


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports(GRAPH) == []


def test_imports_run_in_no_circle():
    assert circles(GRAPH) == []


def test_the_checks_find_an_upward_import_and_a_circle(tmp_path):
    """The checks above can fail: a planted upward import and a planted circle are found."""
    package = tmp_path / "qgzoo"
    for folder in ("core", "data"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from qgzoo.core import a\n")
    (package / "core" / "a.py").write_text("def f():\n    from qgzoo.data.b import g\n")
    (package / "data" / "b.py").write_text("from . import c\n\ndef g():\n    pass\n")
    (package / "data" / "c.py").write_text("from qgzoo.data import b\n")
    graph = import_graph(package)
    assert upward_imports(graph) == ["qgzoo.core.a (layer core) imports qgzoo.data.b at line 2"]
    assert circles(graph) == [["qgzoo.data.b", "qgzoo.data.c"]]


def test_no_function_is_named_like_its_module():
    named = [f"{name}.{node.name}" for name, path in modules(ROOT / "qgzoo").items()
             for node in ast.parse(path.read_text()).body
             if isinstance(node, ast.FunctionDef) and node.name == path.stem]
    assert named == []


# --- the public face: plugins and docs ----------------------------------------------------

def plugin_sources() -> list[pathlib.Path]:
    """The shipped plugins' code, their tests left out."""
    return sorted(p for p in (ROOT / "plugins").rglob("*.py")
                  if "tests" not in p.parts and not p.name.startswith("test_")
                  and p.name != "conftest.py")


def docs_code() -> list[tuple[str, str]]:
    """(page and block number, code) of every Python block of the docs."""
    blocks = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for number, code in enumerate(re.findall(r"```python[^\n]*\n(.*?)```", page.read_text(),
                                                 re.S)):
            blocks.append((f"{page.relative_to(ROOT)} block {number}", code))
    return blocks


def private_imports(code: str, where: str) -> list[str]:
    """Imports of qgzoo other than the face (``qgzoo``, its public names) and ``qgzoo.testing``."""
    bad = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            if node.module == FACE:
                names = [FACE if alias.name in qgzoo.__all__ else f"{FACE}.{alias.name}"
                         for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        bad += [f"{where}:{node.lineno}: {name}" for name in names
                if (name == FACE or name.startswith(FACE + ".")) and name not in PUBLIC]
    return bad


def test_plugins_and_docs_exist_to_be_checked():
    assert len(plugin_sources()) >= 10 and docs_code()


def test_plugins_import_only_the_public_face():
    bad = [line for path in plugin_sources()
           for line in private_imports(path.read_text(), str(path.relative_to(ROOT)))]
    assert bad == []


def test_docs_import_only_the_public_face():
    assert [line for where, code in docs_code() for line in private_imports(code, where)] == []


def test_the_face_check_finds_a_private_import():
    code = "import qgzoo\nfrom qgzoo import train, core\nfrom qgzoo.core.spec import FrozenSpec\n"
    assert private_imports(code, "x") == ["x:2: qgzoo.core", "x:3: qgzoo.core.spec"]


def test_the_face_exports_what_it_lists():
    assert all(hasattr(qgzoo, name) for name in qgzoo.__all__)


# --- equinox modules and spec bases ------------------------------------------------------

def qgzoo_classes(base: type) -> list[type]:
    """Every subclass of ``base`` defined in qgzoo (all of qgzoo imported)."""
    import qgzoo.app.cli  # noqa: F401  (the top layer imports every other)
    found, todo = [], [base]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith("qgzoo.") and cls not in found:
                found.append(cls)
    return found


def is_abstract(cls) -> bool:
    return inspect.isabstract(cls) or bool(getattr(cls, "__abstractvars__", ()))


def test_every_equinox_module_is_abstract_or_final():
    """As equinox does: a class with subclasses is abstract; a concrete one has none."""
    for cls in qgzoo_classes(eqx.Module):
        subclasses = [c for c in cls.__subclasses__() if c.__module__.startswith("qgzoo")]
        assert is_abstract(cls) or not subclasses, \
            f"{cls.__module__}.{cls.__qualname__} is concrete and subclassed by {subclasses}"


@pytest.mark.parametrize("base", [qgzoo.CoarsenerSpec, qgzoo.NetworkSpec, qgzoo.LossSpec,
                                  qgzoo.StepperSpec])
def test_every_spec_base_declares_build_abstract(base):
    assert "build" in base.__abstractmethods__
    signature = inspect.signature(base.build)
    assert list(signature.parameters)[0] == "self" and base.build.__doc__
