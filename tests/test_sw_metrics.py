"""Size / BOPs counting on DigitsNet, by hand."""

import torch

from apotflow.sw.metrics import bops_metrics, model_metrics, size_metrics
from apotflow.sw.models import DigitsNet
from apotflow.sw.prune import compute_masks, slice_pruned

KEYS = {
    "model_size_bits",
    "size_fp32_bits",
    "size_reduction",
    "bops",
    "bops_fp32",
    "bops_reduction",
    "macs",
    "macs_fp32",
    "macs_nonzero",
    "counting_rules",
}


def test_unpruned_counts_by_hand():
    m = DigitsNet()
    macs = [16 * 9 * 64, 16 * 16 * 9 * 64, 16 * 16 * 9 * 64, 32 * 16 * 9 * 16, 32 * 10]
    bits = [(8, 5), (4, 4), (4, 4), (4, 4), (8, 8)]
    r = bops_metrics(m, (1, 8, 8))
    assert r["macs"] == r["macs_fp32"] == sum(macs)
    assert r["bops"] == sum(n * w * a for n, (w, a) in zip(macs, bits))
    assert r["bops_fp32"] == sum(macs) * 1024
    weights = [16 * 9, 16 * 16 * 9, 16 * 16 * 9, 32 * 16 * 9, 320]
    s = size_metrics(m, (1, 8, 8))
    assert s["model_size_bits"] == sum(n * w for n, (w, _) in zip(weights, bits))
    assert s["size_fp32_bits"] == 32 * sum(weights)


def test_pruned_counts_and_keys():
    torch.manual_seed(0)
    m = DigitsNet()
    compute_masks(m, 0.3)
    r = model_metrics(m, (1, 8, 8))
    assert KEYS <= set(r)
    c1, c2, c4 = 12, 12, 23
    assert r["macs"] == c1 * 9 * 64 + 2 * c1 * c2 * 9 * 64 + c4 * c1 * 9 * 16 + c4 * 10
    assert r["macs_nonzero"] <= r["macs"] < r["macs_fp32"]
    assert r["bops_reduction"] > 1 and r["size_reduction"] > 1
    # the sliced net counts the same kept MACs
    assert bops_metrics(slice_pruned(m), (1, 8, 8))["macs"] == r["macs"]
