"""The demo and its report: ``mgm demo`` (:mod:`mgm.report.demo`), figures
(:mod:`mgm.report.figures`), report.md / report.html (:mod:`mgm.report.write`) and the
saliency score (:mod:`mgm.report.saliency`)."""
