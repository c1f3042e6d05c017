"""`mgm export CHECKPOINT --to hf DIR`: convert a checkpoint for other tools.

Targets: ``hf`` (a transformers VideoMAE directory: config.json + model.safetensors),
``official`` (a VideoMAE-format .pth, {"model": state_dict}), ``mgm`` (our safetensors + JSON).
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="convert a checkpoint: transformers directory, VideoMAE .pth, mgm safetensors",
                       description="Convert a checkpoint that mgm reads into a transformers VideoMAE directory "
                                   "(--to hf DIR), a VideoMAE-format .pth (--to official FILE) or mgm's "
                                   "safetensors + JSON (--to mgm FILE).")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="any checkpoint mgm reads: mgm .safetensors, VideoMAE .pth, transformers directory")
    p.add_argument("--to", dest="target", required=True, nargs=2, metavar=("FORMAT", "OUT"),
                   help="FORMAT is hf (OUT: a directory), official (OUT: a .pth) or mgm (OUT: a .safetensors)")
    p.add_argument("--kind", choices=["pretrainer", "classifier"],
                   help="model to export (default: what the checkpoint holds)")
    p.add_argument("--num-classes", type=int, help="with --kind classifier from a pretraining checkpoint")
    p.add_argument("--num-frames", type=int, help="frames per clip (VideoMAE .pth files do not record it without args)")
    p.add_argument("--img-size", type=int, help="input size (same)")
    p.add_argument("--hf-names", choices=["4", "5"], default="4",
                   help="transformers key names for q/v biases: 4 = q_bias/v_bias, which transformers 4.x and 5.x "
                        "both write and read (default); 5 = 5.x in-memory names query.bias/value.bias")
    p.set_defaults(func=run)


def run(args) -> int:
    from mgm.errors import UserError
    from mgm.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_official
    from mgm.models.hf_export import export_hf

    fmt, out = args.target
    if fmt not in ("hf", "official", "mgm"):
        raise UserError(f"--to FORMAT must be hf, official or mgm, not {fmt!r}")
    try:
        model = load_checkpoint(args.checkpoint, num_frames=args.num_frames, img_size=args.img_size,
                                num_classes=args.num_classes, kind=args.kind)
        if fmt == "hf":
            path = export_hf(model, out, names=args.hf_names)
        elif fmt == "official":
            path = save_official(model, out)
        else:
            path = save_checkpoint(model, out, extra={"exported_from": str(args.checkpoint)})
    except (CheckpointError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    spec = model.spec
    kind = type(model).__name__
    print(f"{kind} {spec.arch} ({spec.embed_dim}x{spec.depth}, {spec.num_frames}x{spec.img_size}^2) -> {fmt}: {path}")
    if fmt == "hf":
        cls = "VideoMAEForPreTraining" if kind == "VideoMAEPretrainer" else "VideoMAEForVideoClassification"
        print(f"load with transformers.{cls}.from_pretrained({str(path)!r}); "
              "pixel_values are (B, T, C, H, W) there, (B, C, T, H, W) in mgm")
    return 0
