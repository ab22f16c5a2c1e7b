"""Training: one loop for every model, the blocks every family's stages share, and the run.

Below the families (:mod:`gmmn.families`):

* :mod:`~gmmn.training.loop` — :func:`train_loop`, and the :class:`Stage` / :class:`Part` /
  :class:`Hooks` interface it knows the stages by;
* :mod:`~gmmn.training.optim` — the optimisers behind one small protocol (the released code's
  SGD, Adam for the GAN) and the (lr, momentum) schedules;
* :mod:`~gmmn.training.blocks` — the batch sampler, the seeded RNG streams, the sampled-stage
  base and the kernel-scale checks;
* :mod:`~gmmn.training.auto` — settings chosen from the data, and the fit check.

Above them:

* :mod:`~gmmn.training.run` — :func:`run_training`: data, model, then each stage's loop and
  checkpoint;
* :mod:`~gmmn.training.rundir` — the run folder: lock, config.json, metrics.jsonl, pictures,
  checkpoint writes and the resume checks;
* :mod:`~gmmn.training.signals` — the clean stop on SIGINT / SIGTERM;
* :mod:`~gmmn.training.checkpoint` — safe checkpoint files and RNG states;
* :mod:`~gmmn.training.distributed` — data-parallel hooks under torchrun.

Nothing is imported here, so importing one module does not pull in the others.
"""
