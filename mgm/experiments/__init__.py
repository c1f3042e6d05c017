"""Experiments on top of the pipeline: ``mgm demo`` (:mod:`mgm.experiments.demo`), the mask
ablations (:mod:`mgm.experiments.ablate`), their figures (:mod:`mgm.experiments.figures`) and
reports (:mod:`mgm.experiments.write`), and the motion saliency score
(:mod:`mgm.experiments.saliency`)."""
