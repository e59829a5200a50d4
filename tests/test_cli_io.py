"""Intermediate files: reading parts of normalized.h5ad gives exactly the parts of the whole."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ctra import results


@pytest.fixture()
def stored(tmp_path):
    rng = np.random.default_rng(1)
    n, g = 37, 50
    var = pd.DataFrame({"group": [""] * g, "expressed": rng.random(g) > 0.3}, index=[f"g{j}" for j in range(g)])
    obs = pd.DataFrame({"participant": [f"p{i // 2}" for i in range(n)]}, index=[f"s{i}" for i in range(n)])
    adata = ad.AnnData(
        obs=obs,
        var=var,
        uns={"levels": {"arm": ["a"], "time": ["t0", "t1"]}},
        layers={"vst": rng.normal(size=(n, g)), "counts": rng.poisson(5, (n, g)).astype(float)},
    )
    path = tmp_path / "normalized.h5ad"
    results.write_h5ad(adata, path)
    return adata, path


@pytest.mark.parametrize("block_bytes", [8 * 50 * 3, 64 << 20])  # 3 rows a block (uneven), or all at once
def test_read_normalized_subsets_equal_the_full_file(stored, monkeypatch, block_bytes):
    adata, path = stored
    monkeypatch.setattr(results, "READ_BLOCK_BYTES", block_bytes)
    names = ["g40", "g3", "g17", "absent"]
    part = results.read_normalized(path, names, layers=("vst", "counts"))
    assert part.var_names.tolist() == ["g3", "g17", "g40"]  # file order; unknown names ignored
    for layer in ("vst", "counts"):
        np.testing.assert_array_equal(part.layers[layer], adata[:, ["g3", "g17", "g40"]].layers[layer])
    pd.testing.assert_frame_equal(part.obs, adata.obs)
    assert part.uns["levels"]["time"].tolist() == ["t0", "t1"]

    expressed = results.read_normalized(path, lambda var: var["expressed"].to_numpy())
    assert set(expressed.layers) == {"vst"}
    np.testing.assert_array_equal(expressed.layers["vst"], adata.layers["vst"][:, adata.var["expressed"].to_numpy()])
    whole = results.read_normalized(path)
    np.testing.assert_array_equal(whole.layers["vst"], adata.layers["vst"])
