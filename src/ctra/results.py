"""Results on disk: the one place for how ctra writes and reads its intermediate files.

* every output is written to a temporary name beside it and renamed into place only when complete
  (``atomic_path``), so a failed or killed job leaves no half file for Snakemake to trust;
* the TSV contract: tidy tables with a fixed float format, so reruns are byte-identical
  (``write_tsv``), read back with ids kept as text (``read_table``, ``TEXT_COLUMNS``);
* partial ``.h5ad`` reads: a later stage reads only the genes and layers it needs
  (``read_normalized``, ``read_var``), in blocks of whole rows.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

FLOAT_FORMAT = "%.10g"
READ_BLOCK_BYTES = 64 << 20


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are shared like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """Tidy TSV with a fixed float format so reruns are byte-identical."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def write_h5ad(adata, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def read_normalized(
    path: str | Path,
    genes: Callable[[pd.DataFrame], np.ndarray] | Iterable[str] | None = None,
    layers: tuple[str, ...] = ("vst",),
):
    """``normalized.h5ad`` with only the given layers, for only some genes (``None``: all; names; or a
    function of ``var`` returning a boolean mask).

    Each later stage needs a few dozen genes (the null draws: the expressed ones), and loading every
    layer of a biobank-sized file would cost gigabytes per stage. Rows are read in blocks of
    whole rows (sequential reads) and the columns picked from each block.
    """
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        var = read_elem(handle["var"])
        if genes is None:
            columns = np.arange(len(var))
        elif callable(genes):
            columns = np.flatnonzero(np.asarray(genes(var), dtype=bool))
        else:
            columns = np.flatnonzero(var.index.isin(list(genes)))
        data = {name: _read_columns(handle["layers"][name], columns) for name in layers if name in handle["layers"]}
        return ad.AnnData(
            obs=read_elem(handle["obs"]), var=var.iloc[columns], uns=read_elem(handle["uns"]), layers=data
        )


def read_var(path: str | Path) -> pd.DataFrame:
    """The gene annotation (``var``) of every gene of an ``.h5ad``, without any expression values."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        return read_elem(handle["var"])


def _read_columns(dataset, columns: np.ndarray) -> np.ndarray:
    """``dataset[:, columns]`` of a dense 2-D HDF5 dataset, read in row blocks of ``READ_BLOCK_BYTES``."""
    n_rows, n_columns = dataset.shape
    if len(columns) == n_columns:
        return dataset[()]
    out = np.empty((n_rows, len(columns)), dtype=dataset.dtype)
    step = max(1, READ_BLOCK_BYTES // max(1, dataset.dtype.itemsize * n_columns))
    for start in range(0, n_rows, step):
        out[start : start + step] = dataset[start : start + step][:, columns]
    return out


TEXT_COLUMNS = (
    "sample",
    "participant",
    "arm",
    "time",
    "period",
    "gene",
    "group",
    "matched_id",
    "reason",
    "score",
    "model",
    "role",
    "contrast",
    "term",
    "loo_participant",
    "note",
    "kind",
)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one of our TSVs back with ids kept as text (so '007' stays '007', '6' stays a level)."""
    return pd.read_csv(path, sep="\t", dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False, na_values=[""])


def _plain(value: object) -> object:
    """JSON fallback for numpy values that come back from .h5ad ``uns``."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_json(value: object, path: str | Path) -> None:
    """Indented, key-sorted JSON (model.json), numpy values as plain lists and numbers."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=_plain) + "\n")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
