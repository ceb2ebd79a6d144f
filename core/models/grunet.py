"""GRU regressors from per-frame inputs to per-frame outputs (the ``au2blend`` family).

Two architectures, one config:

- :class:`GruRegressor` (``seq2seq=False``): a GRU (Cho et al. 2014) over the
  input frames and a linear head on each frame's state. The head is linear on
  purpose (no sigmoid): targets in [0, 1] are fitted as a plain regression,
  and :func:`negrelu_penalty` is the optional push against negative outputs.
- :class:`GruSeq2Seq` (``seq2seq=True``): an encoder GRU over the inputs and a
  decoder GRU cell that emits one output frame per step, fed its previous
  output frame, the encoder state of the same frame (input and output are
  frame-aligned; without it the decoder would have to rebuild a whole clip
  from one vector) and, with ``attention=True``, a Bahdanau context over all
  encoder states (:class:`BahdanauAttention`). The decoder starts from the
  encoder's final state.

Variable-length batches come padded, longest first (see
:func:`core.sequence.collate_sorted`). With ``packed=True`` the GRU runs on a
``pack_padded_sequence(..., enforce_sorted=True)``: each sequence stops at its
own length, so its final state is the state after its last real frame. With
``packed=False`` the padded batch is run as is: a forward GRU's states on real
frames are the same (padding comes after them), but the final state has also
read the padding frames, and the padding costs compute. (On a CPU, though,
PyTorch's packed GRU measured 2-3x slower than the padded one on this
family's batches: it trades the padding for per-step bookkeeping.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.sequence import masked_mean


@dataclass
class GruNetConfig:
    input_dim: int = 17
    output_dim: int = 61
    hidden_size: int = 128     # the research notes' GRU
    num_layers: int = 1
    dropout: float = 0.0       # on the GRU states before the head (and between GRU layers)
    seq2seq: bool = False
    attention: bool = False    # Bahdanau attention in the seq2seq decoder (ignored without seq2seq)
    attention_dim: int = 16


def run_gru(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, *, packed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a batch-first GRU over padded ``x`` (B, T, D), longest first.

    Returns the states (B, T, H) (zeros at padding when packed) and the final
    state (num_layers, B, H): after each sequence's last real frame when
    ``packed``, after frame T-1 (padding included) otherwise.
    """
    if not packed:
        return gru(x)
    seq = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=True)
    out, h_n = gru(seq)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])   # (B, T, H)
    return out, h_n


def negrelu_penalty(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """NegReLU penalty: mean of relu(-pred) over the real frames (and channels) of (B, T, C).

    Zero when every output is non-negative; grows linearly with how far
    outputs undershoot 0, so ``weight * penalty`` pushes a linear head towards
    the [0, 1] range of blendshape weights without a squashing output layer.
    """
    return masked_mean(torch.relu(-pred), mask)


class GruRegressor(nn.Module):
    """Per-frame GRU regression: y_t = W dropout(h_t) + b."""

    def __init__(self, config: GruNetConfig):
        super().__init__()
        self.config = c = config
        self.gru = nn.GRU(c.input_dim, c.hidden_size, c.num_layers, batch_first=True,
                          dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size, c.output_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, *, packed: bool = False) -> torch.Tensor:
        """x (B, T, Din), lengths (B,) non-increasing -> (B, T, Dout)."""
        h, _ = run_gru(self.gru, x, lengths, packed=packed)                  # (B, T, H)
        return self.head(self.dropout(h))

    def constructor_args(self) -> dict:
        """Enough to rebuild the model from a checkpoint alone."""
        return asdict(self.config)


class BahdanauAttention(nn.Module):
    """Additive attention (Bahdanau, Cho & Bengio 2015, "Neural Machine Translation
    by Jointly Learning to Align and Translate", eq. 6 and appendix A.1.2):

        e_tj = v^T tanh(W s_{t-1} + U h_j),  a_tj = softmax_j(e_tj),  c_t = sum_j a_tj h_j

    with s_{t-1} the previous decoder state and h_j the encoder states; padding
    frames get e_tj = -inf, so their weight is exactly 0.
    """

    def __init__(self, query_dim: int, key_dim: int, attention_dim: int):
        super().__init__()
        self.query = nn.Linear(query_dim, attention_dim, bias=False)   # W
        self.key = nn.Linear(key_dim, attention_dim)                   # U (its bias is the b inside tanh)
        self.score = nn.Linear(attention_dim, 1, bias=False)           # v

    def keys(self, encoder_states: torch.Tensor) -> torch.Tensor:
        """U h_j for every frame, computed once per sequence: (B, T, H) -> (B, T, A)."""
        return self.key(encoder_states)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q), keys (B, T, A), values (B, T, H), mask (B, T) True at real
        frames -> context (B, H), weights (B, T) summing to 1 over real frames."""
        e = self.score(torch.tanh(keys + self.query(query)[:, None])).squeeze(-1)   # (B, T)
        weights = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)        # (B, T)
        return torch.bmm(weights[:, None], values).squeeze(1), weights              # (B, H), (B, T)


class GruSeq2Seq(nn.Module):
    """Encoder GRU + step-wise GRU-cell decoder, optionally with Bahdanau attention.

    Step t (s_{-1} = the encoder's final top-layer state, y_{-1} = 0, a face at rest)::

        c_t = attention(s_{t-1}, h_{0..T-1})                 (with attention only)
        s_t = GRUCell([y_{t-1}, h_t, c_t], s_{t-1})
        y_t = W dropout([s_t, c_t]) + b

    Teacher forcing: pass ``targets`` (training) and y_{t-1} is the ground-truth
    previous frame; leave it out (evaluation) and the decoder is fed its own
    previous prediction (free running, as in use).

    The decoder cell's weights live in a one-layer :class:`torch.nn.GRU`
    (``self.decoder``) and each step calls :func:`torch.gru_cell` on them, the
    function :class:`torch.nn.GRUCell` calls. Under teacher forcing without
    attention every step's input is known in advance, so the same cell runs
    over all steps in one ``self.decoder(...)`` call: the same numbers
    (``tests/core/test_au2blend_models.py`` checks it) at a fraction of the
    Python-loop cost.
    """

    def __init__(self, config: GruNetConfig):
        super().__init__()
        self.config = c = config
        H = c.hidden_size
        self.encoder = nn.GRU(c.input_dim, H, c.num_layers, batch_first=True,
                              dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.attention = BahdanauAttention(H, H, c.attention_dim) if c.attention else None
        context = H if c.attention else 0
        self.decoder = nn.GRU(c.output_dim + H + context, H, 1, batch_first=True)   # the decoder cell's weights
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(H + context, c.output_dim)

    def cell(self, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One decoder step: inputs (B, Dout + H [+ H]), state (B, H) -> (B, H)."""
        d = self.decoder
        # nn.GRU registers its per-layer parameters by name at run time, so torch's
        # Module.__getattr__ can only type them as Tensor | Module; they are Parameters.
        w_ih, w_hh = cast(torch.Tensor, d.weight_ih_l0), cast(torch.Tensor, d.weight_hh_l0)
        b_ih, b_hh = cast(torch.Tensor, d.bias_ih_l0), cast(torch.Tensor, d.bias_hh_l0)
        return torch.gru_cell(inputs, state, w_ih, w_hh, b_ih, b_hh)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        *,
        packed: bool = False,
        targets: torch.Tensor | None = None,
        return_attention: bool = False,
        stepwise: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, Din), lengths (B,) non-increasing, targets (B, T, Dout) for
        teacher forcing -> (B, T, Dout) [and attention weights (B, T_dec, T_enc),
        zero-width without attention]. ``stepwise`` forces the per-step loop
        even where the fused teacher-forced pass applies."""
        B, T, _ = x.shape
        enc, h_n = run_gru(self.encoder, x, lengths, packed=packed)           # (B, T, H), (layers, B, H)
        s = h_n[-1]                                                           # (B, H)
        start = x.new_zeros(B, 1, self.config.output_dim)                     # (B, 1, Dout): y_{-1}
        if targets is not None and self.attention is None and not stepwise:
            y_prev = torch.cat([start, targets[:, :-1]], dim=1)               # (B, T, Dout)
            states, _ = self.decoder(torch.cat([y_prev, enc], dim=-1), s[None].contiguous())   # (B, T, H)
            out = self.head(self.dropout(states))                             # (B, T, Dout)
            return (out, x.new_zeros(B, T, 0)) if return_attention else out
        mask = torch.arange(T, device=x.device)[None] < lengths.to(x.device)[:, None]   # (B, T)
        keys = self.attention.keys(enc) if self.attention is not None else None          # (B, T, A)
        enc_steps = enc.unbind(1)            # T x (B, H); one backward for all slices, not T full-size ones
        teacher = targets.unbind(1) if targets is not None else None
        y_prev = start[:, 0]                                                  # (B, Dout)
        outputs, maps = [], []
        for t in range(T):
            parts = [y_prev, enc_steps[t]]
            if self.attention is not None:
                context, weights = self.attention(s, keys, enc, mask)         # (B, H), (B, T)
                parts.append(context)
                maps.append(weights)
            s = self.cell(torch.cat(parts, dim=-1), s)                        # (B, H)
            feats = s if self.attention is None else torch.cat([s, context], dim=-1)
            y = self.head(self.dropout(feats))                                # (B, Dout)
            outputs.append(y)
            y_prev = teacher[t] if teacher is not None else y
        out = torch.stack(outputs, dim=1)                                     # (B, T, Dout)
        if return_attention:
            attn = torch.stack(maps, dim=1) if maps else x.new_zeros(B, T, 0)  # (B, T, T)
            return out, attn
        return out

    def constructor_args(self) -> dict:
        return asdict(self.config)


def build_grunet(config: GruNetConfig) -> GruRegressor | GruSeq2Seq:
    return GruSeq2Seq(config) if config.seq2seq else GruRegressor(config)
