"""Training and evaluation loops: pretraining, fine-tuning, linear probing, multi-view test.

    from mgm.config import load_config
    from mgm.engine.pretrain import run_pretrain
    result = run_pretrain(load_config("tiny", ["data.train=LIST", "data.root=DIR"]))

Modules: ``trainer`` (the shared loop: accumulation, non-finite skipping, checkpoints, resume),
``run_context`` (run setup: config, process group, seeds, precision, loaders, model wrapping),
``pretrain`` / ``finetune`` (+ ``run_eval``) / ``linprobe`` (the tasks), ``evaluate``
(multi-view merge), ``optim`` (parameter groups, layer decay, cosine schedule), ``samplers``,
``mixup``, ``checkpoint``, ``distributed``, ``logging``. See docs/training.md.
Nothing here is imported by ``import mgm.engine`` (torch stays unloaded).
"""
