"""A Hugging Face ``config.json`` read as a hetsim model file's fields (Llama, Mistral/Mixtral,
Qwen, OPT, BLOOM, DeepSeek, gpt-oss, Qwen3.5). :func:`hetsim.models.from_hf_config` builds and
checks them; this module only reads keys, so a bad value is named by its config.json key."""
from __future__ import annotations

from pathlib import Path

from .config import read_json
from .errors import ConfigError

__all__ = ["hf_fields", "HF_KEYS"]


def hf_fields(p: Path) -> dict:
    """The model-file fields (:class:`hetsim.models.ModelConfig`'s keys) of the Hugging Face
    ``config.json`` at ``p``; an unreadable or incomplete file is a ConfigError naming it."""
    c = read_json(p)
    if not isinstance(c, dict):
        raise ConfigError("a Hugging Face config.json is a JSON object", file=str(p))
    text = c.get("text_config")
    if isinstance(text, dict) and "hidden_size" not in c:
        # NOTE: a vision-language config (Qwen3.5): the language model is its text_config; the
        # vision tower (about 0.1% of Qwen3.5-397B's weights) is left out
        c = {**{k: v for k, v in c.items() if k != "text_config"}, **text}

    def get(*keys, default=None):
        for k in keys:
            if c.get(k) is not None:
                v = c[k]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"must be a whole number >= 1, got {v!r}", file=str(p),
                                      path=k)
                return v
        if default is None:
            raise ConfigError(f"missing key (one of {', '.join(keys)})", file=str(p))
        return default

    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head", "num_heads")
    if "head_dim" not in c and hidden % heads:
        raise ConfigError(f"hidden size {hidden} is not a multiple of {heads} heads (and no "
                          f"head_dim is given)", file=str(p), path="num_attention_heads")
    mt = c.get("model_type", "")
    tied = c.get("tie_word_embeddings", mt in ("opt", "bloom"))
    if not isinstance(tied, bool):
        raise ConfigError(f"must be true or false, got {tied!r}", file=str(p),
                          path="tie_word_embeddings")
    ffn = get("intermediate_size", "ffn_dim", "n_inner", default=0) or 4 * hidden
    d = dict(name=c.get("_name_or_path") or p.parent.name or "hf-model",
             num_layers=get("num_hidden_layers", "n_layer", "num_layers"), hidden_size=hidden,
             num_heads=heads, num_kv_heads=get("num_key_value_heads", default=heads),
             head_dim=get("head_dim", default=hidden // heads or 1), ffn_size=ffn,
             vocab_size=get("vocab_size"), gated_ffn=mt not in ("opt", "bloom", "gpt2", "gpt_neox"),
             tied_embeddings=tied,
             max_context=get("max_position_embeddings", "n_positions", default=131072),
             source=str(p))
    experts = c.get("num_local_experts") or c.get("n_routed_experts") or c.get("num_experts")
    if experts and mt in ("llama4", "llama4_text"):
        d["ffn_size"], d["moe"] = _llama4_moe(c, p, d["num_layers"], experts, ffn, get)
    elif experts:
        d["moe"] = dict(num_experts=experts, top_k=get("num_experts_per_tok"),
                        expert_ffn_size=c.get("moe_intermediate_size") or ffn,
                        shared_experts=c.get("n_shared_experts") or _shared_experts(c, p),
                        first_dense_layers=c.get("first_k_dense_replace") or 0)
    if experts:
        fmt = _expert_only_format(c.get("quantization_config") or _modelopt_quant(p), p)
        if fmt:
            d["expert_weights"] = fmt
    if c.get("kv_lora_rank"):
        d["mla"] = dict(kv_lora_rank=get("kv_lora_rank"), qk_rope_dim=get("qk_rope_head_dim"),
                        qk_nope_dim=get("qk_nope_head_dim"), v_head_dim=get("v_head_dim"),
                        q_lora_rank=c.get("q_lora_rank") or 0)
        d["head_dim"] = d["mla"]["qk_nope_dim"] + d["mla"]["qk_rope_dim"]
    if c.get("index_topk") is not None:
        d["sparse_attention"] = _sparse_attention(c, p, d["num_layers"], get)
    types = _layer_types(c, p, d["num_layers"])
    if types.get("sliding_attention"):
        d["sliding_window"] = dict(size=get("sliding_window"), layers=types["sliding_attention"])
    if types.get("linear_attention"):
        dtype = c.get("mamba_ssm_dtype", "float32")
        if not isinstance(dtype, str) or dtype not in _STATE_DTYPES:
            raise ConfigError(f"must be one of {', '.join(_STATE_DTYPES)}, got {dtype!r}",
                              file=str(p), path="mamba_ssm_dtype")
        d["linear_attention"] = dict(
            layers=types["linear_attention"], num_k_heads=get("linear_num_key_heads"),
            head_k_dim=get("linear_key_head_dim"), num_v_heads=get("linear_num_value_heads"),
            head_v_dim=get("linear_value_head_dim"),
            conv_kernel=get("linear_conv_kernel_dim", default=4),
            state_dtype=_STATE_DTYPES[dtype])
    gate = c.get("attn_output_gate", False)
    if not isinstance(gate, bool):
        raise ConfigError(f"must be true or false, got {gate!r}", file=str(p),
                          path="attn_output_gate")
    if gate:
        d["attention_gate"] = True
    if c.get("use_qk_norm") is True and c.get("qk_norm_type") == "per_layer":
        d["layer_qk_norm"] = True
    elif c.get("use_qk_norm") is True or (mt in QK_NORM_TYPES
                                          and c.get("use_qk_norm") is not False):
        d["qk_norm"] = True
    return d


def _sparse_attention(c: dict, p: Path, layers: int, get) -> dict:
    """DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): ``index_topk`` tokens per query, an
    indexer of ``index_n_heads`` x ``index_head_dim``; where ``indexer_types`` is given (GLM-5.2:
    'full' layers run an indexer, 'shared' ones reuse an earlier layer's top-k), the count of
    'full' ones. An ``index_topk_freq`` other than 1 without that list is refused: which layers
    it spares is not written in the config."""
    types = c.get("indexer_types")
    fields = dict(top_k=get("index_topk"), heads=get("index_n_heads"),
                  head_dim=get("index_head_dim"))
    if types is not None:
        if (not isinstance(types, list) or len(types) != layers
                or not set(types) <= {"full", "shared"} or "full" not in types):
            raise ConfigError(f"must list 'full' or 'shared' for each of the {layers} layers, "
                              f"at least one 'full'", file=str(p), path="indexer_types")
        fields["indexer_layers"] = types.count("full")
    elif c.get("index_topk_freq", 1) != 1:
        raise ConfigError(f"an indexer every {c['index_topk_freq']!r} layers without "
                          f"indexer_types (which layers) is not modelled", file=str(p),
                          path="index_topk_freq")
    return fields


def _llama4_moe(c: dict, p: Path, layers: int, experts: int, ffn: int, get) -> tuple:
    """(dense FFN size, moe fields) of a Llama 4 text config (transformers'
    ``Llama4TextConfig`` and ``modeling_llama4``): MoE layers every ``interleave_moe_layer_step``
    layers (``moe_layers``, default ``range(step - 1, layers, step)``: Maverick's step 2 makes
    half of its 48 layers dense), each with its routed experts and one shared expert of the
    experts' width ``intermediate_size`` (``Llama4TextMoe.shared_expert``); the dense layers'
    FFN is ``intermediate_size_mlp`` wide.
    NOTE: the dense layers are counted as hetsim's ``first_dense_layers`` (the count is what
    the step model and memory read; a pipeline stage's share of them may differ). Llama 4's
    chunked local attention (``attention_chunk_size`` on three layers in four) is read as full
    attention: KV past a chunk is over-counted, never under-counted, as for a
    ``sliding_window`` without ``layer_types``."""
    step = get("interleave_moe_layer_step", default=1)
    moe_layers = c.get("moe_layers")
    if moe_layers is None:
        moe_layers = range(step - 1, layers, step)
    elif not isinstance(moe_layers, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < layers
            for i in moe_layers) or not moe_layers:
        raise ConfigError(f"must be a non-empty list of layer indices below {layers}, got "
                          f"{moe_layers!r}", file=str(p), path="moe_layers")
    moe = dict(num_experts=experts, top_k=get("num_experts_per_tok"), expert_ffn_size=ffn,
               shared_experts=1, first_dense_layers=layers - len(set(moe_layers)))
    return get("intermediate_size_mlp", default=ffn), moe


def _shared_experts(c: dict, p: Path) -> int:
    """Shared experts from ``shared_expert_intermediate_size`` (Qwen2-MoE, Qwen3.5): that width
    in routed experts' widths (0 without one)."""
    size, moe = c.get("shared_expert_intermediate_size"), c.get("moe_intermediate_size")
    if not size:
        return 0
    if not isinstance(size, int) or not isinstance(moe, int) or moe < 1 or size % moe:
        raise ConfigError(f"must be a whole multiple of moe_intermediate_size {moe!r}, got "
                          f"{size!r}", file=str(p), path="shared_expert_intermediate_size")
    return size // moe


#: the config's mamba_ssm_dtype -> hetsim's format name
_STATE_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
#: the layer types hetsim models
_LAYER_TYPES = ("full_attention", "sliding_attention", "linear_attention")


def _layer_types(c: dict, p: Path, num_layers: int) -> dict[str, int]:
    """How many layers ``layer_types`` gives each type: ``sliding_attention`` (gpt-oss, Step),
    ``linear_attention`` (Qwen3.5's Gated DeltaNet), ``full_attention``; {} without the key.

    NOTE: a ``sliding_window`` without ``layer_types`` (Mistral-7B-v0.1; Qwen's, off) is read
    as full attention everywhere: KV is over-counted past the window, never under-counted.
    """
    types = c.get("layer_types")
    if types is None:
        return {}
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ConfigError(f"must be a list of layer types, got {types!r}", file=str(p),
                          path="layer_types")
    other = sorted(set(types) - set(_LAYER_TYPES))
    if other:
        raise ConfigError(f"layer type {other[0]!r} is not modelled (hetsim models "
                          f"{', '.join(_LAYER_TYPES)})", file=str(p), path="layer_types")
    if len(types) != num_layers:
        raise ConfigError(f"{len(types)} layer types for {num_layers} layers",
                          file=str(p), path="layer_types")
    return {t: types.count(t) for t in _LAYER_TYPES}


#: model types whose attention norms every query and key head before RoPE, though their
#: config.json has no key that says so (transformers: ``Qwen3Attention``, ``Qwen3MoeAttention``,
#: ``Qwen3NextAttention``, ``Qwen3_5Attention`` and ``Gemma3Attention`` all build ``q_norm`` and
#: ``k_norm`` over head_dim); other models say it with ``use_qk_norm`` (GLM-4.5)
QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "qwen3_next", "qwen3_5", "qwen3_5_text",
                           "qwen3_5_moe", "qwen3_5_moe_text", "gemma3", "gemma3_text"})

#: hetsim's ModelConfig field -> the config.json key it is read from (the usual spelling)
HF_KEYS = {"num_kv_heads": "num_key_value_heads", "num_layers": "num_hidden_layers",
            "num_heads": "num_attention_heads", "max_context": "max_position_embeddings",
            "ffn_size": "intermediate_size", "name": "_name_or_path",
            "moe": "num_local_experts", "mla": "kv_lora_rank", "sliding_window": "layer_types",
            "linear_attention": "layer_types", "attention_gate": "attn_output_gate",
            "layer_qk_norm": "qk_norm_type", "qk_norm": "use_qk_norm",
            "sparse_attention": "index_topk"}


def _modelopt_quant(p: Path) -> dict | None:
    """The quantization of a ModelOpt checkpoint that keeps it beside config.json rather than
    in it (NVIDIA's DeepSeek and GLM NVFP4 releases: ``hf_quant_config.json``, or
    ``<name>_hf_quant_config.json`` beside ``<name>_config.json`` as aiconfigurator-core
    names its copies), as config.json's ``quantization_config`` would say it: its
    ``exclude_modules`` are the ``ignore`` list; None without such a file."""
    stem = p.name.removesuffix("config.json")
    q = p.with_name(stem + "hf_quant_config.json")
    if stem == p.name or not q.is_file():
        return None
    raw = read_json(q)
    quant = raw.get("quantization") if isinstance(raw, dict) else None
    if not isinstance(quant, dict):
        raise ConfigError("a ModelOpt hf_quant_config.json has a quantization object",
                          file=str(q), path="quantization")
    return {"quant_method": "modelopt", "quant_algo": quant.get("quant_algo"),
            "ignore": quant.get("exclude_modules") or []}


def _expert_only_format(q, p: Path) -> str | None:
    """The experts' format where a checkpoint quantizes them and leaves attention in 16 bits,
    else None (a whole-model format is a pool's ``precision``, not the model's):
    - ``quant_method: mxfp4`` (gpt-oss): its modules_to_not_convert are attention, router,
      embeddings and LM head;
    - ModelOpt NVFP4 (NVIDIA's ``*-NVFP4`` MoE releases, ``quant_method: modelopt``,
      ``quant_algo: NVFP4``) whose ``ignore`` list names the attention modules (``self_attn``):
      every other Linear, the experts, in NVFP4 (4-bit E2M1, an fp8 scale per 16 values);
    - compressed-tensors weight-only int4 in symmetric groups of 32 (Moonshot's Kimi-K2.5:
      ``pack-quantized``, one config group, no input activations) whose ``ignore`` list names
      the attention modules: ``int4-g32``.
    NOTE: the few other Linears such a checkpoint quantizes (DeepSeek's ``o_proj``, dense first
    layers and shared experts where the ``ignore`` list leaves them in) are counted in the
    pool's format."""
    if not isinstance(q, dict):
        return None
    if q.get("quant_method") == "mxfp4":
        return "mxfp4"
    ignore = q.get("ignore") or []
    if not isinstance(ignore, list):
        raise ConfigError(f"must be a list of module names, got {ignore!r}", file=str(p),
                          path="quantization_config.ignore")
    if not any("self_attn" in str(m) for m in ignore):
        return None
    if q.get("quant_method") == "modelopt" and q.get("quant_algo") == "NVFP4":
        return "fp4"
    groups = q.get("config_groups")
    if q.get("quant_method") == "compressed-tensors" and isinstance(groups, dict) \
            and len(groups) == 1:
        g = next(iter(groups.values()))
        w = g.get("weights") if isinstance(g, dict) else None
        if (isinstance(w, dict) and not g.get("input_activations")
                and (w.get("type"), w.get("num_bits"), w.get("strategy"), w.get("group_size"),
                     w.get("symmetric")) == ("int", 4, "group", 32, True)):
            return "int4-g32"
    return None
