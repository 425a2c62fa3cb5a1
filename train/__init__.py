"""The training CLI of lilnetx_tf: `python -m train --config=... --workdir=...`.

Modules: `loop` (one run: data, model, fit, report), `registry` (config
checks, model building), `callbacks` (checkpoint/resume, epoch summary),
`schedule` (warm-up + cosine learning rate), `distribute` (strategies),
`report` (metrics.json, report.png), `faults` (test-only kill points);
experiment configs in `train/configs`.
"""

__all__ = []
