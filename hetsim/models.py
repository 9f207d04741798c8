"""Model architectures as data: a catalog of YAML files, or a Hugging Face ``config.json``.

:meth:`ModelConfig.kv_layer_bytes` is the one place KV-cache size is computed; the per-token,
per-window and per-sequence figures are sums of it over layers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .config import build, meta, non_negative, positive, read_yaml
from .errors import ConfigError, match_name
from .hf_config import HF_KEYS, hf_fields
from .model_parts import MLA, LinearAttention, MoE, SlidingWindow, SparseAttention
from .precision import PRECISION_BYTES, unknown_precision

__all__ = ["ModelConfig", "MoE", "MLA", "SparseAttention", "SlidingWindow", "LinearAttention",
           "load_model", "list_models", "from_hf_config"]

CATALOG = Path(__file__).resolve().parent / "catalog" / "models"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    num_layers: int = field(metadata=meta("transformer blocks", positive))
    hidden_size: int = field(metadata=meta("model width", positive))
    num_heads: int = field(metadata=meta("query heads", positive))
    ffn_size: int = field(metadata=meta("dense FFN intermediate size", positive))
    vocab_size: int = field(metadata=meta("vocabulary size", positive))
    num_kv_heads: int = field(default=0, metadata=meta("KV heads (0: = num_heads, MHA)",
                                                       non_negative))
    head_dim: int = field(default=0, metadata=meta("per-head dim (0: hidden/heads)", non_negative))
    gated_ffn: bool = field(default=True, metadata=meta("SwiGLU-style gate+up projections"))
    tied_embeddings: bool = False
    moe: MoE | None = None
    mla: MLA | None = None
    sparse_attention: SparseAttention | None = None
    sliding_window: SlidingWindow | None = None
    linear_attention: LinearAttention | None = None
    attention_gate: bool = field(default=False, metadata=meta(
        "gated attention: the query projection also makes a sigmoid gate per head on the "
        "attention output (Qwen3-Next, Qwen3.5)"))
    qk_norm: bool = field(default=False, metadata=meta(
        "an RMSNorm of every query and key head before RoPE (Qwen3, Qwen3.5, Gemma 3): one "
        "more kernel a full-attention layer"))
    layer_qk_norm: bool = field(default=False, metadata=meta(
        "QK-norm over the whole layer's query and key vectors, not per head (MiniMax-M2 "
        "qk_norm_type per_layer): a tensor-parallel layer sums the norm's variance over its "
        "ranks, one all-reduce a layer"))
    expert_weights: str | None = field(default=None, metadata=meta(
        "format the checkpoint stores the routed experts' FFN weights in (gpt-oss: mxfp4, "
        "Kimi-K2.5: int4-g32); none: the pool's precision.weights, as for shared experts"))
    attention_weights: str | None = field(default=None, metadata=meta(
        "format the checkpoint keeps the attention projections (q, kv, o; a linear-attention "
        "layer's projections too) in, and the runtime computes them in, whatever the pool's "
        "precision (kimi-k2.5-nvfp4: bf16); none: the pool's compute and weights"))
    max_context: int = field(default=131072, metadata=meta("maximum context length", positive))
    aliases: list[str] = field(default_factory=list)
    source: str = field(default="", metadata=meta("where the architecture numbers come from"))

    def __post_init__(self):
        if self.num_kv_heads == 0:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads "
                              f"{self.num_kv_heads}", path="num_kv_heads")
        if self.full_attention_layers < 1:
            parts = {k: w for k, w, p in (("sliding_window", "windowed", self.sliding_window),
                                          ("linear_attention", "linear", self.linear_attention))
                     if p}
            raise ConfigError(f"{self.num_layers - self.full_attention_layers} "
                              f"{' and '.join(parts.values())} layers of {self.num_layers}: at "
                              f"least one layer must attend to the full context (KV that grows "
                              f"with it)", path=f"{list(parts)[-1]}.layers")
        if self.qk_norm and self.layer_qk_norm:
            raise ConfigError("a model norms q and k per head (qk_norm) or over the layer "
                              "(layer_qk_norm), not both", path="layer_qk_norm")
        if self.sparse_attention is not None:
            self._check_sparse()
        if self.attention_weights is not None and unknown_precision(self.attention_weights):
            raise ConfigError(unknown_precision(self.attention_weights), path="attention_weights")
        if self.expert_weights is not None:
            why = unknown_precision(self.expert_weights)
            if why or not self.moe:
                raise ConfigError(why or "only a model with experts (moe:) has expert weights",
                                  path="expert_weights")

    def _check_sparse(self) -> None:
        s, why = self.sparse_attention, None
        if self.mla is None:
            why = "sparse attention selects tokens for latent attention: it needs mla"
        elif self.sliding_window or self.linear_attention:
            why = "sparse attention with sliding-window or linear-attention layers is not modelled"
        elif s.indexer_layers > self.num_layers:
            why = f"indexer_layers {s.indexer_layers} exceeds the {self.num_layers} layers"
        if why:
            raise ConfigError(why, path="sparse_attention")

    # --- KV cache: the one function -------------------------------------------------------
    def kv_heads_per_rank(self, tp: int = 1) -> int:
        """KV heads one TP rank holds; heads are replicated when there are fewer than ranks."""
        return max(1, math.ceil(self.num_kv_heads / tp))

    def kv_layer_bytes(self, precision: str = "bf16", tp: int = 1) -> float:
        """KV-cache bytes ONE layer writes per token on one rank of a TP group.

        MHA/GQA: 2 (K and V) x kv_heads/tp x head_dim x bytes. MLA: the latent and the RoPE
        key, replicated on every rank, and a sparse-attention model's indexer key
        (:attr:`indexer_key_bytes`, in its own fp8 format). Every layer writes this much for
        every new token.
        """
        try:
            b = PRECISION_BYTES[precision]
        except KeyError:
            raise ConfigError(unknown_precision(precision)) from None
        if self.mla:
            return (self.mla.kv_lora_rank + self.mla.qk_rope_dim) * b + self.indexer_key_bytes
        return 2 * self.kv_heads_per_rank(tp) * self.head_dim * b

    @property
    def indexer_key_bytes(self) -> float:
        """A sparse-attention model's indexer keys per token, averaged over its layers (the
        indexer layers' :attr:`SparseAttention.key_bytes`; 0 without sparse attention)."""
        s = self.sparse_attention
        if s is None:
            return 0.0
        return s.key_bytes * self.indexer_layers / self.num_layers

    @property
    def indexer_layers(self) -> int:
        """Layers that run a sparse-attention indexer (0 without sparse attention)."""
        s = self.sparse_attention
        return 0 if s is None else s.indexer_layers or self.num_layers

    @property
    def full_attention_layers(self) -> int:
        """Layers that attend to (and keep KV for) the whole context."""
        return (self.num_layers - (self.sliding_window.layers if self.sliding_window else 0)
                - (self.linear_attention.layers if self.linear_attention else 0))

    def state_bytes(self, tp: int = 1) -> float:
        """Bytes of the constant state one sequence holds on one rank of a TP group for its
        whole life (0 without linear-attention layers): per linear layer its value heads' state
        matrices in ``state_dtype`` and the convolution's last ``conv_kernel - 1`` inputs in
        bf16 (as SGLang's mamba pool keeps them, and aiconfigurator-core 0.12.0 sizes them).
        Heads are split over the ranks (replicated when there are fewer than ranks)."""
        a = self.linear_attention
        if a is None:
            return 0.0
        heads = max(1, math.ceil(a.num_v_heads / tp))
        ssm = heads * a.head_k_dim * a.head_v_dim * PRECISION_BYTES[a.state_dtype]
        conv = math.ceil(a.conv_dim / tp) * (a.conv_kernel - 1) * PRECISION_BYTES["bf16"]
        return a.layers * (ssm + conv)

    def kv_bytes_per_token(self, precision: str = "bf16", tp: int = 1) -> float:
        """KV-cache bytes per token of context held by ONE rank of a TP group: the bytes that
        grow with the context, i.e. the full-attention layers (all layers without a window).

        Multiply by ``tp`` for the whole instance. A sliding-window model's windowed layers
        add the bounded :meth:`kv_window_bytes` per sequence; :meth:`kv_bytes` is the sum.
        """
        return self.full_attention_layers * self.kv_layer_bytes(precision, tp)

    def kv_window_bytes(self, precision: str = "bf16", tp: int = 1) -> float:
        """The most KV bytes one sequence's windowed layers hold on one rank (0 without a
        window): ``size`` tokens in each windowed layer, however long the context."""
        w = self.sliding_window
        return w.layers * w.size * self.kv_layer_bytes(precision, tp) if w else 0.0

    def kv_bytes(self, tokens: int, precision: str = "bf16", tp: int = 1) -> float:
        """KV bytes one sequence of ``tokens`` tokens of context holds on one rank: every token
        in the full-attention layers, the last ``size`` in the windowed ones, and the linear
        layers' constant :meth:`state_bytes`."""
        full = tokens * self.kv_bytes_per_token(precision, tp) + self.state_bytes(tp)
        w = self.sliding_window
        if not w:
            return full
        return full + min(tokens, w.size) * w.layers * self.kv_layer_bytes(precision, tp)

    def kv_tokens(self, tokens: int, precision: str = "bf16", tp: int = 1) -> float:
        """Tokens of full-attention KV (:meth:`kv_bytes_per_token` ``(precision, tp)`` each)
        that hold as many bytes as one sequence of ``tokens``: ``tokens`` itself, plus the
        window's ``min(tokens, size)`` tokens scaled by windowed / full-attention layers, plus
        the linear layers' :meth:`state_bytes` over the bytes of one such token (the only term
        that depends on ``precision`` and ``tp``). The one place a sequence's KV is summed:
        ``kv_bytes(n, p, tp) == kv_tokens(n, p, tp) x kv_bytes_per_token(p, tp)``; the engine's
        block pools charge ``kv_tokens(0)`` (the state) once per sequence."""
        w, n = self.sliding_window, tokens
        if w:
            n = tokens + min(tokens, w.size) * w.layers / self.full_attention_layers
        if self.linear_attention:
            n += self.state_bytes(tp) / self.kv_bytes_per_token(precision, tp)
        return n

    # --- parameter counts ----------------------------------------------------------------
    def attention_params(self) -> int:
        h, H, d = self.hidden_size, self.num_heads, self.head_dim
        if self.mla:
            m = self.mla
            q = (h * m.q_lora_rank + m.q_lora_rank * H * (m.qk_nope_dim + m.qk_rope_dim)
                 if m.q_lora_rank else h * H * (m.qk_nope_dim + m.qk_rope_dim))
            kv = h * (m.kv_lora_rank + m.qk_rope_dim) + m.kv_lora_rank * H * (m.qk_nope_dim
                                                                             + m.v_head_dim)
            return q + kv + H * m.v_head_dim * h
        gate = h * H * d if self.attention_gate else 0
        return h * H * d + gate + 2 * h * self.num_kv_heads * d + H * d * h

    def _ffn_params(self, size: int) -> int:
        return (3 if self.gated_ffn else 2) * self.hidden_size * size

    def ffn_params(self, layer: int, active: bool = False) -> int:
        """FFN (or MoE) parameters of one layer; ``active``: only those one token uses."""
        if not self.moe or layer < self.moe.first_dense_layers:
            return self._ffn_params(self.ffn_size)
        return self._experts_params(active) + self.hidden_size * self.moe.num_experts

    def _experts_params(self, active: bool, shared: bool = True) -> int:
        """One MoE layer's expert FFNs (all routed, or the top-k a token uses) and, with
        ``shared``, the shared ones."""
        m = self.moe
        experts = (m.top_k if active else m.num_experts) + (m.shared_experts if shared else 0)
        return experts * self._ffn_params(m.expert_ffn_size)

    def expert_params(self, active: bool = False, shared: bool = True) -> int:
        """Parameters of the expert FFNs (routed and, with ``shared``, shared; not the router)
        over all MoE layers (0: dense). The routed ones (``shared=False``) are the part a
        checkpoint like gpt-oss's or Kimi-K2.5's stores in a narrower format."""
        if not self.moe:
            return 0
        return ((self.num_layers - self.moe.first_dense_layers)
                * self._experts_params(active, shared))

    def expert_format(self, weights: str) -> str:
        """The format the routed experts are stored in on a pool storing weights in
        ``weights``: the narrower of that and the checkpoint's ``expert_weights`` (serving
        keeps a published narrow format rather than widening it; a narrower pool format wins).
        NOTE: shared experts take ``weights``: Kimi-K2.5's int4 checkpoint leaves them bf16
        (its ``ignore`` list), and gpt-oss has none."""
        e = self.expert_weights
        if e is None or PRECISION_BYTES[weights] < PRECISION_BYTES[e]:
            return weights
        return e

    def weight_bytes(self, weights: str) -> float:
        """Bytes of every weight (whole model, unsharded) on a pool storing weights in
        ``weights``: the routed experts in :meth:`expert_format`, the attention projections in
        ``attention_weights`` where the checkpoint fixes it, the rest in ``weights``."""
        experts = self.expert_params(shared=False)
        # every layer's projections the step model computes in attention_weights: the
        # attention layers' and the linear-attention layers'
        attn = self.mixer_params() if self.attention_weights else 0
        return ((self.num_params() - experts - attn) * PRECISION_BYTES[weights]
                + experts * PRECISION_BYTES[self.expert_format(weights)]
                + attn * PRECISION_BYTES[self.attention_weights or weights])

    def num_params(self, active: bool = False) -> int:
        """Total parameters (or parameters active per token, for MoE). Both counts include the
        embedding table and the LM head (as Qwen and DeepSeek count; OpenAI's gpt-oss figures
        leave the embedding table out of the active count). Norms and biases are left out."""
        emb = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return emb + self.mixer_params() + sum(self.ffn_params(i, active)
                                               for i in range(self.num_layers))

    def mixer_params(self) -> int:
        """Every layer's token-mixer weights: the attention projections, or a linear-attention
        layer's (:meth:`LinearAttention.params`)."""
        a = self.linear_attention
        if a is None:
            s = self.sparse_attention
            indexers = 0 if s is None else self.indexer_layers * s.params(
                self.hidden_size, self.mla.q_lora_rank)
            return self.num_layers * self.attention_params() + indexers
        return ((self.num_layers - a.layers) * self.attention_params()
                + a.layers * a.params(self.hidden_size))

    @property
    def is_moe(self) -> bool:
        return self.moe is not None


def _catalog_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for f in sorted(CATALOG.glob("*.yaml")):
        raw = read_yaml(f)
        for n in [raw["name"], *(raw.get("aliases") or [])]:
            if n in index:
                raise ConfigError(f"duplicate model name {n!r} (also in {index[n]})", file=str(f))
            index[n] = f
    return index


def list_models() -> list[str]:
    return sorted({read_yaml(f)["name"] for f in CATALOG.glob("*.yaml")})


def load_model(name_or_path: str | Path) -> ModelConfig:
    """A catalog model by name (``"llama-3.1-70b"``), a model YAML, or an HF ``config.json``."""
    s = str(name_or_path)
    if s.endswith(".json"):
        return from_hf_config(s)
    if s.endswith((".yaml", ".yml")):
        try:
            return build(ModelConfig, read_yaml(s))
        except ConfigError as e:
            raise e.with_file(s) from None
    index = _catalog_index()
    try:
        s = match_name(s, index, "model")
    except ConfigError as e:
        raise ConfigError(e.message + "; give a catalog name, a model .yaml or an HF "
                          "config.json") from None
    try:
        return build(ModelConfig, read_yaml(index[s]))
    except ConfigError as e:
        raise e.with_file(str(index[s])) from None


def from_hf_config(path: str | Path) -> ModelConfig:
    """Read a Hugging Face ``config.json`` (Llama, Mistral/Mixtral, Qwen, OPT, BLOOM, DeepSeek,
    gpt-oss, Qwen3.5): :func:`hetsim.hf_config.hf_fields`, built and checked as a model file."""
    p = Path(path)
    d = hf_fields(p)
    try:
        return build(ModelConfig, d)
    except ConfigError as e:   # name the config.json key the user can find, not hetsim's field
        field_ = e.path.partition(".")[0]
        key = HF_KEYS.get(field_, field_)
        raise ConfigError(e.message, file=str(p), path=e.path.replace(field_, key, 1)) from None
