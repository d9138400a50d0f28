"""Smoke tests for the forest plot (Agg backend)."""
import sys

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lnsynth.pairwise import meta_analysis  # noqa: E402


def _res(method="REML", measure="RR"):
    y = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37, -0.34, 0.45, -0.02])
    v = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.007, 0.22, 0.004, 0.056, 0.073, 0.012, 0.53, 0.071])
    return meta_analysis(yi=y, vi=v, method=method, measure=measure, labels=[f"Trial {i}" for i in range(13)])


@pytest.mark.parametrize("method", ["REML", "FE"])
def test_forest_plot_renders(tmp_path, method):
    from lnsynth.plots.forest import forest_plot

    fig = forest_plot(_res(method))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(("RE Model (REML)" if method == "REML" else "FE Model (FE)") in t for t in texts)
    assert any("Trial 3" == t for t in texts)
    assert fig.axes[0].get_xscale() == "log"
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_forest_plot_identity_scale_and_labels():
    from lnsynth.plots.forest import forest_plot

    r = _res(measure="MD")
    fig = forest_plot(r, labels=[str(i) for i in range(13)], transf=None)
    assert fig.axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError, match="labels"):
        forest_plot(r, labels=["a"])


def test_forest_plot_batch_needs_index():
    from lnsynth.plots.forest import forest_plot

    br = meta_analysis(yi=np.array([[0.1, 0.2, 0.3], [0.2, 0.1, 0.0]]), vi=np.full((2, 3), 0.1))
    with pytest.raises(ValueError, match="index"):
        forest_plot(br)
    forest_plot(br[1])


def test_computation_does_not_import_plotting():
    import subprocess

    code = "import sys, lnsynth.pairwise as p; p.meta_analysis(yi=[0.1,0.2], vi=[0.1,0.1]); " \
           "print(any(m.startswith('matplotlib') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
