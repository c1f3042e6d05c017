"""mgm: self-supervised video pretraining with motion-guided masking.

Pipeline, one package per stage:
    video/   decode frames + codec motion vectors (PyAV)
    masking/ mask generators (random, tube, block, smm, mgm, ...)
    data/    datasets, sampling, motion-consistent transforms
    models/  VideoMAE pretrainer / classifier, checkpoints
    engine/  pretrain, fine-tune, linear-probe and eval loops
    cli/     the `mgm` command
"""

__version__ = "0.1.0"
