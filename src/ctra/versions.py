"""Versions of the packages that produced a result, for the report's methods section."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "ctra",
    "pydeseq2",
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "statsmodels",
    "snakemake",
    "plotly",
    "jinja2",
    "pyarrow",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
