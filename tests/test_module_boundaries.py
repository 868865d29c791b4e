"""A module owns its state (shared/DESIGN.md, principle 7): code in one
module of the package does not read or write another object's private
attribute (``obj._name``) unless the module itself defines that name, as
an attribute of ``self`` or ``cls``, a class attribute or a method; nor
does it import another module's private names (``from .x import _name``;
private submodules such as ``_oscore`` are the package's own). Enum-style
``_sunder_`` names are not counted.

The check is syntactic (it can not tell which class an object is of), so
it is a floor, not a proof: a name a module defines for its own objects
may still be used on another module's object of the same attribute name.
It covers every module of the package; what it finds that is not a
reach-in is listed in :data:`EXEMPT` with the reason."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "aiocoap"

EXEMPT = {
    # asyncio's own protocol for awaiting a future from a coroutine driver
    "util/asyncio/stepping.py": ["yielded._asyncio_future_blocking"],
    # a marker the module sets on and reads from its own handler functions
    "cli/common.py": ["handler._aiocoap_cli"],
}
"""What the check finds in a module that is not a reach-in, with why."""

MODULES = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and not (name.endswith("_") and len(name) > 2)


def _owner_expression(node: ast.expr) -> bool:
    """Whether ``node`` is ``self``, ``cls`` or ``super()``: access to the
    object's own attributes, which its class defines somewhere up its
    bases (a base in another module documents what it keeps for its
    subclasses)."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def defined_names(tree: ast.Module) -> set[str]:
    """The private names a module defines for its objects."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _owner_expression(node.value):
            names.add(node.attr)
    for klass in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for statement in klass.body:
            targets = statement.targets if isinstance(statement, ast.Assign) else (
                [statement.target] if isinstance(statement, ast.AnnAssign) else []
            )
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {name for name in names if _is_private(name)}


def _is_submodule(path: pathlib.Path, node: ast.ImportFrom, name: str) -> bool:
    """Whether ``name`` imported by ``node`` (a relative import in the module
    at ``path``) is a module of the package rather than a name in one."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    for part in (node.module or "").split(".") if node.module else ():
        base = base / part
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def reach_ins(path: pathlib.Path) -> list[str]:
    """``line: expression`` of every access in ``path`` to a private
    attribute of something other than the accessing object, where the
    module does not define that name, and of every private name it imports
    from another module of the package."""
    tree = ast.parse(path.read_text(), str(path))
    own = defined_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            found.extend(
                f"{node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}"
                for alias in node.names
                if _is_private(alias.name) and not _is_submodule(path, node, alias.name)
            )
        if (
            isinstance(node, ast.Attribute)
            and _is_private(node.attr)
            and node.attr not in own
            and not _owner_expression(node.value)
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("module", MODULES)
def test_no_reach_ins(module):
    found = [where.split(": ", 1)[1] for where in reach_ins(PACKAGE / module)]
    assert found == EXEMPT.get(module, [])


def test_checker_finds_reach_ins():
    sample = ast.parse(
        "class A:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def _helper(self, other):\n"
        "        return other._mine + other._theirs + self._inherited + super()._base()\n"
    )
    assert defined_names(sample) == {"_mine", "_helper"}


def test_checker_on_a_file(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text("def peek(pool):\n    return pool._clock() + pool.clock() + len(pool._map_)\n")
    assert reach_ins(module) == ["2: pool._clock"]


def test_checker_finds_private_imports(tmp_path):
    (tmp_path / "_helpers.py").write_text("")
    module = tmp_path / "sample.py"
    module.write_text("from . import _helpers\nfrom .other import _TABLE, PUBLIC\n")
    assert reach_ins(module) == ["2: from .other import _TABLE"]
