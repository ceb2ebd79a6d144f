"""Sequence helpers and GRU models of the au2blend family: packing, masks, NegReLU, attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models.grunet import (
    BahdanauAttention,
    GruNetConfig,
    GruRegressor,
    GruSeq2Seq,
    build_grunet,
    negrelu_penalty,
    run_gru,
)
from core.sequence import (
    MaskedRegressionStats,
    collate_sorted,
    length_mask,
    masked_mean,
    masked_mse,
)

LENGTHS = torch.tensor([9, 7, 7, 4, 2])       # longest first, as collate_sorted makes them


def _r2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    stats = MaskedRegressionStats()
    stats.update(pred, target, mask)
    return stats.r2()


def _batch(seed: int = 0, din: int = 5, dout: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, T = len(LENGTHS), int(LENGTHS.max())
    x = torch.randn(B, T, din, generator=g)
    y = torch.rand(B, T, dout, generator=g)
    pad = ~length_mask(LENGTHS, T)
    x[pad], y[pad] = 0.0, 0.0
    return x, y, pad


def _model(**changes) -> GruRegressor | GruSeq2Seq:
    torch.manual_seed(0)
    return build_grunet(GruNetConfig(input_dim=5, output_dim=3, hidden_size=8, attention_dim=4, **changes)).eval()


# ---------------------------------------------------------------- sequence helpers

def test_length_mask():
    m = length_mask(torch.tensor([3, 1, 0]), 4)
    assert m.tolist() == [[True, True, True, False], [True, False, False, False], [False] * 4]
    assert length_mask(torch.tensor([2, 5])).shape == (2, 5)


def test_collate_sorted_whole_sequences():
    N, T = 4, 6
    x = torch.arange(N * T, dtype=torch.float32).reshape(N, T, 1)
    lengths = torch.tensor([2, 6, 4, 3])
    b = collate_sorted({"x": x}, lengths, torch.tensor([0, 2, 3]))
    assert b.index.tolist() == [2, 3, 0] and b.lengths.tolist() == [4, 3, 2]
    assert b.lengths.device.type == "cpu" and b.lengths.dtype == torch.long
    assert b.tensors["x"].shape == (3, 4, 1)                       # padded to the batch's longest, not T
    assert b.tensors["x"][0, :, 0].tolist() == [12, 13, 14, 15]
    assert b.tensors["x"][2, :2, 0].tolist() == [0, 1]
    assert b.mask.tolist() == [[True] * 4, [True] * 3 + [False], [True] * 2 + [False] * 2]


def test_collate_sorted_windows():
    N, T = 3, 10
    x = torch.arange(N * T, dtype=torch.float32).reshape(N, T, 1)
    lengths = torch.tensor([10, 4, 7])
    b = collate_sorted({"x": x}, lengths, torch.tensor([0, 1, 2]), starts=torch.tensor([5, 0, 1]), max_length=4)
    # windows: row 0 frames 5..8 (4), row 1 frames 0..3 (4), row 2 frames 1..4 (4)
    assert b.lengths.tolist() == [4, 4, 4]
    assert b.index.tolist() == [0, 1, 2]
    assert b.tensors["x"][0, :, 0].tolist() == [5, 6, 7, 8]
    assert b.tensors["x"][2, :, 0].tolist() == [21, 22, 23, 24]
    b = collate_sorted({"x": x}, lengths, torch.tensor([0, 1]), starts=torch.tensor([8, 2]), max_length=5)
    assert b.lengths.tolist() == [2, 2] and b.tensors["x"][0, :, 0].tolist() == [8, 9]


def test_masked_metrics_ignore_padding():
    x, y, pad = _batch()
    pred = y + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    mask = ~pad
    mse, r2 = masked_mse(pred, y, mask), _r2(pred, y, mask)
    garbage_pred, garbage_y = pred.clone(), y.clone()
    garbage_pred[pad], garbage_y[pad] = 1e3, -1e3
    assert masked_mse(garbage_pred, garbage_y, mask) == mse
    assert _r2(garbage_pred, garbage_y, mask) == pytest.approx(r2, abs=1e-12)
    # by hand over the real frames only
    p, t = pred[mask].numpy().astype(np.float64), y[mask].numpy().astype(np.float64)   # (F, C)
    assert float(mse) == pytest.approx(((p - t) ** 2).mean(), rel=1e-6)
    ss_tot = ((t - t.mean(0)) ** 2).sum()
    assert r2 == pytest.approx(1.0 - ((p - t) ** 2).sum() / ss_tot, rel=1e-9)
    assert 0.0 < r2 < 1.0


def test_masked_mean_hand_values():
    values = torch.tensor([[[1.0, 3.0], [5.0, 7.0]], [[100.0, 100.0], [2.0, 4.0]]])   # (2, 2, 2)
    mask = torch.tensor([[True, True], [False, True]])
    assert float(masked_mean(values, mask)) == pytest.approx((1 + 3 + 5 + 7 + 2 + 4) / 6)
    assert float(masked_mean(values[..., 0], mask)) == pytest.approx((1 + 5 + 2) / 3)


def test_regression_stats_over_batches_equal_one_pass():
    x, y, pad = _batch()
    pred = y.flip(-1)
    whole = MaskedRegressionStats()
    whole.update(pred, y, ~pad)
    parts = MaskedRegressionStats()
    for rows in ([0, 1], [2], [3, 4]):
        parts.update(pred[rows], y[rows], ~pad[rows])
    assert parts.frames == whole.frames == int(LENGTHS.sum())
    assert parts.mse() == pytest.approx(whole.mse(), rel=1e-12)
    assert parts.r2() == pytest.approx(whole.r2(), rel=1e-12)
    perfect = MaskedRegressionStats()
    perfect.update(y, y, ~pad)
    assert perfect.mse() == 0.0 and perfect.r2() == 1.0
    mean_only = MaskedRegressionStats()            # predicting each channel's mean gives R^2 = 0
    channel_mean = y[~pad].mean(0)
    mean_only.update(channel_mean.expand_as(y), y, ~pad)
    assert mean_only.r2() == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(MaskedRegressionStats().r2())


# ---------------------------------------------------------------- NegReLU

def test_negrelu_zero_for_non_negative_outputs():
    _, y, pad = _batch()
    assert float(negrelu_penalty(y, ~pad)) == 0.0
    assert float(negrelu_penalty(torch.zeros_like(y), ~pad)) == 0.0
    shifted = y.clone()
    shifted[pad] = -5.0                                # negative padding does not count
    assert float(negrelu_penalty(shifted, ~pad)) == 0.0


def test_negrelu_hand_value():
    pred = torch.tensor([[[-0.5, 0.2], [0.1, -0.1]], [[-9.0, -9.0], [0.3, 0.0]]])      # (2, 2, 2)
    mask = torch.tensor([[True, True], [False, True]])
    assert float(negrelu_penalty(pred, mask)) == pytest.approx((0.5 + 0.1) / 6)
    grad_pred = pred.clone().requires_grad_(True)
    negrelu_penalty(grad_pred, mask).backward()
    assert grad_pred.grad[0, 0].tolist() == pytest.approx([-1 / 6, 0.0])   # pushes negatives up only
    assert grad_pred.grad[1, 0].tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- packing

def test_packing_equals_each_sequence_alone():
    x, _, _ = _batch()
    model = _model()
    packed = model(x, LENGTHS, packed=True)
    _, h_packed = run_gru(model.gru, x, LENGTHS, packed=True)
    for i, n in enumerate(LENGTHS.tolist()):
        alone = model(x[i : i + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(packed[i, :n], alone[0], rtol=1e-5, atol=1e-6)
        _, h_alone = model.gru(x[i : i + 1, :n])
        torch.testing.assert_close(h_packed[:, i], h_alone[:, 0], rtol=1e-5, atol=1e-6)


def test_padded_run_same_real_frames_different_final_state():
    """What packing changes for a forward GRU: not the states on real frames,
    only the final state (which has read the padding without packing)."""
    x, _, pad = _batch()
    model = _model()
    out_packed, h_packed = run_gru(model.gru, x, LENGTHS, packed=True)
    out_padded, h_padded = run_gru(model.gru, x, LENGTHS, packed=False)
    torch.testing.assert_close(out_packed[~pad], out_padded[~pad], rtol=1e-5, atol=1e-6)
    assert (out_packed[pad] == 0).all() and not (out_padded[pad] == 0).all()
    torch.testing.assert_close(h_packed[:, 0], h_padded[:, 0], rtol=1e-5, atol=1e-6)   # the longest: no padding
    assert (h_packed[:, 1:] - h_padded[:, 1:]).abs().amax() > 1e-3


def test_seq2seq_packing_equals_each_sequence_alone():
    x, y, pad = _batch()
    for attention in (False, True):
        model = _model(seq2seq=True, attention=attention)
        for targets in (None, y):
            batch = model(x, LENGTHS, packed=True, targets=targets)
            for i, n in enumerate(LENGTHS.tolist()):
                alone = model(x[i : i + 1, :n], torch.tensor([n]), packed=True,
                              targets=None if targets is None else targets[i : i + 1, :n])
                torch.testing.assert_close(batch[i, :n], alone[0], rtol=1e-5, atol=1e-6)
        # unpacked, the decoder starts from a state that has read the padding: shorter rows change
        padded = model(x, LENGTHS, packed=False)
        packed = model(x, LENGTHS, packed=True)
        torch.testing.assert_close(padded[0], packed[0], rtol=1e-5, atol=1e-6)
        assert (padded[-1, :2] - packed[-1, :2]).abs().amax() > 1e-4


# ---------------------------------------------------------------- seq2seq and attention

def test_attention_weights_sum_to_one_and_skip_padding():
    x, y, pad = _batch()
    model = _model(seq2seq=True, attention=True)
    for targets in (None, y):
        out, attn = model(x, LENGTHS, packed=True, targets=targets, return_attention=True)
        B, T = x.shape[:2]
        assert out.shape == (B, T, 3) and attn.shape == (B, T, T)
        torch.testing.assert_close(attn.sum(-1), torch.ones(B, T))
        assert (attn >= 0).all()
        assert (attn.permute(0, 2, 1)[pad] == 0).all()          # no weight on padding frames
        assert (attn[~pad] > 0).any(-1).all()


def test_bahdanau_hand_formula():
    torch.manual_seed(3)
    att = BahdanauAttention(query_dim=4, key_dim=6, attention_dim=5)
    s = torch.randn(2, 4)
    h = torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    context, weights = att(s, att.keys(h), h, mask)
    W, U, b, v = att.query.weight, att.key.weight, att.key.bias, att.score.weight[0]
    for i in range(2):
        e = torch.stack([v @ torch.tanh(W @ s[i] + U @ h[i, j] + b) for j in range(3)])
        e = e.masked_fill(~mask[i], float("-inf"))
        a = torch.softmax(e, 0)
        torch.testing.assert_close(weights[i], a)
        torch.testing.assert_close(context[i], a @ h[i])
    assert weights[1, 2] == 0


def test_fused_teacher_forcing_equals_stepwise():
    x, y, _ = _batch()
    model = _model(seq2seq=True)
    for packed in (False, True):
        fused = model(x, LENGTHS, packed=packed, targets=y)
        stepwise = model(x, LENGTHS, packed=packed, targets=y, stepwise=True)
        torch.testing.assert_close(fused, stepwise, rtol=1e-5, atol=1e-6)
    # the step-wise cell is nn.GRUCell's cell on the decoder's weights
    cell = torch.nn.GRUCell(model.decoder.input_size, 8)
    d = model.decoder
    cell.load_state_dict({"weight_ih": d.weight_ih_l0, "weight_hh": d.weight_hh_l0, "bias_ih": d.bias_ih_l0, "bias_hh": d.bias_hh_l0})
    inp, st = torch.randn(5, d.input_size), torch.randn(5, 8)
    torch.testing.assert_close(model.cell(inp, st), cell(inp, st))


@pytest.mark.parametrize("attention", [False, True])
def test_teacher_forcing_and_free_running(attention):
    x, y, _ = _batch()
    model = _model(seq2seq=True, attention=attention)
    free = model(x, LENGTHS)
    # free running == teacher forcing with the model's own previous outputs
    torch.testing.assert_close(model(x, LENGTHS, targets=free), free, rtol=1e-5, atol=1e-6)
    # output t reads target t-1: changing target frame 4 changes outputs from frame 5 on only
    y2 = y.clone()
    y2[:, 4] += 1.0
    a, b = model(x, LENGTHS, targets=y), model(x, LENGTHS, targets=y2)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert (a[:, 5] - b[:, 5]).abs().amax() > 1e-4


def test_gradients_reach_every_parameter():
    x, y, pad = _batch()
    for changes in ({}, {"seq2seq": True}, {"seq2seq": True, "attention": True}):
        model = _model(**changes).train()
        pred = model(x, LENGTHS, packed=True, **({"targets": y} if changes else {}))
        (masked_mse(pred, y, ~pad) + negrelu_penalty(pred, ~pad)).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, (changes, missing)


def test_constructor_args_rebuild():
    model = _model(seq2seq=True, attention=True)
    args = model.constructor_args()
    assert args["hidden_size"] == 8 and args["attention"] is True
    rebuilt = build_grunet(GruNetConfig(**args))
    rebuilt.load_state_dict(model.state_dict())
    x, _, _ = _batch()
    torch.testing.assert_close(rebuilt.eval()(x, LENGTHS), model(x, LENGTHS))
    assert isinstance(_model(attention=True), GruRegressor)     # attention needs seq2seq
