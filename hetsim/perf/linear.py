"""Gated DeltaNet (linear-attention) kernels of one layer on one rank: the shape a measured
GDN grid is keyed by, and the datasheet roofline of its two kernels per phase (the causal
convolution, then the recurrence) that carries a grid past its edges or stands in for it.
DESIGN.md, "Linear-attention layers", states the FLOPs and bytes and why."""
from __future__ import annotations

from dataclasses import dataclass

from ..precision import PRECISION_BYTES

__all__ = ["GDN_CHUNK", "GdnShape", "LinearLayers"]

#: Tokens per chunk of the chunked gated delta rule (flash-linear-attention's
#: chunk_gated_delta_rule, which SGLang and vLLM run for Gated DeltaNet prefill: BT = 64).
GDN_CHUNK = 64


@dataclass(frozen=True)
class GdnShape:
    """One linear layer's heads on one rank (``key``: what aiconfigurator-core's gdn_perf
    tables time a kernel at), the state's element bytes and the activations'."""
    k_heads: int
    head_k_dim: int
    v_heads: int
    head_v_dim: int
    conv_kernel: int
    state_bytes: float = 4.0
    act_bytes: float = 2.0

    @classmethod
    def of(cls, linear, tp: int, act_bytes: float) -> GdnShape:
        """``linear`` (a model's :class:`~hetsim.models.LinearAttention`) split over ``tp``
        ranks; heads are replicated when there are fewer than ranks."""
        return cls(-(-linear.num_k_heads // tp), linear.head_k_dim,
                   -(-linear.num_v_heads // tp), linear.head_v_dim, linear.conv_kernel,
                   PRECISION_BYTES[linear.state_dtype], act_bytes)

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        return (self.k_heads, self.head_k_dim, self.v_heads, self.head_v_dim, self.conv_kernel)

    @property
    def conv(self) -> int:
        """Channels of the causal convolution: q, k and v."""
        return 2 * self.k_heads * self.head_k_dim + self.v_heads * self.head_v_dim

    @property
    def _io(self) -> float:
        """Activation bytes per token: the convolution's in and out, the recurrence's q/k/v in
        and o out."""
        return self.act_bytes * (3 * self.conv + self.v_heads * self.head_v_dim)

    @property
    def _state(self) -> float:
        """One sequence's recurrent state, bytes."""
        return self.v_heads * self.head_k_dim * self.head_v_dim * self.state_bytes

    def decode(self) -> tuple[float, float]:
        """(FLOPs, bytes) per sequence of one decode token: decay, k.S, the rank-1 update and
        q.S (each dk x dv per value head) and the convolution; the state and the convolution's
        last conv_kernel - 1 inputs (bf16) read and written, and the activations."""
        dk, dv = self.head_k_dim, self.head_v_dim
        flops = self.v_heads * 8 * dk * dv + 2 * self.conv * self.conv_kernel
        return flops, self._io + 2 * self._state + 2 * self.conv * (self.conv_kernel - 1) * 2

    def prefill(self) -> tuple[float, float, float]:
        """(FLOPs per token, activation bytes per token, state bytes per chunk): per value
        head the state products (q.S, w.S, the update: 3 x 2 dk dv) and the intra-chunk ones
        (q.k^T, k.k^T, w = T.k: 3 x 2 C dk; attn.v, u = T.v: 2 x 2 C dv), and each chunk's
        boundary state written and read."""
        dk, dv, c = self.head_k_dim, self.head_v_dim, GDN_CHUNK
        flops = self.v_heads * (6 * dk * dv + 2 * c * (3 * dk + 2 * dv))
        return flops + 2 * self.conv * self.conv_kernel, self._io, 2 * self._state

    def decode_time(self, pm, batch: int, precision: str = "bf16") -> float:
        """The roofline of one layer's decode kernels for ``batch`` sequences on ``pm``."""
        flops, nbytes = self.decode()
        return pm.linear_attention_time(batch * flops, batch * nbytes, precision)

    def prefill_time(self, pm, chunks, precision: str = "bf16") -> float:
        """The roofline of one layer's prefill kernels over ``chunks`` [(new tokens, context)]:
        only the new tokens count (the context before them is the state), plus a state
        written and read per GDN_CHUNK tokens and per sequence."""
        per_token, io, state = self.prefill()
        q = sum(n for n, _ in chunks)
        states = sum(-(-n // GDN_CHUNK) + 1 for n, _ in chunks)
        return pm.linear_attention_time(q * per_token, q * io + states * state, precision)


class LinearLayers:
    """A model's linear-attention layers on one rank of ``tp``, as the step model costs them:
    ``layers`` of them, each with projection ``gemms`` [(n, k)] moving ``act`` activations per
    token, and a recurrence whose time is the profile's measured GDN grid for this shape
    where it has one (:meth:`hetsim.perf.PerfModel.gdn_context_form`), else the roofline."""

    def __init__(self, linear, pm, tp: int, hidden: int, act_bytes: float, precision: str):
        self.layers, self.pm, self.precision = linear.layers, pm, precision
        g = self.shape = GdnShape.of(linear, tp, act_bytes)
        vd = g.v_heads * g.head_v_dim
        # q, k, v and the output gate z; the decay and beta gates (one scalar per value head);
        # the output projection
        self.gemms = [(g.conv + vd, hidden), (2 * g.v_heads, hidden), (hidden, vd)]
        self.act = 2 * (g.conv + vd)
        self._ctx = self._gen = None
        if pm.kernels is not None:
            self._ctx = pm.gdn_context_form(g, lambda c: g.prefill_time(pm, c, precision))
            self._gen = pm.gdn_generation_form(g, lambda b: g.decode_time(pm, b, precision))
        self._decode: dict[int, float] = {}     # one layer's decode time per batch

    def prefill_time(self, chunks) -> float:
        """Every linear layer's convolution and chunked recurrence over prefill ``chunks``:
        grows with the chunks' new tokens only."""
        t = self._ctx(chunks) if self._ctx is not None else self.shape.prefill_time(
            self.pm, chunks, self.precision)
        return self.layers * t

    def decode_time(self, batch: int) -> float:
        """Every linear layer's convolution update and state update for ``batch`` sequences:
        each reads and writes its whole state, whatever its context."""
        t = self._decode.get(batch)
        if t is None:
            t = self._decode[batch] = self._gen(batch) if self._gen is not None else \
                self.shape.decode_time(self.pm, batch, self.precision)
        return self.layers * t
