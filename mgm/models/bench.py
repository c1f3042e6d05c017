"""`mgm bench model`: time and memory of a pretraining step (forward + backward), mask ratios
side by side; on CUDA also TFLOP/s, MFU, the largest batch that fits, torch.compile on/off and
which scaled-dot-product-attention kernel ran.

    mgm bench model                     # CPU: vit_tiny/vit_small, 112/224, batch 1, fp32
    mgm bench model --device cuda       # ViT-B 16x224^2 bf16, batch max + 32, ratio .75/.9, compile off+on

Every configuration (arch x size x ratio x batch x compile) shares its arch's model; timed steps
are interleaved (one step of each configuration per round) so that load from other processes
hits all of them alike; medians are reported.

FLOPs (analytic, 2 per multiply-add, backward = 2 x forward) count the model's work: the
encoder (tubelet embedding + blocks) on the visible tokens, the decoder blocks on all tokens,
the reconstruction head on the masked tokens. (The implementation embeds every token before
dropping the masked ones; that ~2 % is not counted.) MFU = achieved / peak, with the peak from
``PEAK_TFLOPS`` by device name or ``--peak-tflops``.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` per step. On CPU there is no allocator
peak counter, so the report gives the bytes of the distinct non-parameter tensors autograd
saves for backward ("activations", eager only), plus parameters and gradients.

Module top level stays light (no torch): ``mgm --help`` imports it.
"""
from __future__ import annotations

import json
import statistics
import time

# Dense (no sparsity) bf16/fp16 tensor-core peak in TFLOP/s from the vendors' datasheets, by a
# substring of torch.cuda.get_device_name(); the first match wins.
PEAK_TFLOPS = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0),
)
SDPA_OPS = (  # aten op / CUDA kernel name fragments -> SDPA backend
    ("flash_attention_for_cpu", "flash (CPU)"), ("flash", "flash"), ("efficient", "mem_efficient"),
    ("fmha", "mem_efficient"), ("cudnn", "cudnn"), ("overrideable", "overrideable"),
)


def add_arguments(p) -> None:
    p.add_argument("--archs", nargs="+", default=None, help="model sizes (CPU: vit_tiny vit_small; CUDA: vit_base)")
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="input sizes (CPU: 112 224; CUDA: 224)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default: %(default)s)")
    p.add_argument("--ratios", nargs="+", type=float, default=[0.75, 0.9], help="mask ratios (default: %(default)s)")
    p.add_argument("--batch", nargs="+", default=None,
                   help="clips per step, ints or 'max' = the largest that fits (CPU: 1; CUDA: max 32)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first (CPU: 1; CUDA: 3)")
    p.add_argument("--decoder-depth", type=int, default=4)
    p.add_argument("--attention", choices=["joint", "divided"], default="joint")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None, help="CPU: fp32; CUDA: bf16")
    p.add_argument("--compile", choices=["off", "on", "both"], default=None, help="torch.compile (CPU: off; CUDA: both)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="device peak for MFU (default on CUDA: PEAK_TFLOPS by device name for bf16/fp16)")
    p.add_argument("--max-batch", type=int, default=1024, help="upper limit of the 'max' batch search")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def model_flops(spec, num_visible: int, batch: int) -> float:
    """Analytic forward+backward FLOPs of one pretraining step (joint attention): encoder on the
    visible tokens, decoder on all, head on the masked ones."""
    N = spec.num_patches
    D, Dd, r = spec.embed_dim, spec.decoder_dim, spec.mlp_ratio

    def blocks(n, d, depth):
        return depth * (2 * n * d * d * (4 + 2 * r) + 4 * n * n * d)

    nm = N - num_visible
    fwd = 2 * num_visible * D * spec.patch_dim
    fwd += blocks(num_visible, D, spec.depth)
    fwd += 2 * num_visible * D * Dd
    fwd += blocks(N, Dd, spec.decoder_depth)
    fwd += 2 * nm * Dd * spec.patch_dim
    return 3.0 * fwd * batch


def peak_tflops(device_name: str, precision: str) -> float:
    """Dense bf16/fp16 peak of a known device, 0 when unknown (or fp32)."""
    if precision not in ("bf16", "fp16"):
        return 0.0
    return next((v for k, v in PEAK_TFLOPS if k in device_name), 0.0)


def sdpa_kernel(names) -> str:
    """The SDPA backend from profiled op / kernel names ("math" when SDPA ran unfused)."""
    names = [n.lower() for n in names]
    for frag, kind in SDPA_OPS:
        if any("scaled_dot_product" in n and frag in n or (frag in n and "attention" in n) for n in names):
            return kind
    return "math" if any("scaled_dot_product" in n for n in names) else "none seen"


def _saved_activation_bytes(params_ptrs):
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            ptr, nbytes = st.data_ptr(), st.nbytes()
        except (RuntimeError, NotImplementedError):
            return t
        if ptr not in params_ptrs:
            seen[ptr] = max(seen.get(ptr, 0), nbytes)
        return t

    return seen, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)


class _Step:
    """One configuration's training step: fresh input each call (outside the timed part)."""

    def __init__(self, model, fn, batch, size, frames, ratio, dev, amp_dtype, seed):
        import torch

        from mgm.masking import make_masks

        self.model, self.fn, self.batch, self.dev, self.amp = model, fn, batch, dev, amp_dtype
        # the clip is drawn on the device: a CPU draw of a batch of 512 16x224^2 clips takes seconds
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.shape = (batch, 3, frames, size, size)
        # VideoMAE's tube mask from the one mask implementation, flattened to the token order
        masks = make_masks("tube", model.spec.grid, ratio, batch_size=batch,
                           generator=torch.Generator().manual_seed(seed))
        self.mask = masks.flatten(1).to(dev)
        self.visible = int((~self.mask[0]).sum())

    def __call__(self, hooks=None):
        import torch

        cuda = self.dev.type == "cuda"
        video = torch.randn(self.shape, generator=self.gen, device=self.dev)
        self.model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with torch.autocast(self.dev.type, dtype=self.amp, enabled=self.amp is not None):
            if hooks is not None:
                with hooks:
                    loss, _ = self.fn(video, self.mask)
            else:
                loss, _ = self.fn(video, self.mask)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        return dt, (torch.cuda.max_memory_allocated() if cuda else 0)


# the 'max' batch is searched within 95 % of the memory: at 100 %, 512 fitted in the search and
# then ran out of memory in the timed rounds, also after empty_cache (H200, ViT-B, ratio 0.75)
SEARCH_MEMORY_FRACTION = 0.95


def largest_batch_in_memory(make_step, limit: int, dev) -> int:
    import torch

    index = torch.cuda.current_device() if dev.index is None else dev.index
    torch.cuda.set_per_process_memory_fraction(SEARCH_MEMORY_FRACTION, index)
    try:
        return largest_batch(lambda b: _fits(make_step, b), limit)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)


def _fits(make_step, batch: int) -> bool:
    import torch

    try:
        make_step(batch)()
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def largest_batch(fits, limit: int = 1024) -> int:
    """Largest batch b <= limit with fits(b): doubling from 8, then bisection to within 1/8
    (multiples of 8 above 8); 0 when not even 1 fits."""
    ok, b = 0, 8
    while b <= limit and fits(b):
        ok, b = b, b * 2
    if ok == 0:
        return next((s for s in (4, 2, 1) if fits(s)), 0)
    hi = min(b, limit + 1)
    while hi - ok > max(8, ok // 8):
        mid = (ok + hi) // 2 // 8 * 8
        if mid <= ok:
            break
        ok, hi = (mid, hi) if fits(mid) else (ok, mid)
    return ok


def _profile_sdpa(step) -> str:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if step.dev.type == "cuda" else [])
    try:
        with profile(activities=acts) as prof:
            step()
        return sdpa_kernel({e.key for e in prof.key_averages()})
    except Exception as e:  # no CUPTI, profiler busy, ...: the timings still count
        return f"unknown (profiler: {e.__class__.__name__})"


def run(args) -> int:
    import torch

    from mgm.errors import UserError
    from mgm.models import build_pretrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available (torch {torch.__version__}, "
                        f"built with CUDA {torch.version.cuda})")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    archs = args.archs or (["vit_base"] if cuda else ["vit_tiny", "vit_small"])
    sizes = args.sizes or ([224] if cuda else [112, 224])
    batches = args.batch or (["max", "32"] if cuda else ["1"])
    precision = args.precision or ("bf16" if cuda else "fp32")
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile or ("both" if cuda else "off")]
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU, {torch.get_num_threads()} threads"
    peak = args.peak_tflops or (peak_tflops(name, precision) if cuda else 0.0)
    for b in batches:
        if b != "max" and not (b.isdigit() and int(b) > 0):
            raise UserError(f"--batch takes positive integers or 'max', got {b!r}")
        if b == "max" and not cuda:
            raise UserError("--batch max needs CUDA (the search stops at the first out-of-memory)")

    configs = []
    for arch in archs:
        for size in sizes:
            torch.manual_seed(0)
            model = build_pretrainer(arch, num_frames=args.frames, img_size=size, decoder_depth=args.decoder_depth,
                                     attention=args.attention, grad_checkpointing=args.grad_checkpointing).to(dev)
            model.train()
            fns = {False: model}
            if True in compiles:
                # static shapes: each mask ratio (visible-token count) gets its own graph. With the
                # default automatic-dynamic recompile, the second ratio's compiled step failed on an
                # H200 (torch 2.11: "shape '[1568, 384]' is invalid for input of size 1408")
                fns[True] = torch.compile(model, dynamic=False)
            for ratio in args.ratios:
                def make(b, fn=model, ratio=ratio, model=model, size=size):
                    return _Step(model, fn, b, size, args.frames, ratio, dev, amp_dtype, seed=len(configs))

                found = {}
                for b in batches:
                    if b == "max":
                        t0 = time.perf_counter()
                        found["max"] = largest_batch_in_memory(make, args.max_batch, dev)
                        print(f"  {arch} {size}^2 ratio {ratio}: largest batch that fits in "
                              f"{SEARCH_MEMORY_FRACTION:.0%} of the memory {found['max']} "
                              f"({time.perf_counter() - t0:.0f} s search, eager)", flush=True)
                    else:
                        found[b] = int(b)
                for b_name, b in found.items():
                    for comp in compiles:
                        if b < 1:
                            continue
                        step = _Step(model, fns[comp], b, size, args.frames, ratio, dev, amp_dtype, seed=len(configs))
                        configs.append(dict(arch=arch, size=size, ratio=ratio, batch=b, batch_spec=b_name,
                                            compile=comp, step=step, times=[], mem=[], tokens=model.spec.num_patches,
                                            visible=step.visible, flops=model_flops(model.spec, step.visible, b)))

    print(f"mgm bench model: {len(configs)} configurations, {args.frames} frames, {precision}, {args.attention} "
          f"attention, {name}; {warmup} warm-up + {args.rounds} timed rounds, interleaved", flush=True)
    for c in configs:  # untimed: first step (compiles), SDPA kernel, CPU activation bytes
        t0 = time.perf_counter()
        try:
            c["step"]()
        except torch.cuda.OutOfMemoryError:  # e.g. compiled at the batch eager just fitted
            c["oom"], c["first_step_s"], c["sdpa"] = True, time.perf_counter() - t0, "-"
            torch.cuda.empty_cache()
            continue
        except Exception as e:  # a compiler failure of one configuration: the others still run
            if not c["compile"]:
                raise
            c["failed"] = f"{e.__class__.__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            c["first_step_s"], c["sdpa"] = time.perf_counter() - t0, "-"
            print(f"  {c['arch']} {c['size']}^2 ratio {c['ratio']} batch {c['batch']}: torch.compile failed "
                  f"({c['failed'][:200]})", flush=True)
            continue
        c["first_step_s"] = time.perf_counter() - t0
        c["sdpa"] = _profile_sdpa(c["step"])
        if not cuda and not c["compile"]:
            model = c["step"].model
            seen, hooks = _saved_activation_bytes({p.untyped_storage().data_ptr() for p in model.parameters()})
            c["step"](hooks)
            c["mem"].append(sum(seen.values()))
    for r in range(warmup + args.rounds):
        for c in configs:
            if c.get("oom") or c.get("failed"):
                continue
            try:
                dt, mem = c["step"]()
            except torch.cuda.OutOfMemoryError:
                # cached blocks of the other configurations' shapes: free them and retry once
                # (not before every step: cudaMalloc inside the timed step would count)
                torch.cuda.empty_cache()
                try:
                    dt, mem = c["step"]()
                except torch.cuda.OutOfMemoryError:
                    c["oom"] = True
                    continue
            if r >= warmup:
                c["times"].append(dt)
                if cuda:
                    c["mem"].append(mem)
        print(f"  round {r + 1}/{warmup + args.rounds} done", flush=True)

    rows = [_row(c, args.frames, cuda, peak) for c in configs]
    _print_table(rows, cuda, peak, name)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=name, precision=precision, torch=torch.__version__, peak_tflops=peak or None,
                           peak_source="--peak-tflops" if args.peak_tflops else ("PEAK_TFLOPS table" if peak else None),
                           flops="encoder on visible tokens, decoder on all, head on masked; backward = 2x forward",
                           rows=rows), f, indent=2)
    return 0


def _row(c, frames, cuda, peak) -> dict:
    model = c["step"].model
    pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    row = dict(arch=c["arch"], frames=frames, size=c["size"], ratio=c["ratio"], batch=c["batch"],
               batch_spec=c["batch_spec"], compile=c["compile"], tokens=c["tokens"], visible=c["visible"],
               sdpa=c["sdpa"], first_step_s=round(c["first_step_s"], 2), gflop_per_step=c["flops"] / 1e9,
               params_mib=pbytes / 2**20, oom=bool(c.get("oom")))
    if c.get("failed"):
        row["failed"] = c["failed"]
    if c["times"]:
        med = statistics.median(c["times"])
        row.update(ms_per_step=1000 * med, ms_min=1000 * min(c["times"]), ms_max=1000 * max(c["times"]),
                   clips_per_s=c["batch"] / med, tflops=c["flops"] / med / 1e12)
        if peak:
            row["mfu"] = row["tflops"] / peak
    if cuda and c["mem"]:
        row["peak_mem_mib"] = max(c["mem"]) / 2**20
    elif c["mem"]:
        row["activations_mib"] = max(c["mem"]) / 2**20
        row["params_plus_grads_mib"] = 2 * pbytes / 2**20
    return row


def _print_table(rows, cuda, peak, name) -> None:
    mem_col = "peak MiB" if cuda else "act MiB"
    print(f"\n{'arch':<10} {'input':>9} {'ratio':>5} {'batch':>9} {'compile':>7} {'ms/step':>9} {'clips/s':>8} "
          f"{'TFLOP/s':>8} {'MFU':>6} {mem_col:>9} sdpa")
    for r in rows:
        mem = r.get("peak_mem_mib", r.get("activations_mib"))
        t = (f"{r['ms_per_step']:>9.1f} {r['clips_per_s']:>8.1f} {r['tflops']:>8.2f}" if "ms_per_step" in r
             else f"{'OOM' if r['oom'] else 'failed' if r.get('failed') else '-':>9} {'-':>8} {'-':>8}")
        batch = f"{r['batch']}" + (" (max)" if r["batch_spec"] == "max" else "")
        print(f"{r['arch']:<10} {r['frames']:>3}x{r['size']:>3}^2 {r['ratio']:>5.2f} {batch:>9} "
              f"{'on' if r['compile'] else 'off':>7} {t} {(format(r['mfu'], '.1%') if 'mfu' in r else '-'):>6} "
              f"{(format(mem, '.0f') if mem is not None else '-'):>9} {r['sdpa']}")
    print(f"\nMFU against {peak:g} TFLOP/s ({name})" if peak else
          "\nMFU: no peak known for this device/precision (give --peak-tflops)")
    ratios = sorted({r["ratio"] for r in rows})
    if len(ratios) == 2:
        a, b = ratios
        print(f"cost of mask ratio {a} relative to {b} (same arch, input, batch, compile):")
        for ra in rows:
            rb = next((r for r in rows if r["ratio"] == b and all(r[k] == ra[k] for k in
                       ("arch", "size", "batch_spec", "compile"))), None)
            if ra["ratio"] != a or rb is None or "ms_per_step" not in ra or "ms_per_step" not in rb:
                continue
            key = "peak_mem_mib" if cuda else "activations_mib"
            memr = f", {ra[key] / rb[key]:.2f}x memory" if key in ra and key in rb else ""
            print(f"  {ra['arch']} {ra['frames']}x{ra['size']}^2 batch {ra['batch_spec']} compile "
                  f"{'on' if ra['compile'] else 'off'}: {ra['ms_per_step'] / rb['ms_per_step']:.2f}x time, "
                  f"{ra['gflop_per_step'] / ra['batch'] / (rb['gflop_per_step'] / rb['batch']):.2f}x FLOPs per clip"
                  f"{memr}, {ra['visible'] / rb['visible']:.2f}x visible tokens")
    if not cuda and any("params_plus_grads_mib" in r for r in rows):
        print("CPU memory = autograd-saved activations (distinct non-parameter tensors); parameters + "
              "gradients are extra: " + ", ".join(sorted({f"{r['arch']} {r['params_plus_grads_mib']:.0f} MiB"
                                                         for r in rows if "params_plus_grads_mib" in r})))
