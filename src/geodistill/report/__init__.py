"""Plots, latent-space maps and the teacher/student table of a run: ``build_report(run_dir)``."""

from geodistill.report.build import build_report

__all__ = ["build_report"]
