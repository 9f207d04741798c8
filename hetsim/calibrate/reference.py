"""A Llama-architecture forward pass in torch (random weights, TP=1): RMSNorm, RoPE, GQA
attention with a KV cache, SwiGLU FFN and the LM head. It runs real prefill and decode
iterations, so ``--check`` can compare whole-iteration predictions with measurements."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RefConfig:
    layers: int = 2
    hidden: int = 512
    heads: int = 8
    kv_heads: int = 2
    ffn: int = 1408
    vocab: int = 4096

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def model_config(self):
        """The same model as hetsim's ModelConfig (for StepModel predictions)."""
        from ..models import ModelConfig
        return ModelConfig(name="reference", num_layers=self.layers, hidden_size=self.hidden,
                           num_heads=self.heads, num_kv_heads=self.kv_heads,
                           ffn_size=self.ffn, vocab_size=self.vocab)


#: tiny on the CPU (seconds in CI); a real-sized layer (Llama-3.1-8B's) on a GPU
CPU_REF = RefConfig()
GPU_REF = RefConfig(layers=2, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=32000)
PROBE = RefConfig(layers=1, hidden=64, heads=2, kv_heads=1, ffn=128, vocab=128)
PROBE_DEEP = RefConfig(layers=3, hidden=64, heads=2, kv_heads=1, ffn=128, vocab=128)


class Reference:
    def __init__(self, torch, cfg: RefConfig, device: str, dtype):
        self.t, self.c, self.dev, self.dtype = torch, cfg, device, dtype
        g = torch.Generator(device="cpu").manual_seed(0)

        def w(*s):
            return (torch.randn(*s, generator=g) * 0.02).to(device=device, dtype=dtype)
        h, H, kvh, d, f = cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.ffn
        self.layers = [dict(qkv=w(h, (H + 2 * kvh) * d), o=w(H * d, h), gu=w(h, 2 * f),
                            down=w(f, h)) for _ in range(cfg.layers)]
        self.lm = w(h, cfg.vocab)

    def _rope(self, x, start):
        t = self.t
        d = x.shape[-1]
        pos = t.arange(start, start + x.shape[-2], device=self.dev, dtype=t.float32)
        inv = 1.0 / (10000 ** (t.arange(0, d, 2, device=self.dev, dtype=t.float32) / d))
        ang = pos[:, None] * inv[None, :]
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        x1, x2 = x[..., ::2], x[..., 1::2]
        return t.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)

    def forward(self, x, cache, start: int):
        """x: (batch, q, hidden); cache: per layer (k, v) of (batch, kv_heads, ctx, head_dim)."""
        t, c = self.t, self.c
        F = t.nn.functional
        b, q, h = x.shape
        H, kvh, d = c.heads, c.kv_heads, c.head_dim
        for i, L in enumerate(self.layers):
            y = F.rms_norm(x, (h,))
            qh, k, v = (y @ L["qkv"]).split([H * d, kvh * d, kvh * d], -1)
            qh = self._rope(qh.view(b, q, H, d).transpose(1, 2), start)
            k = self._rope(k.view(b, q, kvh, d).transpose(1, 2), start)
            v = v.view(b, q, kvh, d).transpose(1, 2)
            kc, vc = cache[i]
            kc[:, :, start:start + q] = k
            vc[:, :, start:start + q] = v
            a = F.scaled_dot_product_attention(qh, kc[:, :, :start + q], vc[:, :, :start + q],
                                               is_causal=q > 1, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(b, q, H * d) @ L["o"]
            y = F.rms_norm(x, (h,))
            gt, up = (y @ L["gu"]).chunk(2, -1)
            x = x + (F.silu(gt) * up) @ L["down"]
        return F.rms_norm(x[:, -1], (h,)) @ self.lm

    def cache(self, batch: int, ctx: int):
        c, t = self.c, self.t
        return [(t.zeros(batch, c.kv_heads, ctx, c.head_dim, device=self.dev, dtype=self.dtype),
                 t.zeros(batch, c.kv_heads, ctx, c.head_dim, device=self.dev, dtype=self.dtype))
                for _ in range(c.layers)]


#: aten ops that move no data (no kernel) although the dispatcher does not mark them as views
_NO_KERNEL = {"aten._unsafe_view.default", "aten.empty.memory_format", "aten.detach.default"}


def count_kernels(torch, fn) -> int | None:
    """Kernels one call of ``fn`` launches, counted as the non-view aten ops it dispatches
    (None where the dispatch hook is unavailable). The eager reference launches several times
    the kernels per layer that a serving engine's fused layer does, so the per-kernel cost is
    fitted per counted kernel, not per kernel the step model charges."""
    try:
        from torch.utils._python_dispatch import TorchDispatchMode
    except ImportError:
        return None

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view and str(func) not in _NO_KERNEL:
                Count.n += 1
            return func(*args, **(kwargs or {}))
    try:
        with Count():
            fn()
    except Exception:                         # noqa: BLE001 - counting is best effort
        return None
    return Count.n


def jobs(torch, device: str, cfg: RefConfig, precision: str, prefill, decode):
    """Timing jobs ("ref_prefill", batch, seq) and ("ref_decode", batch, kv_len) of whole
    iterations; each row also gets the kernels one iteration launches (counted once)."""
    from .measure import TORCH_DTYPES
    from .timer import Job
    net = Reference(torch, cfg, device, getattr(torch, TORCH_DTYPES[precision]))
    out = []
    todo = [("ref_prefill", b, s) for b, s in prefill] + [("ref_decode", b, s)
                                                           for b, s in decode]
    for op, b, s in todo:
        prefill_op = op == "ref_prefill"

        def one(b=b, s=s, prefill_op=prefill_op):
            cache = net.cache(b, s if prefill_op else s + 1)
            x = torch.randn(b, s if prefill_op else 1, cfg.hidden, device=device,
                            dtype=net.dtype)
            return [lambda: net.forward(x, cache, 0 if prefill_op else s)]
        row = {"op": op, "precision": precision, "batch": b,
               ("seq" if prefill_op else "kv_len"): s}
        out.append(Job(row, one, describe=lambda fns: {"kernels": count_kernels(torch, fns[0])}))
    return out


def measure(torch, timer, cfg: RefConfig, precision: str, prefill, decode, progress=None):
    """Rows ("ref_prefill", batch, seq) and ("ref_decode", batch, kv_len) of whole iterations."""
    return timer.run(jobs(torch, timer.device, cfg, precision, prefill, decode), "reference",
                     progress)
