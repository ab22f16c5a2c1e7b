"""Named configurations. Paper presets follow the authors' released code (docs/paper.md): where the
paper's text differs, the comment says so and the other choice is one flag away.

Every preset takes ``--dataset NAME|PATH``: the generator's output (or the autoencoder's input
layer) follows the data's dimension; the rest stays as listed here.
"""

from __future__ import annotations

import math

from gmmn.config import TrainConfig
from gmmn.errors import ConfigError
from gmmn.families import make_config, switch_family


def _derive(base: TrainConfig, family: str | None = None, **settings) -> TrainConfig:
    """``base`` with ``settings`` changed (flag names), as a run of ``family`` if given."""
    cfg = base if family is None else switch_family(base, family)
    return cfg.override(**settings)


def _variances(*v: float) -> tuple[float, ...]:
    # The released code's "sigma" values are variances; TrainConfig stores standard deviations.
    return tuple(math.sqrt(x) for x in v)


MNIST_GMMN = make_config(
    "gmmn",
    preset="mnist-gmmn",
    dataset="mnist",
    checkpoint_every=1000,  # about a minute of GPU work lost at most
    log_every=100,  # 400 lines for a 40000-iteration run
    sample_every=5000,  # a progress grid every eighth of the run
    prior_dim=10,  # paper: uniform prior on [-1, 1]^10
    hidden=(64, 256, 256, 1024),  # paper: 10-64-256-256-1024 ReLU
    output="auto",  # paper: sigmoid output for [0, 1] pixels (linear for other data)
    init_std=0.1,  # released code: weights 0.1 * N(0, 1), biases 0
    sigmas=_variances(2, 5, 10, 20, 40, 80),  # released code's MNIST scales (as variances)
    sigma_weights=None,  # released code: all kernel weights 1
    iterations=40000,  # released code: 40000 iterations on MNIST
    lr=2.0,  # released code: lr 2 ...
    momentum=0.9,  # ... momentum 0.9 ...
    late_from=10000,  # ... and from iteration 10000 ...
    late_lr_factor=0.1,  # ... lr / 10 ...
    late_momentum=0.99,  # ... and momentum 0.99
    sample_batch_size=1000,  # paper and code: 1000 generated samples per step
    # The released code's 100, not the text's 1000: on MNIST 100 reproduces the paper's row
    # and 1000 does not (docs/experiments/data-batch.md).
    data_batch_size=100,
)

MNIST_GMMN_AE = _derive(
    MNIST_GMMN, "gmmn-ae",
    preset="mnist-gmmn-ae",
    data_batch_size=1000,  # paper's text: 1000 codes per step; reproduces the paper's row
    sigmas=_variances(1),  # released code's MNIST code-space scale
    ae_hidden=(1024, 32),  # paper: 784-1024-32 encoder, mirrored decoder
    ae_dropout=(0.2, 0.5),  # paper: dropout 0.2 on pixels, 0.5 on the 1024 hidden units
    released_dropout=True,  # released code: masks not rescaled, weights / (1 - p) on copy
    ae_lr=0.1,  # released code: lr 0.1 for pretraining and fine-tuning
    ae_batch_size=100,  # released code: batch 100
    ae_clip=10.0,  # released code: gradient-norm clip 10
    pretrain_iterations=3000,  # released code: 3000 per layer on MNIST
    pretrain_momentum=0.5,  # released code
    finetune_iterations=3000,  # released code: the same count as pretraining
    finetune_momentum=(0.0, 0.5, 0.9),  # released code: 0, then 0.5, then 0.9 (MNIST) ...
    finetune_momentum_from=(1, 50, 200),  # ... from iterations 1, 50 and 200
    ae_eval_every=100,  # released code: training loss every 100 iterations, keep the best
)

# Beyond the paper: the faithful GMMN+AE with what the autoencoder ablations found
# (docs/experiments/ae-ablation.md). GMMN+AE's samples sit at the ceiling of their autoencoder
# (`gmmn evaluate --reconstructions`): the code-space GMMN matches the codes closely, and the
# decoder's smooth reconstructions are what lose detail; longer fine-tuning sharpens them. The
# GMMN stage is the faithful one, so the two presets differ in one setting.
MNIST_GMMN_AE_PLUS = _derive(
    MNIST_GMMN_AE,
    preset="mnist-gmmn-ae-plus",
    finetune_iterations=10000,  # 3.3x the released code's 3000 (see above)
)

TFD_GMMN = _derive(
    MNIST_GMMN,
    preset="tfd-gmmn",
    dataset="tfd",
    sigmas=_variances(5, 10, 20, 40, 80, 160),  # released code's TFD scales (variances)
    iterations=48000,  # released code: 48000 iterations on TFD
    data_batch_size=100,  # the released code's, as on MNIST (not measured on TFD)
)

TFD_GMMN_AE = _derive(
    MNIST_GMMN_AE,
    preset="tfd-gmmn-ae",
    dataset="tfd",
    iterations=48000,  # released code: 48000 iterations on TFD
    lr=0.1,  # released code: lr 0.1 for the TFD code-space GMMN
    sigmas=_variances(1, 2, 5, 10, 20, 40),  # released code's TFD code-space scales
    ae_hidden=(512, 512, 128),  # paper: 2304-512-512-128, mirrored decoder
    ae_dropout=(0.1, 0.1, 0.1),  # paper: 0.1 on each encoder layer's input
    pretrain_iterations=15000,  # released code: 15000 per layer on TFD
    finetune_iterations=15000,  # released code: the same count as pretraining
    finetune_momentum=(0.0, 0.5, 0.0),  # released code: 0, 0.5, then 0 again (TFD)
)

FASHION_MNIST_GMMN = _derive(MNIST_GMMN, preset="fashion-mnist-gmmn",
                             dataset="fashion-mnist",  # same 28x28 [0, 1] format as MNIST
                             data_batch_size=1000)  # as its measured row used
# (docs/experiments/fashion-mnist.md)
FASHION_MNIST_GMMN_AE = _derive(MNIST_GMMN_AE, preset="fashion-mnist-gmmn-ae",
                                dataset="fashion-mnist")

# scikit-learn's 8x8 digits: 1439 training images of 64 pixels, values in [0, 1]. Sized to
# finish in a few minutes on two CPU cores; the paper's recipe otherwise.
DIGITS_GMMN = _derive(
    MNIST_GMMN,
    preset="digits-gmmn",
    dataset="digits",
    checkpoint_every=500,  # a few seconds of work lost at most
    log_every=50,
    sample_every=1000,
    hidden=(64, 256, 256),  # 64 outputs need no 1024-unit layer; a third of the cost
    # Median distance between two digits is 3.1 (MNIST: about 10), so the MNIST scales,
    # shrunk by about 3, cover the same range relative to the data: 0.5 ... 3.
    sigmas=(0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    iterations=3000,  # the loss flattens after about 2000 steps at these sizes
    late_from=2000,  # the paper's switch at a quarter of the run comes too early here
    sample_batch_size=500,  # kernel cost grows with the square of the batch
    data_batch_size=500,  # a third of the training set per step
)

# Your own tables (and any data no preset describes): the digits sizes, with every setting that
# depends on the data's scale or size chosen from it (gmmn.training.auto, docs/data.md):
# standardisation when values lie outside [0, 1], kernel scales from the median distance, the
# learning rate by the output (0.1 linear, 2 sigmoid), the data batch by the size, the prior's
# dimension by the data's (twice it, 10 to 100). Tuned on
# scikit-learn's wine, breast cancer and diabetes (benchmarks/tabular.py).
TABULAR_GMMN = _derive(
    DIGITS_GMMN,
    preset="tabular-gmmn",
    standardize=None,
    sigmas=None,
    lr=None,
    data_batch_size=None,
    prior_dim=None,
    sample_every=0,  # tables have no picture to draw
    # a column of at most 10 values is a category or a count: samples take those values
    # (diabetes' sex column: the MMD test told smeared samples from test rows in 7 % of
    # draws against 1 % for training rows; benchmarks/tabular.py)
    discrete_levels=10,
)
# The preset of `gmmn train --dataset FILE` without --preset, and of GMMN().fit(X).
TABULAR_PRESET = TABULAR_GMMN.preset

DIGITS_GMMN_AE = _derive(
    MNIST_GMMN_AE,
    preset="digits-gmmn-ae",
    dataset="digits",
    checkpoint_every=500,
    log_every=50,
    sample_every=1000,
    ae_hidden=(64, 12),  # 64-64-12: a code small enough for the GMMN, large enough to decode
    ae_dropout=(0.1, 0.1),  # light denoising: 64 pixels leave little to drop
    pretrain_iterations=1000,  # pretraining converges within ~1000 steps of 100 images
    finetune_iterations=2000,
    sigmas=(0.25, 0.5, 1.0, 2.0),  # codes in [0, 1]^12: median distance ~1.2
    hidden=(64, 256, 256),
    lr=1.0,  # lr 2 collapsed every sample onto one code with an 8-unit code; 1 has margin
    iterations=3000,
    late_from=2000,
    sample_batch_size=500,
    data_batch_size=500,
)

# Conditional GMMN (Ren, Li, Luo & Zhu 2016; gmmn.families.cgmmn, docs/conditional.md): the
# generator takes noise and a one-hot class and is trained by the CMMD. The paper's text was
# not at hand when these were set, so they are the unconditional presets' settings (Li et al.
# 2015) plus the conditional ones below, which are this project's choices, not the paper's.
DIGITS_CGMMN = _derive(
    DIGITS_GMMN, "cgmmn",
    preset="digits-cgmmn",
    classes=10,  # the digits 0-9 (fixed here, so a resumed run needs no labels to build)
    cmmd_lambda=1.0,  # chosen: shrinks each class's mean embedding by n_k / (n_k + 1), ~2 %
    # digits-gmmn's lr 2 made the loss climb from step 100 on and collapsed the samples: the
    # CMMD sums ten per-class MMDs, so its gradient is larger; 0.1 and 0.5 both descended
    # over 300 steps
    lr=0.2,
    # 500 samples per step against 500 data rows: the same class counts on both sides, so
    # the CMMD compares class-wise mean embeddings shrunk alike (docs/conditional.md)
    sample_batch_size=500,
    data_batch_size=500,
)

MNIST_CGMMN_AE = _derive(
    MNIST_GMMN_AE, "cgmmn-ae",
    preset="mnist-cgmmn-ae",
    classes=10,
    cmmd_lambda=1.0,  # chosen, as for digits-cgmmn: ~100 codes per class per batch
    # mnist-gmmn-ae's lr 2 collapsed every class onto one digit in a short check (600 steps
    # on a briefly trained autoencoder: 10 % conditional accuracy); 0.2 reached 37 % and 0.5
    # 16 % there. A first choice for the full runs, not a tuned value (docs/conditional.md).
    lr=0.2,
    sample_batch_size=1000,  # the GMMN+AE's batches: 1000 codes against 1000 samples
    data_batch_size=1000,
)

# GAN baseline (Goodfellow et al. 2014, the "Adversarial nets" row; gmmn.families.gan). The
# generator is the GMMN's network, so the table compares objectives; the discriminator is the GAN
# paper's MNIST model (goodfeli/adversarial, mnist.yaml). Its optimiser is not: the GAN
# paper's SGD (lr 0.1 / 1.000004^t, momentum 0.5 -> 0.7 over 250 epochs; GAN_PAPER_SGD below)
# on this generator with alternating updates reached NaN on Fashion-MNIST and collapsed on
# digits, so these presets use Adam with the DCGAN settings. MNIST_GAN_PAPER (below) is the
# GAN paper's whole recipe, network included.
GAN_PAPER_SGD = {"gan_optimizer": "sgd", "lr": 0.1, "gan_lr_decay": 1.000004,
                 "gan_min_lr": 1e-6, "momentum": 0.5, "gan_final_momentum": 0.7,
                 "gan_momentum_ramp": 137500, "iterations": 137500}  # 250 epochs

MNIST_GAN = _derive(
    MNIST_GMMN, "gan",
    preset="mnist-gan",
    init_std=None,  # 0.1*N(0,1) saturates the sigmoid output and D wins at once; PyTorch's
    # default, +-1/sqrt(fan_in), is near the GAN paper's uniform +-0.05
    disc_hidden=(240, 240),  # GAN paper: two maxout layers of 240 units ...
    disc_pieces=5,  # ... with 5 pieces each, and a sigmoid output unit
    disc_dropout=(0.2, 0.5, 0.5),  # GAN paper: input kept with p 0.8, hidden units with 0.5
    gan_optimizer="adam",  # DCGAN (Radford et al. 2016): Adam ...
    lr=2e-4,  # ... lr 2e-4 ...
    momentum=0.5,  # ... beta1 0.5 ...
    gan_final_momentum=0.5,  # ... held constant ...
    gan_momentum_ramp=1,
    gan_lr_decay=1.0,  # ... without decay
    # Without these two the discriminator won outright on MNIST and the generator collapsed
    # to one image; one-sided label smoothing (Salimans et al. 2016) alone did not prevent
    # it, instance noise annealed to 0 did. The smaller noise was fixed before either was
    # scored (docs/experiments/gan-collapse.md). Fashion-MNIST and digits trained without.
    gan_label_smoothing=0.1,
    gan_instance_noise=0.2,
    # 100 epochs of 55000 images, what a two-core CPU affords in about an hour. The GAN
    # paper's 250 epochs (137500 steps) were where its SGD momentum ramp saturates
    # (GAN_PAPER_SGD); Adam has no ramp to wait for (docs/experiments/fashion-mnist.md:
    # longer runs still improved there); --iterations 137500 trains longer.
    iterations=55000,
    sample_batch_size=100,  # GAN paper: minibatches of 100
    data_batch_size=100,
)
FASHION_MNIST_GAN = _derive(MNIST_GAN, preset="fashion-mnist-gan", dataset="fashion-mnist",
                            gan_label_smoothing=0.0, gan_instance_noise=0.0)

DIGITS_GAN = _derive(
    MNIST_GAN,
    preset="digits-gan",
    dataset="digits",
    checkpoint_every=500,
    log_every=50,
    sample_every=1000,
    hidden=(64, 256, 256),  # digits-gmmn's generator
    gan_label_smoothing=0.0,
    gan_instance_noise=0.0,
    iterations=4000,  # 280 epochs; 4000 steps covered 8 classes where 2000 covered 3
)

# The GAN paper's own MNIST recipe, read from its released files (goodfeli/adversarial:
# mnist.yaml and __init__.py; docs/experiments/gan-paper.md lists each value's source). Not
# the GMMN's network: this row asks whether GMMN+AE beats a GAN trained the way the GAN paper
# trained it. One epoch of the 50000 training images is 500 batches of 100.
MNIST_GAN_PAPER = _derive(
    MNIST_GMMN, "gan",
    preset="mnist-gan-paper",
    split="gan",  # mnist.yaml: trains on images 0-49999, monitors 50000-59999 as 'valid'
    prior="normal",  # Generator's default noise: gaussian ...
    prior_dim=100,  # ... of nvis 100 dimensions
    hidden=(1200, 1200),  # two RectifiedLinear layers of 1200, then a Sigmoid of 784
    init_std=None,
    init_range=0.05,  # irange .05 in every generator layer, biases 0 ...
    output_bias="marginals",  # ... but the output's: init_sigmoid_bias_from_marginals
    disc_hidden=(240, 240),  # two Maxout layers of 240 units ...
    disc_pieces=5,  # ... of 5 pieces, and a Sigmoid unit; irange .005 (the Discriminator's)
    # AdversaryCost2: input include probs .8 for h0, .5 elsewhere, with input scales 1.25
    # and 2 = 1 / include prob, i.e. inverted dropout; the generator's loss sees it too
    disc_dropout=(0.2, 0.5, 0.5),
    gan_update="simultaneous",  # get_gradients: both nets' gradients from one forward pass
    disc_loss_scale=0.5,  # d_obj = 0.5 (cost(1, D(x)) + cost(0, D(G(z))))
    gan_optimizer="sgd",  # pylearn2 SGD with the Momentum rule: ReleasedSGD's update
    lr=0.1,  # learning_rate .1 ...
    gan_lr_decay=1.000004,  # ... divided by 1.000004 after every batch (ExponentialDecay) ...
    gan_min_lr=1e-6,  # ... to at least 1e-6
    momentum=0.5,  # init_momentum .5 ...
    gan_final_momentum=0.7,  # ... MomentumAdjustor to .7 by epoch 250 (per epoch there,
    gan_momentum_ramp=125000,  # linear per iteration here: 250 epochs of 500 batches)
    gan_label_smoothing=0.0,
    gan_instance_noise=0.0,
    sample_batch_size=100,  # batch_size 100 for data and samples alike
    data_batch_size=100,
    # The released configuration has no stopping rule (it saves every epoch). Here: 300
    # epochs, the validation rows' Parzen log-likelihood every 10 epochs, and the generator
    # with the best one kept (never the test score: docs/experiments/gan-paper.md).
    iterations=150000,
    select_every=5000,
    select_samples=10000,
    checkpoint_every=2500,
    log_every=500,
    sample_every=25000,
)

# The paper's quoted rows, measured here (gmmn.baselines; every value's source is in
# docs/baselines.md: "found" in the named paper or released file, "recalled" from the paper
# without re-reading it, "chosen" where nothing was found). MNIST's training split holds
# 55000 images, so one epoch is 550 batches of 100 (5500 of 10). The chain settings are the
# deep GSN sampler's (found in yaoli/GSN model.py): one chain, no burn-in, consecutive
# states; they were not found for the DBN and CAE and are flags of gmmn sample / evaluate.
_CHAIN = {"chains": 1, "burn_in": 0, "thin": 1}

MNIST_DBN = _derive(
    MNIST_GMMN, "dbn",
    preset="mnist-dbn",
    baseline_hidden=(1000, 1000),  # chosen: two RBMs (recalled: Better Mixing's depth 2)
    init_std=0.01,  # chosen: weights 0.01 * N(0, 1), Hinton's practical guide (2010)
    pcd=True,  # chosen: PCD (SML) with one chain per batch row, for long-chain sampling
    cd_k=1,  # chosen: one Gibbs step per update
    # chosen: SGD at lr 0.05 with momentum 0.5, the lr x 0.95 after every epoch. The practical
    # guide's constant 0.01 without momentum (the first preset) left its chains stuck in a few
    # classes on MNIST; this schedule covers all ten (docs/experiments/baselines-chains.md).
    lr=0.05,
    momentum=0.5,
    anneal_every=550,
    anneal_factor=0.95,
    data_batch_size=100,  # chosen: 100 persistent chains, one per row
    iterations=27500,  # chosen: 50 epochs per RBM (550 batches each)
    checkpoint_every=2500,  # about a minute of one CPU core
    log_every=250,
    sample_every=5500,
    **_CHAIN,
)

MNIST_SCAE = _derive(
    MNIST_GMMN, "scae",
    preset="mnist-scae",
    baseline_hidden=(1000, 1000),  # chosen: two layers (recalled), sizes as the DBN's
    contraction=0.1,  # found: the authors' cae.py default lambda
    lr=0.001,  # found: cae.py's default, plain SGD ...
    momentum=0.0,  # ... without momentum
    data_batch_size=10,  # found: cae.py's default batch
    iterations=1100000,  # found as cae.py's default: 200 epochs per layer (5500 batches each)
    anneal_every=0,  # found: cae.py keeps its lr constant
    checkpoint_every=20000,
    log_every=2000,
    sample_every=110000,
    chain_noise=1.0,  # found: cae.py's sample(x, sigma=1); the value behind 121 is unknown
    chain_noise_space="hidden",  # found: cae.py's sample moves the code by J J^T alpha
    **_CHAIN,
)

MNIST_GSN = _derive(
    MNIST_GMMN, "gsn",
    preset="mnist-gsn",
    baseline_hidden=(1500, 1500),  # found: run_dsn.py, two tanh layers of 1500
    walkbacks=4,  # found: run_dsn.py, N = 4
    gsn_cost="bce",  # found in model.py commit 0d00196 (a later commit used mse)
    gsn_input_noise=0.4,  # found: salt-and-pepper 0.4
    gsn_hidden_noise=2.0,  # found: Gaussian std 2 on every hidden layer but the first
    lr=0.25,  # found: lr 0.25 ...
    momentum=0.5,  # ... momentum 0.5 in the averaged form b <- m b + (1 - m) g ...
    anneal_every=550,  # ... and lr * 0.995 after every epoch (550 batches here; 600 there,
    anneal_factor=0.995,  # where train + validation, 60000 images, were trained on)
    data_batch_size=100,  # found: batch 100
    iterations=550000,  # found: 1000 epochs, no early stopping
    checkpoint_every=2750,
    log_every=550,
    sample_every=55000,
    **_CHAIN,
)

FASHION_MNIST_DBN = _derive(MNIST_DBN, preset="fashion-mnist-dbn", dataset="fashion-mnist")
FASHION_MNIST_SCAE = _derive(MNIST_SCAE, preset="fashion-mnist-scae", dataset="fashion-mnist")
FASHION_MNIST_GSN = _derive(MNIST_GSN, preset="fashion-mnist-gsn", dataset="fashion-mnist")

# Digits (1437 training images of 64 pixels, about 14 batches of 100 per epoch): the MNIST
# recipes with smaller layers and runs of a minute or less on one CPU core. Chosen, not tuned.
_DIGITS_RUN = {"dataset": "digits", "checkpoint_every": 500, "log_every": 50,
               "sample_every": 1000}
DIGITS_DBN = _derive(
    MNIST_DBN, preset="digits-dbn", **_DIGITS_RUN,
    baseline_hidden=(128, 128),  # chosen: twice the 64 pixels
    lr=0.05,  # chosen: for a run of 140 epochs, constant, without momentum
    momentum=0.0,
    anneal_every=0,
    iterations=2000,  # chosen: 140 epochs per RBM
)
DIGITS_SCAE = _derive(
    MNIST_SCAE, preset="digits-scae", **_DIGITS_RUN,
    baseline_hidden=(128, 128),
    lr=0.01,  # chosen: ten times cae.py's, for a run of 35 epochs
    iterations=5000,  # chosen: 35 epochs per layer of 144 batches of 10
)
DIGITS_GSN = _derive(
    MNIST_GSN, preset="digits-gsn", **_DIGITS_RUN,
    baseline_hidden=(256, 256),  # chosen
    iterations=3000,  # chosen: 210 epochs
    anneal_every=14,  # one epoch, as in the released code
)

PRESETS: dict[str, TrainConfig] = {
    c.preset: c for c in (MNIST_GMMN, MNIST_GMMN_AE, MNIST_GMMN_AE_PLUS, TFD_GMMN, TFD_GMMN_AE,
                          FASHION_MNIST_GMMN, FASHION_MNIST_GMMN_AE, DIGITS_GMMN, DIGITS_GMMN_AE,
                          TABULAR_GMMN, DIGITS_CGMMN, MNIST_CGMMN_AE,
                          MNIST_GAN, FASHION_MNIST_GAN, DIGITS_GAN, MNIST_GAN_PAPER,
                          MNIST_DBN, MNIST_SCAE, MNIST_GSN, FASHION_MNIST_DBN,
                          FASHION_MNIST_SCAE, FASHION_MNIST_GSN, DIGITS_DBN, DIGITS_SCAE,
                          DIGITS_GSN)
}


def get_preset(name: str) -> TrainConfig:
    """The preset called ``name`` (a frozen config; derive variants with ``override``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of "
                          f"{', '.join(sorted(PRESETS))}") from None
