"""Training: one loop for every model, the stages it runs, and the run around them.

* :mod:`~gmmn.training.loop` — :func:`train_loop`, and the :class:`Stage` / :class:`Part` /
  :class:`Hooks` interface it knows the stages by;
* :mod:`~gmmn.training.optim` — the optimisers behind one small protocol (the released code's
  SGD, Adam for the GAN) and the (lr, momentum) schedules;
* :mod:`~gmmn.training.stages` — the GMMN, pretraining and fine-tuning stages, and
  :func:`build_stage` / :func:`stage_names`, which turn a config into its sequence of stages;
* :mod:`~gmmn.training.gan` — the GAN baseline's losses and stage;
* :mod:`~gmmn.training.run` — :func:`run_training`: data, model, stages, logs, pictures,
  checkpoints, signals and resume;
* :mod:`~gmmn.training.checkpoint` — safe checkpoint files and RNG states;
* :mod:`~gmmn.training.distributed` — data-parallel hooks under torchrun.

The DBN, stacked CAE and deep GSN baselines plug their own stages into the same loop
(:mod:`gmmn.baselines.stages`). Nothing is imported here, so importing one module does not
pull in the others.
"""
