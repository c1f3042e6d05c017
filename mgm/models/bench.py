"""`mgm bench model`: forward+backward time and memory per pretraining step, mask ratios side by side.

Every configuration (arch x input size x mask ratio) is built once; the timed steps are
interleaved (one step of each configuration per round) so that load from other processes hits
all of them alike, and medians are reported.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` per step (the real peak). On CPU there is
no allocator peak counter, so the report gives the bytes of the distinct non-parameter tensors
autograd saves for backward during the forward pass ("activations"), plus parameters and
gradients: the part of a step's memory that depends on the mask ratio; allocator slack and
transient buffers are not in it.

FLOPs are counted analytically (matmuls and convolution, 2 per multiply-add, backward = 2 x
forward), so TFLOP/s and, with ``--peak-tflops``, MFU can be read off a GPU run.
"""
from __future__ import annotations

import json
import statistics
import time


def add_arguments(p) -> None:
    p.add_argument("--archs", nargs="+", default=["vit_tiny", "vit_small"], help="model sizes (default: %(default)s)")
    p.add_argument("--sizes", nargs="+", type=int, default=[112, 224], help="input sizes (default: %(default)s)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default: %(default)s)")
    p.add_argument("--ratios", nargs="+", type=float, default=[0.75, 0.9], help="mask ratios (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="clips per step (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: %(default)s)")
    p.add_argument("--decoder-depth", type=int, default=4)
    p.add_argument("--attention", choices=["joint", "divided"], default="joint")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU, e.g. 989 for H100 bf16 dense")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def step_flops(spec, num_visible: int, batch: int) -> float:
    """Analytic forward+backward FLOPs of one pretraining step (joint attention)."""
    N = spec.num_patches
    D, Dd, r = spec.embed_dim, spec.decoder_dim, spec.mlp_ratio

    def blocks(n, d, depth):
        return depth * (2 * n * d * d * (4 + 2 * r) + 4 * n * n * d)

    nm = N - num_visible
    fwd = 2 * N * D * spec.patch_dim  # tubelet conv runs on every token
    fwd += blocks(num_visible, D, spec.depth)
    fwd += 2 * num_visible * D * Dd
    fwd += blocks(N, Dd, spec.decoder_depth)
    fwd += 2 * nm * Dd * spec.patch_dim
    return 3.0 * fwd * batch


def tube_mask(batch: int, grid: tuple[int, int, int], ratio: float, generator):
    """VideoMAE tube mask: round(ratio * H'W') spatial positions masked, repeated over time."""
    import torch

    t, h, w = grid
    k = int(round(ratio * h * w))
    m = torch.zeros(batch, h * w, dtype=torch.bool)
    for i in range(batch):
        m[i, torch.randperm(h * w, generator=generator)[:k]] = True
    return m[:, None, :].expand(batch, t, h * w).reshape(batch, t * h * w)


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


def run(args) -> int:
    import torch

    from mgm.models import build_pretrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    cuda = dev.type == "cuda"
    gen = torch.Generator().manual_seed(0)

    configs = []
    for arch in args.archs:
        for size in args.sizes:
            torch.manual_seed(0)
            model = build_pretrainer(arch, num_frames=args.frames, img_size=size, decoder_depth=args.decoder_depth,
                                     attention=args.attention, grad_checkpointing=args.grad_checkpointing).to(dev)
            model.train()
            video = torch.randn(args.batch, 3, args.frames, size, size, generator=gen).to(dev)
            for ratio in args.ratios:
                mask = tube_mask(args.batch, model.spec.grid, ratio, gen).to(dev)
                nvis = int((~mask[0]).sum())
                configs.append(dict(arch=arch, size=size, ratio=ratio, model=model, video=video, mask=mask,
                                    visible=nvis, tokens=model.spec.num_patches, times=[], mem=[],
                                    flops=step_flops(model.spec, nvis, args.batch)))

    def step(c, measure_mem: bool):
        model = c["model"]
        model.zero_grad(set_to_none=True)
        ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen, hooks = _saved_activation_bytes(ptrs) if measure_mem else ({}, None)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if hooks is not None:
                with hooks:
                    loss, _ = model(c["video"], c["mask"])
            else:
                loss, _ = model(c["video"], c["mask"])
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if cuda:
            return dt, torch.cuda.max_memory_allocated()
        return dt, sum(seen.values())

    env = f"{torch.get_num_threads()} CPU threads" if not cuda else torch.cuda.get_device_name(dev)
    print(f"mgm bench model: {len(configs)} configurations, batch {args.batch}, {args.frames} frames, "
          f"{args.precision}, {args.attention} attention, {env}; {args.warmup} warm-up + {args.rounds} timed "
          "rounds, interleaved", flush=True)
    if not cuda:  # one untimed step each with the saved-tensor hooks on
        for c in configs:
            c["mem"].append(step(c, measure_mem=True)[1])
    for r in range(args.warmup + args.rounds):
        for c in configs:
            dt, mem = step(c, measure_mem=False)
            if r >= args.warmup:
                c["times"].append(dt)
                if cuda:
                    c["mem"].append(mem)
        print(f"  round {r + 1}/{args.warmup + args.rounds} done", flush=True)

    rows = []
    for c in configs:
        model = c["model"]
        pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        med = statistics.median(c["times"])
        row = dict(arch=c["arch"], frames=args.frames, size=c["size"], ratio=c["ratio"], tokens=c["tokens"],
                   visible=c["visible"], batch=args.batch, ms_per_step=1000 * med,
                   ms_min=1000 * min(c["times"]), ms_max=1000 * max(c["times"]),
                   clips_per_s=args.batch / med, tflops=c["flops"] / med / 1e12, gflop_per_step=c["flops"] / 1e9,
                   params_mib=pbytes / 2**20)
        if cuda:
            row["peak_mem_mib"] = max(c["mem"]) / 2**20
        else:
            row["activations_mib"] = max(c["mem"]) / 2**20
            row["params_plus_grads_mib"] = 2 * pbytes / 2**20
        if args.peak_tflops:
            row["mfu"] = row["tflops"] / args.peak_tflops
        rows.append(row)

    mem_col = "peak MiB" if cuda else "act MiB"
    print(f"\n{'arch':<10} {'input':>9} {'ratio':>5} {'visible':>9} {'ms/step':>9} {'(min-max)':>15} "
          f"{'GFLOP':>7} {'TFLOP/s':>7} {mem_col:>9}" + ("  MFU" if args.peak_tflops else ""))
    for row in rows:
        mem = row.get("peak_mem_mib", row.get("activations_mib"))
        print(f"{row['arch']:<10} {row['frames']:>3}x{row['size']:>3}^2 {row['ratio']:>5.2f} "
              f"{row['visible']:>4}/{row['tokens']:<4} {row['ms_per_step']:>9.1f} "
              f"({row['ms_min']:>6.0f}-{row['ms_max']:<6.0f}) {row['gflop_per_step']:>7.1f} {row['tflops']:>7.3f} "
              f"{mem:>9.1f}" + (f" {row['mfu']:.1%}" if args.peak_tflops else ""))
    if len(args.ratios) == 2:
        a, b = args.ratios
        print(f"\ncost of mask ratio {a} relative to {b} (time, memory):")
        for arch in args.archs:
            for size in args.sizes:
                ra = next(r for r in rows if r["arch"] == arch and r["size"] == size and r["ratio"] == a)
                rb = next(r for r in rows if r["arch"] == arch and r["size"] == size and r["ratio"] == b)
                key = "peak_mem_mib" if cuda else "activations_mib"
                print(f"  {arch} {args.frames}x{size}^2: {ra['ms_per_step'] / rb['ms_per_step']:.2f}x time "
                      f"(medians; {ra['ms_min'] / rb['ms_min']:.2f}x by fastest step), "
                      f"{ra['gflop_per_step'] / rb['gflop_per_step']:.2f}x FLOPs, "
                      f"{ra[key] / rb[key]:.2f}x memory, {ra['visible'] / rb['visible']:.2f}x visible tokens")
    if not cuda:
        print("\nCPU memory = autograd-saved activations (distinct non-parameter tensors); "
              "parameters + gradients are extra: " +
              ", ".join(sorted({f"{r['arch']} {r['params_plus_grads_mib']:.0f} MiB" for r in rows})))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=env, precision=args.precision, rows=rows), f, indent=2)
    return 0
