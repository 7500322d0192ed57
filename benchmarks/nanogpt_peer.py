"""The peer: Karpathy's nanoGPT, character-level Shakespeare, in its README's CPU configuration.

Recipe: github.com/karpathy/nanoGPT, `model.py` (GPT, LayerNorm without bias, CausalSelfAttention
via `F.scaled_dot_product_attention(is_causal=True)`, MLP, Block, weight tying, init,
`configure_optimizers`, `generate`), `train.py` (get_batch, get_lr, the training loop),
`config/train_shakespeare_char.py` and `data/shakespeare_char/prepare.py`; the README's
"I only have a macbook" CPU run:

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False \
        --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 \
        --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

re-implemented here in one self-contained file (same modules, same parameter names, same
optimizer groups and schedule), so it trains on the benchmark's split of the text.

Run (one core, as the benchmark pins each peer to its own core):

    cd /work/main && taskset -c 0 .venv/bin/python benchmarks/nanogpt_peer.py \
        --minutes=10 --out=/tmp/nanogpt_peer.json

Deviations from the recipe are listed in the result's "notes".
"""

import json
import math
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags
import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

flags.DEFINE_string("data", os.path.join(ROOT, "..", "shared", "data", "text", "tinyshakespeare_train.txt"),
                    "UTF-8 text file.")
flags.DEFINE_float("minutes", 10.0, "Training wall-time budget in minutes.")
flags.DEFINE_float("validation_fraction", 0.1, "Fraction of the text (its end) held out.")
flags.DEFINE_string("out", None, "Path of the JSON result file.")
flags.DEFINE_integer("seed", 0, "Seed for torch (init, batches, sampling).")
flags.DEFINE_integer("sample_chars", 500, "Characters to sample after training.")
flags.DEFINE_float("temperature", 0.8, "Sampling temperature.")
FLAGS = flags.FLAGS

# config/train_shakespeare_char.py with the README's CPU overrides.
RECIPE = dict(
    batch_size=12, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False,
    learning_rate=1e-3, max_iters=2000, lr_decay_iters=2000, min_lr=1e-4, warmup_iters=100,
    beta1=0.9, beta2=0.99, weight_decay=1e-1, grad_clip=1.0, decay_lr=True,
    gradient_accumulation_steps=1, eval_interval=250, eval_iters=20, log_interval=1,
    device="cpu", compile=False, dtype="float32",
)
MEASURE_ITERS = 20       # iterations timed before the schedule is fitted to the budget
EVAL_MARGIN = 0.03       # fraction of the budget kept free (evaluation/timing overhead)
SAMPLE_TOP_K = 200       # sample.py's default (no effect with a 65-character vocabulary)
SCORE_STRIDE = 32        # validation windows of block_size start every SCORE_STRIDE characters
SCORE_BATCH = 256        # windows per forward pass when scoring


# ----------------------------------------------------------------------------- model.py
class LayerNorm(nn.Module):
    """LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        assert cfg["n_embd"] % cfg["n_head"] == 0
        self.c_attn = nn.Linear(cfg["n_embd"], 3 * cfg["n_embd"], bias=cfg["bias"])
        self.c_proj = nn.Linear(cfg["n_embd"], cfg["n_embd"], bias=cfg["bias"])
        self.attn_dropout = nn.Dropout(cfg["dropout"])
        self.resid_dropout = nn.Dropout(cfg["dropout"])
        self.n_head = cfg["n_head"]
        self.n_embd = cfg["n_embd"]
        self.dropout = cfg["dropout"]

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg["n_embd"], 4 * cfg["n_embd"], bias=cfg["bias"])
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg["n_embd"], cfg["n_embd"], bias=cfg["bias"])
        self.dropout = nn.Dropout(cfg["dropout"])

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = LayerNorm(cfg["n_embd"], bias=cfg["bias"])
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg["n_embd"], bias=cfg["bias"])
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg["vocab_size"], cfg["n_embd"]),
            wpe=nn.Embedding(cfg["block_size"], cfg["n_embd"]),
            drop=nn.Dropout(cfg["dropout"]),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])]),
            ln_f=LayerNorm(cfg["n_embd"], bias=cfg["bias"]),
        ))
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg["n_layer"]))

    def get_num_params(self, non_embedding=True):
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, all_logits=False):
        b, t = idx.size()
        assert t <= self.cfg["block_size"]
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None or all_logits:
            logits = self.lm_head(x)
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                       ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])  # inference: only the last position
            loss = None
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        decay_params = [p for p in param_dict.values() if p.dim() >= 2]
        nodecay_params = [p for p in param_dict.values() if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        # fused AdamW is only used on CUDA in the recipe; on CPU it is the plain (foreach) one.
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            bs = self.cfg["block_size"]
            idx_cond = idx if idx.size(1) <= bs else idx[:, -bs:]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("Inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


# ----------------------------------------------------------------------------- train.py
def get_lr(it, s):
    """train.py's schedule: linear warmup, cosine decay to min_lr at lr_decay_iters."""
    if it < s["warmup_iters"]:
        return s["learning_rate"] * (it + 1) / (s["warmup_iters"] + 1)
    if it > s["lr_decay_iters"]:
        return s["min_lr"]
    decay_ratio = (it - s["warmup_iters"]) / (s["lr_decay_iters"] - s["warmup_iters"])
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return s["min_lr"] + coeff * (s["learning_rate"] - s["min_lr"])


def get_batch(data, block_size, batch_size):
    """train.py's get_batch('train') on an int64 tensor of character ids."""
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
    return x, y


@torch.no_grad()
def score(model, ids, block_size, stride=SCORE_STRIDE, batch=SCORE_BATCH):
    """Total nats of ids[1:] given what precedes, each target with up to block_size context.

    Windows of block_size inputs start every `stride` positions; each window scores only the
    targets no earlier window scored (the first all of its block_size, later ones their last
    `stride`, the final window is aligned to the end). Returns (total nats, targets scored).
    """
    n = len(ids) - 1  # number of targets
    assert n >= block_size
    starts = list(range(0, n - block_size + 1, stride))
    if starts[-1] != n - block_size:
        starts.append(n - block_size)
    starts = torch.tensor(starts)
    offs = torch.arange(block_size)
    first_new = torch.empty_like(starts)  # first position (within the window) to score
    first_new[0] = 0
    first_new[1:] = (starts[:-1] + block_size) - starts[1:]
    total, counted = 0.0, 0
    model.eval()
    for b in range(0, len(starts), batch):
        st = starts[b:b + batch]
        pos = st[:, None] + offs[None, :]
        x, y = ids[pos], ids[pos + 1]
        logits, _ = model(x, all_logits=True)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).double(), y.reshape(-1),
                              reduction="none").view(x.shape)
        mask = offs[None, :] >= first_new[b:b + batch, None]
        total += nll[mask].sum().item()
        counted += int(mask.sum())
    assert counted == n, (counted, n)
    return total, counted


def main(argv):
    del argv
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass
    torch.manual_seed(FLAGS.seed)

    text = open(FLAGS.data, encoding="utf-8").read()
    total = len(text)
    cut = total - max(1, int(round(total * FLAGS.validation_fraction)))
    train_text, val_text = text[:cut], text[cut:]
    # data/shakespeare_char/prepare.py: the vocabulary of the whole file.
    chars = sorted(list(set(text)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    lut = np.zeros(max(map(ord, chars)) + 1, dtype=np.int64)
    lut[[ord(c) for c in chars]] = np.arange(len(chars))

    def encode(s):
        return lut[np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)]

    all_ids = torch.from_numpy(encode(text))
    train_data = all_ids[:cut]

    s = dict(RECIPE)
    s.update(vocab_size=len(chars), seed=FLAGS.seed, threads=threads, train_characters=len(train_text))
    model = GPT(s)
    optimizer = model.configure_optimizers(s["weight_decay"], s["learning_rate"],
                                           (s["beta1"], s["beta2"]))
    n_params = sum(p.numel() for p in model.parameters())
    tokens_per_iter = s["gradient_accumulation_steps"] * s["batch_size"] * s["block_size"]

    budget = FLAGS.minutes * 60.0
    max_iters = None  # fitted to the budget after MEASURE_ITERS iterations
    s["max_iters"] = s["lr_decay_iters"] = 10 ** 9  # only warmup is reached before fitting
    model.train()
    t_start = time.perf_counter()
    X, Y = get_batch(train_data, s["block_size"], s["batch_size"])
    iter_num, steps, t_measure0, lossf = 0, 0, None, float("nan")
    stopped_by = "max_iters"
    while True:
        lr = get_lr(iter_num, s) if s["decay_lr"] else s["learning_rate"]
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        for _ in range(s["gradient_accumulation_steps"]):
            logits, loss = model(X, Y)
            loss = loss / s["gradient_accumulation_steps"]
            X, Y = get_batch(train_data, s["block_size"], s["batch_size"])
            loss.backward()
        if s["grad_clip"] != 0.0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
        now = time.perf_counter()
        if iter_num % 100 == 0:
            lossf = loss.item() * s["gradient_accumulation_steps"]
            print(f"iter {iter_num}: loss {lossf:.4f}, lr {lr:.2e}, {now - t_start:.1f}s", flush=True)
        if steps == 5:
            t_measure0 = now  # skip the first-iteration overheads
        if steps == MEASURE_ITERS:
            per_iter = (now - t_measure0) / (MEASURE_ITERS - 5)
            left = budget * (1.0 - EVAL_MARGIN) - (now - t_start)
            # iterations 0..max_iters inclusive run, as in train.py
            max_iters = max(MEASURE_ITERS, MEASURE_ITERS - 1 + int(left / per_iter))
            s["max_iters"] = max_iters
            s["lr_decay_iters"] = max(max_iters, s["warmup_iters"] + 1)
            s["measured_seconds_per_iter"] = per_iter
            print(f"{per_iter * 1000:.1f} ms/iter -> max_iters = lr_decay_iters = {max_iters}",
                  flush=True)
        iter_num += 1
        if max_iters is not None and iter_num > max_iters:
            break
        if now - t_start >= budget:
            stopped_by = "wall_time"
            break
    train_seconds = time.perf_counter() - t_start
    lossf = loss.item() * s["gradient_accumulation_steps"]
    print(f"trained {steps} iterations in {train_seconds:.1f}s (last loss {lossf:.4f}, "
          f"stopped by {stopped_by})", flush=True)

    # Validation: every character of the validation text, the first one predicted from the
    # last training character, each with up to block_size characters of context.
    t0 = time.perf_counter()
    nats, counted = score(model, all_ids[cut - 1:], s["block_size"])
    score_seconds = time.perf_counter() - t0
    assert counted == len(val_text)
    nats_per_char = nats / counted
    bpc = nats_per_char / math.log(2)
    print(f"validation: {bpc:.4f} bits/char over {counted} characters ({score_seconds:.1f}s)",
          flush=True)

    # sample.py: start="\n", temperature, top_k=200, seeded.
    torch.manual_seed(FLAGS.seed)
    prompt = "\n"
    idx = torch.tensor([[stoi[c] for c in prompt]], dtype=torch.long)
    out = model.generate(idx, FLAGS.sample_chars, temperature=FLAGS.temperature, top_k=SAMPLE_TOP_K)
    sample = "".join(chars[i] for i in out[0, len(prompt):].tolist())

    s.update(temperature=FLAGS.temperature, sample_top_k=SAMPLE_TOP_K, sample_prompt=prompt,
             minutes=FLAGS.minutes, validation_fraction=FLAGS.validation_fraction,
             measure_iters=MEASURE_ITERS, budget_margin=EVAL_MARGIN,
             score_context=s["block_size"], score_stride=SCORE_STRIDE, score_batch=SCORE_BATCH)
    result = {
        "peer": "nanogpt_shakespeare_char_cpu",
        "bits_per_character": bpc,
        "nats_per_character": nats_per_char,
        "validation_characters": counted,
        "validation_seconds": score_seconds,
        "train_seconds": train_seconds,
        "train_steps": steps,
        "train_characters_per_second": steps * tokens_per_iter / train_seconds,
        "train_iterations_per_second": steps / train_seconds,
        "final_train_loss": lossf,
        "stopped_by": stopped_by,
        "params": n_params,
        "params_non_embedding": model.get_num_params(),
        "vocab_size": len(chars),
        "sample": sample,
        "settings": s,
        "notes": [
            "Schedule stretched to the budget: the recipe's max_iters = lr_decay_iters = 2000 are "
            f"replaced by the number of iterations that fit in --minutes ({max_iters}), measured "
            f"from iterations 6..{MEASURE_ITERS} with {EVAL_MARGIN:.0%} of the budget kept free; "
            "training stops at max_iters (iterations 0..max_iters, as train.py) or when the wall "
            "time is spent, whichever comes first.",
            "Data: the benchmark's split (last validation_fraction of the file held out, cut at "
            "a character) instead of prepare.py's 90/10 split; the vocabulary is still "
            "sorted(set(whole file)) as prepare.py builds it.",
            "No periodic estimate_loss (eval_interval=250, eval_iters=20) and no checkpointing: "
            "they only log/save and do not change training (they do consume torch RNG draws, so "
            "batch order differs from a recipe run with the same seed); the model is scored once "
            "at the end on the whole validation text instead.",
            "Validation: every validation character scored with up to block_size=64 characters "
            f"of context (windows of 64 every {SCORE_STRIDE} characters, each position scored once, "
            "so at least 33 characters of context after the first window); the first validation "
            "character is predicted from the last training character.",
            "Seed: torch.manual_seed(seed) (the recipe uses 1337 + seed_offset).",
            "get_lr warmup is learning_rate * (it + 1) / (warmup_iters + 1) (current nanoGPT "
            "master; older revisions used it / warmup_iters).",
            "Sample: as sample.py (start='\\n', top_k=200, multinomial) from the same seed, "
            "one sample of --sample_chars characters; 'sample' excludes the prompt.",
            "Training is float32 on CPU (train.py uses nullcontext on CPU, no autocast), "
            "compile=False, plain AdamW (fused only on CUDA in the recipe).",
        ],
    }
    text_out = json.dumps(result, indent=2)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            f.write(text_out + "\n")
    print(text_out)


if __name__ == "__main__":
    app.run(main)
