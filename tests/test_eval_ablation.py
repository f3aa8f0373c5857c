"""Seeded QE ablation at the full rank budget (qesim.eval.ablation) on a tiny random Llama."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sklearn")

from qesim.eval.ablation import AblationConfig, run_ablation_on, variant_opts, write_ablation_report  # noqa: E402


def test_variants_keep_the_full_active_rank():
    for v in ("full", "se_random_clustering"):
        o = variant_opts(v, 64, 8)
        assert o["qe_shared_rank"] + o["qe_routed_rank"] == 64
    assert variant_opts("se_only", 64, 8)["qe_shared_rank"] == 64
    assert variant_opts("re_only", 64, 8)["qe_routed_rank"] == 64


def test_seeded_ablation_runs_and_reports(tmp_path):
    torch.manual_seed(0)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    m = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 128, (20, 24), generator=torch.Generator().manual_seed(1))

    def calib(seed):
        g = torch.Generator().manual_seed(seed)
        sel = torch.randperm(12, generator=g)[:8]
        return [{"input_ids": ids[sel[i:i + 4]]} for i in range(0, 8, 4)]

    ac = AblationConfig(model="tiny", seeds=(0, 1), rank=8, n_routed=2)
    res = run_ablation_on(m, calib, ids[12:], ac)
    assert set(res.nll) == {"full", "se_only", "re_only", "se_random_routing", "se_random_clustering"}
    assert all(len(v) == 2 and len(v[0]) == 8 for v in res.nll.values())
    assert not (res.nll["full"][0] == res.nll["full"][1]).all()  # different calibration subsets
    paths = write_ablation_report(res, tmp_path, "qesim accuracy --ablation-seeds 0,1 (test)", 1.0, 1.0)
    md = paths[1].read_text()
    assert "seed 1" in md and "significant" in md and "SE only (rank R)" in md


def test_ablation_variants_flag_rejects_unknown(tmp_path, capsys):
    from qesim.cli import main

    assert main(["accuracy", "--ablation-seeds", "0", "--ablation-variants", "se_only,bogus", "--out",
                 str(tmp_path), "--quiet"]) == 2
    assert "--ablation-variants: unknown bogus" in capsys.readouterr().err
