#!/usr/bin/env python3
"""Installation script of aiocoap.

The metadata lives here (rather than only in pyproject.toml) because the
0.4b2 manual documents ``setup.py`` as the place where the extras are
defined; pyproject.toml only names the build backend.
"""

import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
meta = {}
with open(os.path.join(here, "aiocoap", "meta.py"), encoding="utf-8") as f:
    exec(f.read(), meta)

with open(os.path.join(here, "README.rst"), encoding="utf-8") as f:
    long_description = f.read()

extras_require = {
    "linkheader": ["LinkHeader"],
    "oscore": ["cryptography >= 3.1", "cbor2", "filelock"],
    "tinydtls": ["DTLSSocket >= 0.1.11"],
    "prettyprint": ["pygments >= 2.1", "cbor2"],
    "fileserver": ["watchfiles"],
    "ws": ["websockets >= 13"],
    "docs": ["sphinx >= 5", "sphinx-argparse"],
    "test": [
        "pytest >= 7",
        "pytest-xdist",
        "pytest-timeout",
        "hypothesis >= 6",
        "uvloop; platform_system != 'Windows'",
        "mypy >= 1.10",
    ],
    # the coverage guided engine of tools/fuzz-long (which falls back to
    # hypothesis without it)
    "fuzz": ["atheris; platform_system == 'Linux'"],
}
extras_require["all"] = sorted(
    {
        dep
        for name, deps in extras_require.items()
        # linkheader: the library never imports LinkHeader (its link format
        # module is its own); the extra stays for applications using it
        if name not in ("docs", "test", "fuzz", "linkheader")
        for dep in deps
    }
)

setup(
    name="aiocoap",
    version=meta["version"],
    description="Python CoAP library",
    long_description=long_description,
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests", "tests.*"]),
    package_data={"aiocoap": ["py.typed"]},
    extras_require=extras_require,
    entry_points={
        "console_scripts": [
            "aiocoap-client = aiocoap.cli.client:sync_main",
            "aiocoap-proxy = aiocoap.cli.proxy:sync_main",
            "aiocoap-rd = aiocoap.cli.rd:sync_main",
            "aiocoap-fileserver = aiocoap.cli.fileserver:sync_main",
        ]
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Framework :: AsyncIO",
        "Intended Audience :: Developers",
        "License :: OSI Approved :: MIT License",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: Internet",
        "Topic :: Software Development :: Libraries :: Python Modules",
    ],
)
