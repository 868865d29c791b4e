"""Sphinx configuration of the aiocoap documentation.

Build with ``python -m sphinx -W -b html doc build/doc`` from the checkout;
no network access is needed (intersphinx is not used).

Some pages depend on what the tree contains (modules, examples, tools,
NEWS). Those are generated into ``doc/_generated/`` when the build starts,
so a module that is added or removed shows up in (or disappears from) the
API reference without editing any page. Modules whose optional third-party
dependencies are not installed are left out with a note in the build log.
"""

from __future__ import annotations

import importlib
import os
import sys

DOC = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOC)
sys.path.insert(0, ROOT)

import aiocoap.meta  # noqa: E402

project = "aiocoap"
author = "the aiocoap contributors"
copyright = "the aiocoap contributors; MIT licensed"
version = release = aiocoap.meta.version

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list = []
html_static_path: list = []
html_theme = "alabaster"
html_title = f"aiocoap {release}"

autodoc_member_order = "bysource"
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
}
# The signatures speak for themselves; type hints in them would repeat
# what the descriptions say, and unresolvable forward references would
# only produce noise.
autodoc_typehints = "none"

# References like :class:`Message` in docstrings are resolved where
# possible; the ones that can not be (eg. to not yet written modules) must
# not break the build, so nitpicky mode stays off.
nitpicky = False

GENERATED = os.path.join(DOC, "_generated")

# The modules of the reference, in reading order; everything else found in
# the package follows alphabetically.
FIRST_MODULES = [
    "aiocoap",
    "aiocoap.protocol",
    "aiocoap.message",
    "aiocoap.options",
    "aiocoap.interfaces",
    "aiocoap.error",
    "aiocoap.pipe",
    "aiocoap.defaults",
    "aiocoap.credentials",
    "aiocoap.transports",
    "aiocoap.proxy",
    "aiocoap.numbers",
    "aiocoap.numbers.codes",
    "aiocoap.numbers.constants",
    "aiocoap.numbers.contentformat",
    "aiocoap.numbers.optionnumbers",
    "aiocoap.numbers.types",
    "aiocoap.optiontypes",
    "aiocoap.resource",
    "aiocoap.util",
    "aiocoap.util.cli",
    "aiocoap.cli",
    "aiocoap.meta",
    "aiocoap.oscore",
]

# Packages that re-export names of their submodules; their pages show only
# the description, so that every object is documented once, where it is
# defined.
REEXPORTING = {"aiocoap", "aiocoap.numbers"}

# Command line tools: (program name, module, parser factory)
TOOLS = [
    ("aiocoap-client", "aiocoap.cli.client", "build_parser"),
    ("aiocoap-proxy", "aiocoap.cli.proxy", "build_parser"),
    ("aiocoap-rd", "aiocoap.cli.rd", "build_parser"),
    ("aiocoap-fileserver", "aiocoap.cli.fileserver", "build_parser"),
]


def _log():
    from sphinx.util import logging

    return logging.getLogger("aiocoap-doc")


def _discover_modules() -> list[str]:
    """Dotted names of all public modules of the package on disk"""
    found = []
    base = os.path.join(ROOT, "aiocoap")
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        if "__init__.py" not in filenames:
            dirnames[:] = []
            continue
        package = os.path.relpath(dirpath, ROOT).replace(os.sep, ".")
        found.append(package)
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("_"):
                found.append(f"{package}.{name[:-3]}")
    return found


def _importable(name: str) -> bool:
    """Whether autodoc can import the module. A missing third-party module
    (an optional dependency) is a reason to leave it out; any other error
    is reported as a warning, which fails a -W build."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and not e.name.startswith("aiocoap"):
            _log().info("leaving %s out of the reference: needs %s", name, e.name)
            return False
        _log().warning("module %s can not be imported: %s", name, e)
        return False
    except Exception as e:  # noqa: BLE001 (reported, then skipped)
        _log().warning("module %s can not be imported: %r", name, e)
        return False
    return True


def _write(name: str, text: str) -> None:
    """Write a generated page, leaving it untouched if unchanged (so Sphinx
    does not rebuild it needlessly)."""
    path = os.path.join(GENERATED, name)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _heading(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def _generate_module_pages(modules: list[str]) -> None:
    wanted = set()
    for name in modules:
        page = f"module-{name}.rst"
        wanted.add(page)
        options = "   :no-members:\n" if name in REEXPORTING else ""
        _write(
            page,
            f"{_heading(f'{name} module', '=')}\n"
            f".. automodule:: {name}\n{options}",
        )
    # Paths starting with / are relative to the documentation root, which
    # keeps them valid wherever this file is included.
    entries = "\n".join(f"   /_generated/module-{name}" for name in modules)
    wanted.add("modules.inc")
    _write(
        "modules.inc",
        ".. toctree::\n   :maxdepth: 1\n\n" + entries + "\n",
    )
    for stale in set(os.listdir(GENERATED)) - wanted:
        if stale.startswith("module-"):
            os.remove(os.path.join(GENERATED, stale))


def _generate_tool_sections() -> None:
    parts = []
    for prog, module, factory in TOOLS:
        if prog == "aiocoap-client":
            continue  # documented on the tools page itself
        if not os.path.exists(os.path.join(ROOT, *module.split(".")) + ".py"):
            continue
        if not _importable(module) or not hasattr(sys.modules[module], factory):
            continue
        parts.append(
            f"{_heading(prog, '-')}\n"
            f".. argparse::\n   :module: {module}\n   :func: {factory}\n   :prog: {prog}\n"
        )
    _write("tools-more.inc", "\n".join(parts) if parts else ".. No further tools are present yet.\n")


def _generate_examples() -> None:
    examples = os.path.join(ROOT, "examples")
    names = sorted(
        n for n in (os.listdir(examples) if os.path.isdir(examples) else []) if n.endswith(".py")
    )
    parts = []
    for name in names:
        parts.append(
            f"{_heading(name, '-')}\n"
            f".. literalinclude:: /../examples/{name}\n   :language: python\n   :linenos:\n"
        )
    _write("examples.inc", "\n".join(parts) if parts else "No examples are present in this tree.\n")


def _generate_news() -> None:
    if os.path.exists(os.path.join(ROOT, "NEWS")):
        _write("news.inc", ".. include:: /../NEWS\n")
    else:
        _write("news.inc", "No change log is present in this tree.\n")


def generate(app=None) -> None:
    """Create the pages in _generated/ for the current tree"""
    os.makedirs(GENERATED, exist_ok=True)
    present = set(_discover_modules())
    ordered = [m for m in FIRST_MODULES if m in present]
    ordered += sorted(present - set(ordered))
    _generate_module_pages([m for m in ordered if _importable(m)])
    _generate_tool_sections()
    _generate_examples()
    _generate_news()


def setup(app):
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True}
